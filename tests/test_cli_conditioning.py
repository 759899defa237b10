"""``cascade generate --image`` (image-to-video), ``cascade extend`` and long keyframes from the command line
(issue 18): the given frames come out first, a long video is made in windows, bad input is one clear error."""

import imageio.v3 as iio
import numpy as np
import PIL.Image
import pytest

from cascade import KeyframesPipeline
from cascade.cli import main
from cascade.commands.generation import stage_settings
from cascade.pipelines.cascade import DEMO_MODEL, load_cascade
from cascade.testing.tiny_models import tiny_keyframes_components

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


@pytest.fixture(scope="module")
def keyframes_model(tmp_path_factory):
    """A saved tiny keyframes pipeline (8x8 pixel frames): what the command line runs as a one-stage cascade."""
    folder = tmp_path_factory.mktemp("models") / "keyframes"
    KeyframesPipeline(**tiny_keyframes_components()).save_pretrained(folder)
    return folder


def solid(color, size=(20, 12), mode="RGB") -> PIL.Image.Image:
    return PIL.Image.new(mode, size, color)


def read_colours(path) -> np.ndarray:
    return iio.imread(path, index=None)[..., :3].astype(int).mean(axis=(1, 2))  # (F, 3)


def test_generate_with_an_image_starts_the_video_with_it(keyframes_model, tmp_path):
    image = tmp_path / "first.png"
    solid(RED + (255,), mode="RGBA").save(image)  # any mode and size: converted and fitted to the stage
    output = tmp_path / "clip.gif"
    args = ["generate", "a red circle", "-o", str(output), "--model", str(keyframes_model), "--frames", "3"]
    assert main([*args, "--steps", "2", "--image", str(image)]) == 0
    colours = read_colours(output)
    assert colours.shape == (3, 3)
    np.testing.assert_allclose(colours[0], RED, atol=3)  # through the GIF's palette
    assert np.abs(colours[1:] - RED).max() > 20


