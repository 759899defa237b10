"""The web app's functions without a browser: settings and their defaults, the stages run one at a time, the
Generate tab's outputs, the Edit tab's outputs, bad input, the bounded request cache, the frame pictures and
the gradio wrapper."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from cascade.app.cache import RequestCache
from cascade.app.edit_tab import INPUT_NAMES, EditTab, edit_default
from cascade.app.generate_tab import GenerateTab, ModelPool
from cascade.app.generation import (
    GenerationRequest,
    StageSettings,
    default_num_frames,
    default_settings,
    run_stages,
)
from cascade.app.pictures import GAP_RGB, frame_grid, to_uint8
from cascade.app.views import write_rows_picture
from cascade.data.media_io import write_video
from cascade.data.video_fit import fit_video
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


def edit_inputs(
    video,
    prompt="a blue circle moving right",
    source="a red circle moving right",
    method="inversion",
    steps=2.0,
    guidance=2.0,
    strength=None,
    seed=0,
    frames=3,
):
    """The Edit tab's input values (gradio gives numbers as floats, an empty number box as ``None``)."""
    return [video, source, prompt, method, steps, guidance, strength, float(seed), float(frames)]


def write_gif(folder, frames=5, size=20):
    """A gif of ``frames`` random frames of ``size`` x ``size`` (an upload); returns its path as a str."""
    path = folder / f"upload-{frames}.gif"
    write_video(np.random.default_rng(0).integers(0, 256, (frames, size, size, 3), dtype=np.uint8), path, 8)
    return str(path)


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
        # the cascade's check of a stage's settings, before any stage runs
        (inputs(frames=0), "`stage_kwargs['keyframes']['num_frames']` must be a positive int, got 0."),
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


def test_edit_shows_the_cascades_video_and_the_keyframes_above_their_edit(tiny, tmp_path):
    gif = write_gif(tmp_path)  # 5 frames of 20x20
    tab = EditTab(ModelPool([tiny]), RequestCache(tmp_path / "cache"))
    progress = []
    values = edit_inputs(gif, method="sdedit", strength=0.5, seed=3)
    shown = list(tab.run(values, progress=lambda fraction, desc: progress.append((fraction, desc))))
    assert len(shown) == 2 and all(value is None for value in shown[0].values())  # cleared, then the result
    assert progress[0] == (0.0, "keyframes: editing by sdedit, 2 steps at strength 0.5")
    assert progress[-1] == (1.0, "spatial_sr: step 1/1")
    final = shown[-1]
    mp4, gif_out = final["downloads"]
    assert final["video"] == mp4 and mp4.endswith(".mp4") and gif_out.endswith(".gif")
    frames, size = list(tiny.output_shapes(3, {"keyframes": {"num_frames": 3}}).values())[-1]
    assert (frames, size) == (9, 128)  # 3 keyframes of 8x8 -> 9 frames of 128x128
    for path in (mp4, gif_out):
        assert iio.imread(path, index=None).shape == (frames, size, size, 3)
    (folder,) = tab.cache.requests()
    assert {mp4, gif_out, final["keyframes"]} == {str(path) for path in folder.iterdir()}
    # The picture: the upload fitted to 3 keyframes of 8x8 above what the library's edit made of them, x8.
    picture = iio.imread(final["keyframes"])
    assert picture.shape == (2 * 64 + 2, 3 * 64 + 2 * 2, 3)
    source = fit_video(iio.imread(gif, index=None), 3, 8, 8)  # (3, 8, 8, 3)
    result = tiny.subset(["keyframes"]).edit(
        iio.imread(gif, index=None)[None] / 255.0,
        "a blue circle moving right",
        source_prompt="a red circle moving right",
        num_frames=3,
        seed=3,
        return_stage_outputs=True,
        method="sdedit",
        num_inference_steps=2,
        guidance_scale=2.0,
        strength=0.5,
    )
    edited = result.stage_frames["keyframes"][0].permute(0, 2, 3, 1).numpy()  # (3, 8, 8, 3)
    for row, keyframes in enumerate((source, edited)):
        for column, frame in enumerate(to_uint8(keyframes)):
            top, left = row * 66, column * 66
            np.testing.assert_array_equal(
                picture[top : top + 64, left : left + 64], frame.repeat(8, 0).repeat(8, 1)
            )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"video": None},
            "`video` must be an uploaded video (.mp4, .webm, .mov, .mkv, .avi, .gif) of at least",
        ),
        ({"video": "single"}, "`video` must have at least 2 frames (a single image is no video), got 1."),
        ({"video": "text"}, "`path` '{tmp}/notes.txt' must be a video (.mp4, .webm"),
        ({"video": "missing"}, "`path` '{tmp}/missing.mp4' is neither a video file nor a folder of frames."),
        ({"prompt": " "}, "`prompt` must be a non-empty str (what the edited video shows), got ' '."),
        ({"source": 3}, "`source_prompt` must be a str (what the video shows), got 3."),
        (
            {"method": "ddim"},
            "`method` must be one of ['inversion', 'plain_inversion', 'sdedit'], got 'ddim'.",
        ),
        ({"steps": 0.0}, "`num_inference_steps` must be a positive int, got 0."),
        ({"guidance": -1.0}, "`guidance_scale` must be a finite number >= 0.0, got -1.0."),
        ({"strength": 0.0}, "`strength` must be a number in (0.0, 1.0], got 0.0."),
        ({"strength": 1.5}, "`strength` must be a number in (0.0, 1.0], got 1.5."),
        ({"seed": -1}, "`seed` must be an int >= 0, got -1."),
        ({"frames": 1}, "`num_frames` must be an int >= 2 (keyframes: an edit makes a video), got 1."),
    ],
)
def test_bad_edit_input_gets_a_message_naming_it_and_leaves_nothing(tiny, tmp_path, change, message):
    (tmp_path / "notes.txt").write_text("not a video")
    uploads = {
        "single": write_gif(tmp_path, frames=1),
        "text": str(tmp_path / "notes.txt"),
        "missing": str(tmp_path / "missing.mp4"),
    }
    values = {"video": write_gif(tmp_path), **change}
    values["video"] = uploads.get(values["video"], values["video"])
    tab = EditTab(ModelPool([tiny]), RequestCache(tmp_path / "cache"))
    with pytest.raises(ValueError) as error:
        list(tab.run(edit_inputs(**values)))
    assert str(error.value).startswith(message.format(tmp=tmp_path))
    assert tab.cache.requests() == []


