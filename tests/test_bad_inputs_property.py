"""Property-based bad input (issue 20, part 5): hypothesis draws bad values for the public arguments of every
stage pipeline, the cascade and ``cascade generate``'s flags (wrong types, out of range, NaN and inf, wrong
shapes, generator lists of the wrong length, mismatched conditioning frames, strength and noise-level edges,
empty and huge prompts). Each call is answered by a ``ValueError``/``TypeError`` naming the argument before
any UNet call (the calls are counted), or by a valid output."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade.cli import main
from cascade.pipelines import (
    CascadePipeline,
    InterpolationPipeline,
    KeyframesPipeline,
    SpatialSRPipeline,
    SpatioTemporalSRPipeline,
)
from cascade.pipelines.stage_base import VideoStagePipeline
from cascade.testing.tiny_models import (
    FAST_STAGE_DEFAULTS,
    tiny_cascade_stages,
    tiny_interpolation_components,
    tiny_keyframes_components,
    tiny_super_resolution_components,
)

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
PROMPT = "a red circle"
TRIED = set()  # the distinct bad inputs tried, over the whole module

# values no argument takes
NOT_NUMBERS = st.one_of(st.text(max_size=4), st.none(), st.booleans(), st.lists(st.integers(), max_size=2))
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
BAD_POSITIVE_INT = st.one_of(
    st.integers(max_value=0),
    st.floats(allow_nan=True),
    NON_FINITE,
    NOT_NUMBERS.filter(lambda v: v is not None),
)
BAD_NUMBER = st.one_of(st.floats(max_value=-1e-3), NON_FINITE, NOT_NUMBERS)
BAD_PROMPT = st.one_of(
    st.integers(),
    st.just([]),
    st.lists(st.one_of(st.integers(), st.none()), min_size=1, max_size=2),
    st.binary(),
)
ANY_PROMPT = st.one_of(st.text(max_size=30), st.just("x " * 6000))  # valid, empty and huge included


def bad_tensor(shape: tuple) -> st.SearchStrategy:
    """Tensors of another shape than ``shape``, and non-finite ones of ``shape``."""
    other = st.lists(st.integers(1, 4), min_size=1, max_size=5).map(tuple).filter(lambda s: s != shape)
    return st.one_of(other.map(torch.zeros), NON_FINITE.map(lambda v: torch.full(shape, v)), NOT_NUMBERS)


def bad_video(frames: int, size: int) -> st.SearchStrategy:
    """Videos ``(B, F, H, W, 3)`` that are wrong: another layout, values outside [0, 1] or not finite, or not a
    video at all."""
    shape = (1, frames, size, size, 3)
    return st.one_of(
        st.sampled_from([(1, frames, size, size), (1, frames, 3, size, size), (frames, size, size, 3)]).map(
            np.zeros
        ),
        st.sampled_from([-0.5, 1.5, math.nan, math.inf]).map(lambda v: np.full(shape, v, dtype=np.float32)),
        st.just(np.zeros(shape, dtype=np.uint8)),
        NOT_NUMBERS,
    )


def common_bad(latents_shape: tuple) -> dict[str, st.SearchStrategy]:
    """Bad values of the arguments every stage takes."""
    return {
        "prompt": BAD_PROMPT,
        "negative_prompt": st.one_of(st.integers(), st.lists(st.text(max_size=3), min_size=2, max_size=3)),
        "num_inference_steps": BAD_POSITIVE_INT,
        "guidance_scale": BAD_NUMBER.filter(lambda v: v is not None),
        "num_videos_per_prompt": BAD_POSITIVE_INT,
        "generator": st.one_of(
            st.integers(),
            st.integers(2, 4).map(lambda n: [torch.Generator() for _ in range(n)]),
            st.just([None]),
        ),
        "latents": bad_tensor(latents_shape).filter(lambda v: v is not None),
        "prompt_embeds": bad_tensor((1, 16, 32)).filter(lambda v: v is not None),
        "output_type": st.text(max_size=6).filter(lambda v: v not in ("np", "pt", "pil", "latent")),
        "return_dict": st.one_of(st.integers(), st.text(max_size=2), st.none()),
        "callback_on_step_end": st.one_of(st.integers(), st.text(min_size=1, max_size=3)),
        "callback_on_step_end_tensor_inputs": st.one_of(
            st.lists(st.text(max_size=5).filter(lambda v: v not in ("latents",)), min_size=1, max_size=2),
            st.integers(),
        ),
        "decode_chunk_size": BAD_POSITIVE_INT.filter(lambda v: v is not None),
    }


def make(pipeline_class, components: dict) -> VideoStagePipeline:
    pipe = pipeline_class(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def low_res(frames: int = 2, size: int = 8) -> np.ndarray:
    return np.random.default_rng(0).random((1, frames, size, size, 3), dtype=np.float32)  # (B, F, H, W, 3)


def stages() -> dict:
    """Each stage pipeline (tiny, pixel space): its quickest valid call and the bad values of its arguments."""
    keyframes_bad = {
        **common_bad((1, 3, 2, 8, 8)),
        "num_frames": BAD_POSITIVE_INT.filter(lambda v: v is not None),
        "height": st.one_of(st.integers(-3, 0), st.sampled_from([3, 7, 9]), st.floats(1, 9)),
        "width": st.one_of(st.integers(-3, 0), st.sampled_from([3, 7, 9]), st.text(max_size=2)),
        "image": st.one_of(
            bad_video(1, 8).map(lambda v: v[0] if isinstance(v, np.ndarray) else v), st.integers()
        ),
        "conditioning_frames": st.one_of(
            bad_video(2, 8), st.just(low_res(2, 16)), st.just(low_res(1, 8)[:, :0])
        ),
        "conditioning_frame_indices": st.one_of(
            st.lists(st.integers(-3, 5), max_size=3), st.integers(), st.just([0, 0])
        ),
        "conditioning_method": st.text(max_size=8),
        "reconstruction_guidance_scale": BAD_NUMBER,
        "window": st.one_of(st.integers(max_value=0), st.floats(), st.text(min_size=1, max_size=2)),
        "window_overlap": st.one_of(st.integers(max_value=-1), st.integers(min_value=8), st.floats()),
    }
    interpolation_bad = {
        **common_bad((1, 3, 3, 8, 8)),
        "video": st.one_of(
            bad_video(2, 8), st.just(low_res(1, 8)), st.just(low_res(2, 7)), st.just(low_res()[[0, 0]])
        ),
        "interpolation_factor": BAD_POSITIVE_INT.filter(lambda v: v is not None),
        "strength": st.one_of(st.sampled_from([0.0, -0.1, 1.0001, 2.0]), NON_FINITE, NOT_NUMBERS),
        "window": st.one_of(st.integers(max_value=0), st.sampled_from([2, 4])),  # windows must be m * 2 + 1
        "window_overlap": st.one_of(st.integers(max_value=-1), st.floats()),
    }
    super_resolution_bad = {
        **common_bad((1, 3, 2, 32, 32)),
        "video": st.one_of(bad_video(2, 8), st.just(low_res(2, 7)), st.just(low_res()[[0, 0]])),
        "noise_level": st.one_of(
            st.integers(max_value=-1), st.integers(min_value=351), st.floats(), NOT_NUMBERS
        ),
    }
    return {
        "keyframes": (
            make(KeyframesPipeline, tiny_keyframes_components()),
            {"prompt": PROMPT, "num_frames": 2, "num_inference_steps": 1},
            keyframes_bad,
        ),
        "interpolation": (
            make(InterpolationPipeline, tiny_interpolation_components()),
            {"prompt": PROMPT, "video": low_res(), "interpolation_factor": 2, "num_inference_steps": 1},
            interpolation_bad,
        ),
        "spatiotemporal_sr": (
            make(SpatioTemporalSRPipeline, tiny_super_resolution_components()),
            {"prompt": PROMPT, "video": low_res(), "num_inference_steps": 1},
            {
                **super_resolution_bad,
                "window": st.one_of(st.integers(max_value=0), st.floats()),
                "window_overlap": st.one_of(st.integers(max_value=-1), st.integers(min_value=16)),
            },
        ),
        "spatial_sr": (
            make(SpatialSRPipeline, tiny_super_resolution_components(inflated=False)),
            {"prompt": PROMPT, "video": low_res(), "num_inference_steps": 1},
            {
                **super_resolution_bad,
                "frame_chunk_size": BAD_POSITIVE_INT.filter(lambda v: v is not None),
                "same_noise_for_all_frames": st.one_of(st.integers(), st.text(max_size=2), st.none()),
            },
        ),
    }


@pytest.fixture(scope="module")
def pipelines():
    return stages()


def count_unet_calls(*unets) -> list:
    calls = []
    for unet in unets:
        unet.register_forward_pre_hook(lambda *args: calls.append(1))
    return calls


def check_answer(call, argument: str, value, calls: list) -> None:
    """``call()`` either raises a ValueError/TypeError naming ``argument`` with no UNet call, or returns frames
    that are finite and in [0, 1]."""
    TRIED.add((argument, repr(value)[:200]))
    calls.clear()
    try:
        frames = call()
    except (ValueError, TypeError) as error:
        assert argument in str(error), f"{argument}={value!r:.100} answered by {error!r:.300}"
        assert not calls, f"{argument}={value!r:.100}: the UNet ran {len(calls)} times before {error!r:.200}"
        return
    frames = frames if isinstance(frames, np.ndarray) else np.asarray(frames.cpu())
    assert np.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1, f"{argument}={value!r:.100}"


def bad_argument(bad: dict) -> st.SearchStrategy:
    return st.sampled_from(sorted(bad)).flatmap(lambda name: bad[name].map(lambda value: (name, value)))


@pytest.mark.parametrize("stage", ["keyframes", "interpolation", "spatiotemporal_sr", "spatial_sr"])
def test_a_stage_answers_every_bad_argument_before_its_unet_runs(stage, pipelines):
    pipe, valid, bad = pipelines[stage]
    calls = count_unet_calls(pipe.unet)
    if stage == "keyframes":
        bad = {**bad, "prompt": st.one_of(BAD_PROMPT, ANY_PROMPT)}

    @SETTINGS
    @given(bad_argument(bad))
    def answered(case):
        name, value = case
        arguments = {**valid, name: value}
        if name == "prompt_embeds":
            arguments["prompt"] = None
        check_answer(lambda: pipe(**arguments).frames, name, value, calls)

    answered()


@pytest.fixture(scope="module")
def cascade():
    cascade = CascadePipeline(stage_defaults=FAST_STAGE_DEFAULTS, **tiny_cascade_stages())
    cascade.set_progress_bar_config(disable=True)
    return cascade


CASCADE_BAD = {
    "prompt": BAD_PROMPT,
    "negative_prompt": st.one_of(st.integers(), st.lists(st.text(max_size=3), min_size=2, max_size=3)),
    "video": st.one_of(st.just(low_res()), st.integers()),
    "stage_kwargs": st.one_of(
        st.text(max_size=3),
        st.dictionaries(st.text(max_size=6), st.just({}), min_size=1, max_size=2),
        st.sampled_from(["keyframes", "spatial_sr"]).map(lambda name: {name: 3}),
        st.sampled_from(["num_frames", "noise_level", "window", "seed", "generator", "colour"]).flatmap(
            lambda key: BAD_POSITIVE_INT.map(lambda v: {"keyframes": {key: v}})
        ),
    ),
    "seed": st.one_of(st.floats(), st.text(min_size=1, max_size=2), st.booleans()),
    "output_type": st.one_of(st.just("latent"), st.text(max_size=4)),
    "return_stage_outputs": st.one_of(st.integers(2), st.text(min_size=1, max_size=2)),
}


def test_the_cascade_answers_every_bad_argument_before_any_unet_runs(cascade):
    calls = count_unet_calls(*(stage.unet for stage in cascade.stages.values()))

    @SETTINGS
    @given(bad_argument(CASCADE_BAD))
    def answered(case):
        name, value = case
        # a bad setting inside stage_kwargs is named by its key, or by the stage_kwargs argument itself
        check_answer(lambda: cascade(PROMPT, seed=0, **{name: value}).frames, name, value, calls)

    answered()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny"
    assert main(["init-tiny", str(folder)]) == 0
    return folder


WORDS = st.text(alphabet="abcxyz-_ ", min_size=1, max_size=5)  # never a number argparse would take
GENERATE_FLAGS = {
    "--frames": st.one_of(st.integers(max_value=0), WORDS, st.sampled_from(["1.5", "1e3", ""])),
    "--steps": st.one_of(st.integers(max_value=0), st.floats().map(str)),
    "--seed": st.one_of(st.integers(max_value=-1), WORDS),
    "--fps": st.one_of(st.integers(max_value=0), WORDS),
    "--guidance": st.one_of(st.floats(max_value=-1e-3), NON_FINITE, WORDS),
    "--stages": st.one_of(
        WORDS.filter(lambda v: v.strip() not in ("", "keyframes")), st.just("interpolation")
    ),
    "--output": st.sampled_from(["x.avi", "x", "x.mp4.txt", "missing/x.mp4"]),
    "--model": WORDS.map(lambda v: f"/nonexistent/{v}"),
}


def test_cascade_generate_answers_every_bad_flag_in_one_line(tiny_model, tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(VideoStagePipeline, "denoise", lambda *args, **kwargs: calls.append(1))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()  # what making the model printed

    @SETTINGS
    @given(bad_argument(GENERATE_FLAGS))
    def answered(case):
        flag, value = case
        TRIED.add((flag, str(value)))
        calls.clear()
        values = {"--model": str(tiny_model), "--output": str(tmp_path / "out.mp4"), "--frames": "2"}
        argv = ["generate", PROMPT, *(item for pair in {**values, flag: str(value)}.items() for item in pair)]
        try:
            status = main(argv)
        except SystemExit as exit:  # argparse: a value of the wrong type
            status = exit.code
        error = capsys.readouterr().err.strip().splitlines()[-1]  # argparse prints its usage first
        assert status == 2 and not calls, f"{flag} {value!r}: status {status}"
        assert error.startswith("cascade generate: error: "), error
        assert flag in error or flag.removeprefix("--") in error, f"{flag} {value!r} answered by {error!r}"

    answered()


def test_at_least_60_distinct_bad_inputs_were_tried():
    assert len(TRIED) >= 60, len(TRIED)