def test_extend_keeps_the_input_and_adds_frames(keyframes_model, tmp_path):
    source = tmp_path / "in.gif"
    iio.imwrite(source, np.stack([np.full((10, 16, 3), c, np.uint8) for c in (RED, GREEN, BLUE)]), loop=0)
    output = tmp_path / "out.gif"
    args = [
        "extend",
        str(source),
        "-o",
        str(output),
        "--prompt",
        "a blue square",
        "--model",
        str(keyframes_model),
    ]
    assert main([*args, "--frames", "5", "--steps", "2"]) == 0
    colours = read_colours(output)
    assert colours.shape == (5, 3)
    np.testing.assert_allclose(colours[:3], [RED, GREEN, BLUE], atol=3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--frames", "3"], "--frames must be more than the input's 3 frames"),
        (["--frames", "0"], "--frames must be a positive int, got 0"),
        (["--frames", "6", "--prompt", " "], "--prompt must say what the video shows"),
    ],
)
def test_extend_errors_are_one_line_before_any_model_loads(keyframes_model, tmp_path, capsys, extra, message):
    source = tmp_path / "in.gif"
    iio.imwrite(source, np.stack([np.full((8, 8, 3), c, np.uint8) for c in (RED, GREEN, BLUE)]), loop=0)
    output = tmp_path / "out.gif"
    missing_model = str(tmp_path / "no-model")  # were it loaded first, its error would come instead
    args = ["extend", str(source), "-o", str(output), "--prompt", "a red circle", "--model", missing_model]
    assert main([*args, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_generate_with_a_missing_image_is_one_clear_error(keyframes_model, tmp_path, capsys):
    output = tmp_path / "clip.gif"
    args = ["generate", "a red circle", "-o", str(output), "--model", str(keyframes_model)]
    assert main([*args, "--image", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert not output.exists()


def test_more_keyframes_than_the_model_was_trained_on_are_made_in_windows_of_that_length():
    demo = load_cascade(DEMO_MODEL)
    trained = demo.stage_defaults["keyframes"]["num_frames"]
    assert stage_settings(demo, None, 64, None)["keyframes"] == {
        "num_frames": 64,
        "window": trained,
        "long_video_method": "extend",
    }
    assert stage_settings(demo, None, 64, None, "coarse_to_fine")["keyframes"]["long_video_method"] == (
        "coarse_to_fine"
    )
    assert stage_settings(demo, None, trained, None)["keyframes"] == {"num_frames": trained}


@pytest.mark.parametrize("method", ["coarse_to_fine", "extend"])
def test_generate_makes_long_keyframes_with_the_demo_by_either_method(tmp_path, method):
    output = tmp_path / "long.gif"
    args = ["generate", "a red circle moving right", "-o", str(output), "--stages", "keyframes"]
    assert main([*args, "--frames", "20", "--steps", "2", "--long-video", method]) == 0
    assert iio.imread(output, index=None).shape[0] == 20


def test_an_unknown_long_video_method_is_one_clear_error(tmp_path, capsys):
    output = tmp_path / "long.gif"
    with pytest.raises(SystemExit):
        main(["generate", "a red circle", "-o", str(output), "--frames", "20", "--long-video", "loop"])
    assert "--long-video: invalid choice: 'loop'" in capsys.readouterr().err
    assert not output.exists()


def test_the_precision_flags_load_the_model_on_that_device_in_that_dtype(tmp_path, capsys):
    import torch

    from cascade.commands.generation import DTYPE_CHOICES, load_generator
    from cascade.utils import devices

    assert DTYPE_CHOICES == devices.DTYPE_CHOICES  # the command line's copy, kept without importing torch
    cascade = load_generator(None, ["keyframes"], "cpu", "bfloat16")
    assert cascade.stages["keyframes"].unet.dtype == torch.bfloat16
    cascade = load_generator(None, ["keyframes"], "cpu", "auto")
    assert cascade.stages["keyframes"].unet.dtype == devices.auto_dtype("cpu")
    output = tmp_path / "clip.gif"
    args = [
        "generate",
        "a red circle moving right",
        "-o",
        str(output),
        "--stages",
        "keyframes",
        "--steps",
        "2",
    ]
    assert main([*args, "--dtype", "bfloat16", "--device", "cpu"]) == 0
    assert iio.imread(output, index=None).shape[0] == 8
    output.unlink()
    assert main([*args, "--device", "tpu:9"]) == 2
    assert "--device 'tpu:9'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda"]) == 2
        assert "--device 'cuda': this machine has 0 CUDA device(s)" in capsys.readouterr().err
    assert not output.exists()


def test_generate_with_a_control_video_steers_a_model_with_a_controlnet(keyframes_model, tmp_path, capsys):
    from test_keyframes_control import controlnet_for

    folder = tmp_path / "controlled"
    pipe = KeyframesPipeline.from_pretrained(keyframes_model)
    KeyframesPipeline(**{**pipe.components, "controlnet": controlnet_for(pipe)}).save_pretrained(folder)
    outputs = []
    for colour in (RED, BLUE):
        control = tmp_path / f"control_{colour[0]}.gif"
        iio.imwrite(control, np.stack([np.asarray(solid(colour))] * 5), duration=100, loop=0)
        outputs.append(tmp_path / f"clip_{colour[0]}.gif")
        args = ["generate", "a red circle", "-o", str(outputs[-1]), "--model", str(folder), "--frames", "3"]
        assert main([*args, "--steps", "2", "--control", str(control)]) == 0
    first, second = (iio.imread(path, index=None) for path in outputs)
    assert first.shape[0] == 3 and np.abs(first.astype(int) - second.astype(int)).max() > 0
    output = tmp_path / "none.gif"
    args = ["generate", "a red circle", "-o", str(output), "--model", str(keyframes_model), "--frames", "3"]
    assert main([*args, "--control", str(tmp_path / "control_255.gif")]) == 2
    assert "--control needs a model whose keyframes stage has a controlnet" in capsys.readouterr().err
    assert not output.exists()
