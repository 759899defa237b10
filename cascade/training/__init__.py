"""Training loops for the stages of the cascade."""

from .keyframes_trainer import KeyframesTrainer, KeyframesTrainingConfig, latest_checkpoint, training_target

__all__ = ["KeyframesTrainer", "KeyframesTrainingConfig", "latest_checkpoint", "training_target"]
