"""Attention checks: one video of a pair against a copy of itself spoiled so plainly that an attentive rater
always prefers the intact one: questions with a known answer mixed among the real ones, as crowd-sourced
studies screen their raters (Kittur, Chi and Suh 2008, "Crowdsourcing user studies with Mechanical Turk").

Two spoilers: ``shuffled`` (the frames in a random order other than their own: the motion breaks apart) and
``noise`` (Gaussian noise of standard deviation :data:`NOISE_STD` on every pixel). A rater passes a check when
they answer that the intact video looks better. A shuffled copy of a clip whose frames already jump about
(a model that has not learned motion) hardly differs from it; for such models use the noise alone.
"""

import numpy as np

from cascade.utils.checks import check_choice, check_int

CHECK_KINDS = ("shuffled", "noise")
NOISE_STD = 0.5  # in [0, 1] pixel units: half the range, far beyond any compression or model artefact


def check_kinds_argument(name: str, kinds) -> tuple[str, ...]:
    """``kinds``: a non-empty list or tuple of distinct :data:`CHECK_KINDS`; returned as a tuple."""
    if not isinstance(kinds, list | tuple) or not kinds or len(set(kinds)) != len(kinds):
        raise ValueError(
            f"`{name}` must be a non-empty list of distinct kinds from {list(CHECK_KINDS)}, got {kinds!r}."
        )
    for kind in kinds:
        check_choice(name, kind, CHECK_KINDS)
    return tuple(kinds)


def spoil(frames: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """A spoiled copy of ``frames`` (uint8 ``(F, H, W, 3)``): ``kind`` one of :data:`CHECK_KINDS`, drawn with
    ``seed``. ``shuffled`` needs at least 2 frames and never returns them in their own order."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(f"`frames` must be uint8 of shape (F, H, W, 3), got {frames.dtype} {frames.shape}.")
    check_choice("kind", kind, CHECK_KINDS)
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    if kind == "shuffled":
        if len(frames) < 2:
            raise ValueError(f"`frames` must have at least 2 frames to shuffle, got {len(frames)}.")
        order = np.arange(len(frames))
        while (order == np.arange(len(frames))).all():
            order = rng.permutation(len(frames))
        return frames[order]
    noisy = frames / 255.0 + rng.normal(0.0, NOISE_STD, frames.shape)  # (F, H, W, 3)
    return (np.clip(noisy, 0.0, 1.0) * 255).round().astype(np.uint8)
