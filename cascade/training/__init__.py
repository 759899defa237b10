"""Training every stage of the cascade from YAML recipes (:mod:`cascade.training.recipe`).

The names below are imported on first use (PEP 562), so ``cascade --help``, which lists the ``train``
command, does not load torch.
"""

from cascade.lazy_exports import lazy_exports

_MODULE_OF = {
    "IMAGE_STAGES": "cascade.training.config",
    "STAGES": "cascade.training.config",
    "TrainingConfig": "cascade.training.config",
    "StageTrainer": "cascade.training.trainer",
    "latest_checkpoint": "cascade.training.trainer",
    "training_target": "cascade.training.targets",
    "Recipe": "cascade.training.recipe",
    "load_recipe": "cascade.training.recipe",
    "run_recipe": "cascade.training.recipe",
    "word_tokenizer": "cascade.training.text_model",
    "small_text_encoder": "cascade.training.text_model",
    "retokenize_text_encoder": "cascade.training.text_model",
}

__all__ = sorted(_MODULE_OF)


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)
