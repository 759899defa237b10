"""Helpers for tests, benchmarks and notebooks: tiny randomly initialised components built in-process
(:mod:`.tiny_models`) and the UNet configs of the real checkpoints (:mod:`.reference_configs`)."""
