"""Training every stage of the cascade from YAML recipes (:mod:`cascade.training.recipe`).

The names below are imported on first use (PEP 562), so ``cascade --help``, which lists the ``train``
command, does not load torch.
"""

from cascade.utils.lazy_exports import lazy_exports

_EXPORTS = {
    "cascade.training.config": ["IMAGE_STAGES", "STAGES", "TrainingConfig"],
    "cascade.training.trainer": ["StageTrainer", "latest_checkpoint"],
    "cascade.training.targets": ["training_target"],
    "cascade.training.lora": ["add_lora", "lora_state_dict", "save_lora"],
    "cascade.training.recipe": ["Recipe", "load_recipe", "run_recipe"],
    "cascade.training.text_model": ["retokenize_text_encoder", "small_text_encoder", "word_tokenizer"],
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