def test_an_edit_the_library_refuses_leaves_no_files(tiny, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("`prompt` is longer than the text encoder reads.")

    monkeypatch.setattr(tiny, "edit", refuse)
    tab = EditTab(ModelPool([tiny]), RequestCache(tmp_path / "cache"))
    with pytest.raises(ValueError, match="longer than the text encoder reads"):
        list(tab.run(edit_inputs(write_gif(tmp_path))))
    assert tab.cache.requests() == []


def test_edit_starts_with_the_librarys_settings_and_checks_its_own(tiny, tmp_path):
    assert (edit_default(tiny, "num_inference_steps"), edit_default(tiny, "guidance_scale")) == (50, 2.0)
    tab = EditTab(ModelPool([tiny]), RequestCache(tmp_path / "cache"))
    with pytest.raises(ValueError, match="`values` must be a list of 9 inputs: video, source prompt, prompt"):
        tab.request(edit_inputs(write_gif(tmp_path))[:-1])
    with pytest.raises(ValueError, match="`argument` must be one of"):
        edit_default(tiny, "video")
    with pytest.raises(ValueError, match="must hold a cascade with a keyframes stage"):
        EditTab(ModelPool([tiny.subset(["interpolation"])]), RequestCache(tmp_path / "cache"))


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


def test_a_rows_picture_puts_frame_k_of_every_row_in_column_k(tmp_path):
    top, bottom = np.zeros((3, 16, 16, 3)), np.ones((3, 16, 16, 3))  # floats in [0, 1]
    picture = iio.imread(write_rows_picture([top, bottom], tmp_path / "rows.png"))
    assert picture.shape == (2 * 64 + 2, 3 * 64 + 2 * 2, 3)  # 16x16 frames enlarged x4
    assert (picture[:64, :64] == 0).all() and (picture[66:, 132:] == 255).all()
    with pytest.raises(ValueError, match=r"`rows` must all have one shape \(F, H, W, 3\), got"):
        write_rows_picture([top, bottom[:2]], tmp_path / "rows.png")
    with pytest.raises(ValueError, match="`path` must be a .png Path in an existing folder"):
        write_rows_picture([top], tmp_path / "missing" / "rows.png")


def test_the_gradio_app_answers_bad_input_with_the_message(tiny, tmp_path, monkeypatch):
    import gradio as gr

    from cascade.app.ui import build_app

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    app = build_app(tiny, cache_size=3)
    assert app.generate_tab.cache.folder == (tmp_path / "cascade-requests").resolve()
    generate = next(block.fn for block in app.fns.values() if block.name == "generate")
    with pytest.raises(
        gr.Error, match=r"`stage_kwargs\['keyframes'\]\['num_frames'\]` must be a positive int, got 0."
    ):
        list(generate(*inputs(frames=0)))
    with pytest.raises(ValueError, match="must be inside gradio's cache folder"):
        build_app(tiny, cache_folder=tmp_path.parent / "elsewhere")
    # The Edit tab: its widgets in the order EditTab reads them, the same models and cache as Generate.
    tabs = [block.label for block in app.blocks.values() if isinstance(block, gr.Tab)]
    assert tabs == ["Generate", "Edit"]
    assert app.edit_tab.pool is app.generate_tab.pool and app.edit_tab.cache is app.generate_tab.cache
    (block,) = [block for block in app.fns.values() if block.name == "edit"]
    assert [widget.elem_id for widget in block.inputs] == [
        "edit-input",
        "edit-source-prompt",
        "edit-prompt",
        "edit-method",
        "edit-steps",
        "edit-guidance",
        "edit-strength",
        "edit-seed",
        "edit-keyframes",
    ]
    assert len(block.inputs) == len(INPUT_NAMES)
    with pytest.raises(gr.Error, match="`prompt` must be a non-empty str"):
        list(block.fn(*edit_inputs(write_gif(tmp_path), prompt="")))
    final = list(block.fn(*edit_inputs(write_gif(tmp_path))))[-1]  # the inversion at its default strength
    widgets = {widget.elem_id: value for widget, value in final.items()}
    assert widgets["edit-video"].endswith(".mp4") and len(widgets["edit-downloads"]) == 2
    assert all(path.startswith(str(app.edit_tab.cache.folder)) for path in widgets["edit-downloads"])
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
