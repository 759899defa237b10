"""The web app's functions without a browser: settings and their defaults, the stages run one at a time, the
Generate tab's outputs, bad input, the bounded request cache, the frame pictures and the gradio wrapper."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from cascade.app.cache import RequestCache
from cascade.app.generate_tab import GenerateTab, ModelPool
from cascade.app.generation import (
    GenerationRequest,
    StageSettings,
    default_num_frames,
    default_settings,
    run_stages,
)
from cascade.app.pictures import GAP_RGB, frame_grid
from cascade.pipelines.cascade import CascadePipeline
from cascade.testing.tiny_models import fast_tiny_cascade

STAGES = ("keyframes", "interpolation", "spatiotemporal_sr", "spatial_sr")


@pytest.fixture(scope="module")
def tiny():
    return fast_tiny_cascade()


def inputs(prompt="a red circle moving right", negative="", seed=0, frames=2, stages=STAGES, steps=None):
    """The Generate tab's input values: one step and guidance 1 for every stage unless ``steps`` says."""
    per_stage = []
    for name in STAGES:
        per_stage += [(steps or {}).get(name, 1.0), 1.0]  # gradio gives numbers as floats
    return [prompt, negative, float(seed), float(frames), list(stages), *per_stage]


def test_defaults_come_from_the_model(tiny):
    assert default_settings(tiny) == {name: StageSettings(1, 1.0) for name in STAGES}
    assert default_num_frames(tiny) == 2
    bare = CascadePipeline(**tiny.stages)  # no stage_defaults: each stage's own __call__ defaults
    defaults = default_settings(bare)
    assert defaults["keyframes"] == StageSettings(25, 7.5) and defaults["interpolation"] == StageSettings(
        25, 4.0
    )
    assert default_num_frames(bare) == bare.stages["keyframes"].call_default("num_frames")
    with pytest.raises(ValueError, match="must have a keyframes stage"):
        default_num_frames(tiny.subset(["interpolation"]))


def test_stages_run_one_at_a_time_compute_what_one_cascade_call_computes(tiny):
    names = ["keyframes", "interpolation", "spatiotemporal_sr"]
    settings = {"keyframes": StageSettings(2, 3.0), "interpolation": StageSettings(1, 1.0)}
    settings["spatiotemporal_sr"] = StageSettings(1, 2.0)
    request = GenerationRequest("a red circle moving right", "blurry", seed=3, num_frames=3, stages=settings)
    steps = []
    outputs = list(run_stages(tiny, request, on_step=lambda *step: steps.append(step)))
    assert [output.name for output in outputs] == names
    assert [output.frames.shape for output in outputs] == [(3, 8, 8, 3), (9, 8, 8, 3), (9, 32, 32, 3)]
    assert steps == [
        ("keyframes", 1, 2),
        ("keyframes", 2, 2),
        ("interpolation", 1, 1),
        ("spatiotemporal_sr", 1, 1),
    ]
    stage_kwargs = {
        name: {"num_inference_steps": s.num_inference_steps, "guidance_scale": s.guidance_scale}
        for name, s in settings.items()
    }
    stage_kwargs["keyframes"]["num_frames"] = 3
    expected = tiny.subset(names)(
        "a red circle moving right", "blurry", stage_kwargs=stage_kwargs, seed=3, output_type="pt"
    ).frames  # (1, F, 3, H, W)
    torch.testing.assert_close(torch.from_numpy(outputs[-1].frames), expected[0].permute(0, 2, 3, 1))


def test_generate_shows_each_stage_then_the_video(tiny, tmp_path):
    tab = GenerateTab(ModelPool([tiny]), RequestCache(tmp_path / "cache"))
    progress = []
    shown = list(tab.run(inputs(), progress=lambda fraction, desc: progress.append((fraction, desc))))
    assert len(shown) == 1 + len(STAGES) + 1  # cleared, one per stage, the videos
    assert all(value in (None, "") for value in shown[0].values())
    for index, name in enumerate(STAGES, start=1):  # a stage's pictures appear when it finishes, and stay
        assert [shown[index][f"stage-{n}"] is not None for n in STAGES] == [
            i < index for i in range(len(STAGES))
        ]
        assert shown[index]["truth-" + name].endswith(f"{name}.truth.png") and shown[index]["video"] is None
    assert progress[-1] == (1.0, "spatial_sr: step 1/1")
    final = shown[-1]
    mp4, gif = final["downloads"]
    assert final["video"] == mp4 and mp4.endswith(".mp4") and gif.endswith(".gif")
    for path in (mp4, gif):
        assert iio.imread(path, index=None).shape == (5, 128, 128, 3)
    assert iio.imread(final["stage-keyframes"]).shape == (64, 64 * 2 + 2, 3)  # 8x8 frames enlarged x8
    rows = [line for line in final["readings"].splitlines() if line.startswith("| keyframes")]
    assert rows[0].startswith("| keyframes | 2 x 8x8 |") and rows[1].startswith("| keyframes, renderer |")
    assert "| red ✓ | circle ✓ | right ✓ |" in rows[1]  # the renderer's own clip reads as the prompt
    assert len(tab.cache.requests()) == 1


