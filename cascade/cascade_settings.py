"""What ``cascade generate`` and ``cascade eval`` share about running a cascade: the stage names, the
checks of the flags that drive generation, stage selection and the per-stage settings.

Importing this module does not import torch (``cascade --help`` stays light); :func:`select_stages`
imports the pipelines when it runs. Errors raise ``ValueError`` naming the flag; the command line
prints them as one line.
"""

STAGES = ("keyframes", "interpolation", "spatiotemporal_sr", "spatial_sr")  # cascade order (STAGE_ORDER)


def check_generation_flags(stages: list[str] | None, seed: int, **positive: int) -> None:
    """Checks the flags of a run that generates from prompts: each of ``positive`` (flag name with ``_``
    for ``-``, e.g. ``num_frames=8``) must be a positive int, ``seed`` an int >= 0, and ``stages`` (``None``:
    all) known stage names that include ``keyframes``."""
    for name, value in positive.items():
        if value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive int, got {value}")
    if seed < 0:
        raise ValueError(f"--seed must be an int >= 0, got {seed}")
    unknown = [stage for stage in stages or [] if stage not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {' '.join(unknown)}; choose from {', '.join(STAGES)}")
    if stages and "keyframes" not in stages:
        raise ValueError("generating from a prompt needs the keyframes stage in --stages")


def select_stages(cascade, stages: list[str] | None):
    """The :class:`~cascade.CascadePipeline` of ``cascade``'s stages named in ``stages`` (``None``: all of
    them), in cascade order; ``ValueError`` if the model lacks one of them or has no keyframes stage."""
    from cascade.pipelines.cascade import CascadePipeline

    if stages:
        missing = [stage for stage in stages if stage not in cascade.stages]
        if missing:
            raise ValueError(
                f"the model has no stage(s) {' '.join(missing)}; it has {', '.join(cascade.stages)}"
            )
        cascade = CascadePipeline(**{name: cascade.stages[name] for name in STAGES if name in stages})
    if "keyframes" not in cascade.stages:
        raise ValueError("generating from a prompt needs a model with a keyframes stage")
    return cascade


def stage_settings(cascade, steps: int | None, frames: int, guidance: float | None) -> dict[str, dict]:
    """``stage_kwargs`` for ``cascade``: ``steps`` denoising steps for every stage, ``frames`` keyframes,
    and ``guidance`` as every stage's guidance scale (``None``: each stage's default: the cascade's
    ``stage_defaults``, else the stage's own)."""
    settings = {name: {} if steps is None else {"num_inference_steps": steps} for name in cascade.stages}
    if "keyframes" in settings:
        settings["keyframes"]["num_frames"] = frames
    if guidance is not None:
        for stage in settings.values():
            stage["guidance_scale"] = guidance
    return settings