def test_a_prompt_outside_the_shapes_world_has_no_ground_truth(tiny, tmp_path):
    tab = GenerateTab(ModelPool([tiny]), RequestCache(tmp_path))
    final = list(tab.run(inputs(prompt="a cat playing piano", stages=["keyframes"])))[-1]
    assert final["stage-keyframes"] is not None and final["truth-keyframes"] is None
    assert final["stage-interpolation"] is None and "No ground truth" in final["readings"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (inputs(prompt="  "), "`prompt` must be a non-empty str, got '  '."),
        (inputs(seed=-1), "`seed` must be an int >= 0, got -1."),
        (inputs(seed=0.5), "`seed` must be an int >= 0, got 0.5."),
        (inputs(frames=0), "`num_frames` must be a positive int, got 0."),  # the keyframes pipeline's check
        (
            inputs(steps={"spatial_sr": 0.0}),
            "spatial_sr: `num_inference_steps` must be a positive int, got 0.",
        ),
        (inputs(stages=["interpolation"]), "`stages` must start with 'keyframes'"),
        (inputs(stages=[]), "`stages` must start with 'keyframes'"),
        (
            inputs(stages=["keyframes", "colourise"]),
            "`stages` has ['colourise'], which this model does not have",
        ),
        (
            inputs()[:-1],
            "`values` must be a list of 13 inputs: prompt, negative prompt, seed, keyframes, stages",
        ),
    ],
)
def test_bad_input_gets_the_checks_message_and_leaves_nothing(tiny, tmp_path, values, message):
    tab = GenerateTab(ModelPool([tiny]), RequestCache(tmp_path / "cache"))
    with pytest.raises(ValueError) as error:
        list(tab.run(values))
    assert str(error.value).startswith(message)
    assert tab.cache.requests() == []


def test_the_request_cache_keeps_the_newest_requests(tmp_path):
    cache = RequestCache(tmp_path, max_requests=2)
    folders = []
    for _ in range(3):
        folders.append(cache.new_request())
        (folders[-1] / "video.mp4").write_bytes(b"x")
    assert cache.requests() == folders[1:] and not folders[0].exists()
    restarted = RequestCache(tmp_path, max_requests=2)  # a new server prunes what the last one left
    newest = restarted.new_request()
    assert restarted.requests() == [folders[2], newest] and newest.name > folders[2].name
    restarted.clear()
    assert not tmp_path.exists()
    with pytest.raises(ValueError, match="`max_requests` must be a positive int, got 0."):
        RequestCache(tmp_path, max_requests=0)


def test_the_model_pool_lends_each_copy_to_one_request(tiny):
    other = fast_tiny_cascade()
    pool = ModelPool([tiny, other])
    with pool.borrow() as first, pool.borrow() as second:
        assert {id(first), id(second)} == {id(tiny), id(other)}
    with pytest.raises(ValueError, match="distinct copies"):
        ModelPool([tiny, tiny])
    with pytest.raises(ValueError, match="copies of one cascade"):
        ModelPool([tiny, tiny.subset(["keyframes"])])


def test_frame_grid_enlarges_small_frames_and_lays_them_out_in_rows():
    frames = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    grid = frame_grid(frames, columns=8, tile=64, gap=2)
    assert grid.shape == (2 * 64 + 2, 8 * 64 + 7 * 2, 3)
    np.testing.assert_array_equal(grid[:64, :64], frames[0].repeat(4, 0).repeat(4, 1))
    np.testing.assert_array_equal(grid[66:130, 66:130], frames[9].repeat(4, 0).repeat(4, 1))
    assert (grid[64:66] == GAP_RGB).all() and (grid[66:, 130:] == GAP_RGB).all()  # the gaps, the empty tiles
    assert frame_grid(frames[:1] / 255.0, tile=8).shape == (16, 16, 3)  # floats; never shrunk
    with pytest.raises(ValueError, match=r"`frames` must be a non-empty array of shape \(F, H, W, 3\)"):
        frame_grid(frames[0])


def test_the_gradio_app_answers_bad_input_with_the_message(tiny, tmp_path, monkeypatch):
    import gradio as gr

    from cascade.app.ui import build_app

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    app = build_app(tiny, cache_size=3)
    assert app.generate_tab.cache.folder == (tmp_path / "cascade-requests").resolve()
    generate = next(block.fn for block in app.fns.values() if block.name == "generate")
    with pytest.raises(gr.Error, match="`num_frames` must be a positive int, got 0."):
        list(generate(*inputs(frames=0)))
    with pytest.raises(ValueError, match="must be inside gradio's cache folder"):
        build_app(tiny, cache_folder=tmp_path.parent / "elsewhere")
    # Two loaded copies: two requests generate at once, at most queue_size wait.
    app = build_app([tiny, fast_tiny_cascade()], queue_size=5)
    assert (app._queue.default_concurrency_limit, app._queue.max_size) == (2, 5)
    assert app.generate_tab.pool.size == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "--concurrency must be a positive int, got 0"),
        (["--cache-size", "-1"], "--cache-size must be a positive int, got -1"),
        (["--port", "70000"], "--port must be in [1, 65535], got 70000"),
        (["--model", "{tmp}/missing"], "is not a saved cascade or pipeline folder"),
    ],
)
def test_serve_answers_bad_flags_in_one_line(tmp_path, capsys, args, message):
    from cascade.cli import main

    assert main(["serve", *[arg.format(tmp=tmp_path) for arg in args]]) == 2
    error = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in error and error.count("\n") == 1
