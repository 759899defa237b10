"""The ``cascade`` command line: writing videos, help, and one-line errors with nothing left behind."""

import shutil
import subprocess
import sys

import imageio.v3 as iio
import pytest

from cascade.cli import main
from cascade.utils.atomic import write_atomically


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    assert main(["init-tiny", str(folder)]) == 0
    return folder


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_generate_writes_the_cascade_video(tiny_model, tmp_path, suffix, capsys):
    output = tmp_path / f"clip{suffix}"
    args = ["generate", "a red circle moving right", "-o", str(output), "--model", str(tiny_model)]
    assert main([*args, "--frames", "3", "--steps", "1", "--seed", "1"]) == 0
    assert f"wrote {output}" in capsys.readouterr().out
    frames = iio.imread(output, index=None)  # (F, H, W, 3)
    # 3 keyframes of 8x8, 4x interpolation: 9 frames; two 4x super-resolution stages: 128x128.
    assert frames.shape[:3] == (9, 128, 128) and frames.shape[-1] == 3
    assert [p.name for p in tmp_path.iterdir()] == [output.name]


def test_stage_subset_and_intermediates(tiny_model, tmp_path, capsys):
    output = tmp_path / "clip.gif"
    args = [
        "generate",
        "a prompt",
        "-o",
        str(output),
        "--model",
        str(tiny_model),
        "--frames",
        "2",
        "--steps",
        "1",
    ]
    assert (
        main([*args, "--stages", "keyframes", "interpolation", "spatiotemporal_sr", "--save-intermediates"])
        == 0
    )
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["clip.gif", "clip.interpolation.gif", "clip.keyframes.gif"]
    assert iio.imread(tmp_path / "clip.keyframes.gif", index=None).shape[:3] == (2, 8, 8)
    assert iio.imread(tmp_path / "clip.interpolation.gif", index=None).shape[:3] == (5, 8, 8)
    assert iio.imread(output, index=None).shape[:3] == (5, 32, 32)
    assert capsys.readouterr().out.count("wrote ") == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{tmp}/missing"], "is not a saved cascade or pipeline folder"),
        (["-o", "{tmp}/no/such/folder/out.mp4"], "does not exist or is not writable"),
        (["-o", "{tmp}/out.avi"], "--output must end in .mp4 or .gif"),
        (["--frames", "0"], "--frames must be a positive int, got 0"),
        (["--stages", "colourise"], "unknown stage(s) colourise; choose from keyframes, interpolation"),
        (["--stages", "interpolation"], "generating from a prompt needs the keyframes stage"),
        (["--seed", "-1"], "--seed must be an int >= 0, got -1"),
    ],
)
def test_errors_print_one_line_and_leave_no_file(tiny_model, tmp_path, capsys, args, message):
    base = {"-o": str(tmp_path / "out.mp4"), "--model": str(tiny_model)}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value.format(tmp=tmp_path)
    argv = ["generate", "a prompt", *[item for pair in base.items() for item in pair], "--steps", "1"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error
    assert list(tmp_path.iterdir()) == []


def test_missing_default_model_is_one_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("cascade.pipelines.cascade.DEMO_MODEL", tmp_path / "not-installed")
    assert main(["generate", "a prompt", "-o", str(tmp_path / "out.mp4")]) == 2
    assert "the default model is not installed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_init_tiny_refuses_an_existing_folder(tmp_path, capsys):
    assert main(["init-tiny", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_installed_entry_point_runs():
    result = subprocess.run(
        [shutil.which("cascade") or "cascade", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: cascade" in result.stdout and "generate" in result.stdout and "init-tiny" in result.stdout


def test_help_lists_every_command_without_importing_torch():
    """``cascade --help`` registers every subcommand's parser without importing torch (or diffusers)."""
    code = (
        "import sys\n"
        "from cascade.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules or 'diffusers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "eval" in result.stdout and result.stdout.strip().endswith("False")


def test_write_atomically_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.txt"
    write_atomically(target, lambda partial: partial.write_text("done"))
    assert target.read_text() == "done"

    def fail(partial):
        partial.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, fail)
    assert target.read_text() == "done" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_each_subcommand_has_complete_help(capsys):
    for command in ("generate", "init-tiny"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: cascade {command}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    generate_help = capsys.readouterr().out
    for flag in ("--output", "--model", "--stages", "--frames", "--steps", "--seed", "--fps", "--guidance"):
        assert flag in generate_help
    assert "--save-intermediates" in generate_help


def test_importing_the_package_and_help_stay_light():
    code = "import sys, cascade, cascade.cli; assert 'torch' not in sys.modules; print(cascade.__all__[:1])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['CascadePipeline']"


def test_a_failed_final_write_removes_the_intermediates(tiny_model, tmp_path, capsys, monkeypatch):
    import cascade.data.media_io

    write = cascade.data.media_io.write_video

    def fail_on_final(frames, path, fps):
        if path.name == "clip.gif":
            raise OSError("disk full")
        write(frames, path, fps)

    monkeypatch.setattr(cascade.data.media_io, "write_video", fail_on_final)
    argv = ["generate", "a prompt", "-o", str(tmp_path / "clip.gif"), "--model", str(tiny_model)]
    assert (
        main(
            [
                *argv,
                "--frames",
                "2",
                "--steps",
                "1",
                "--stages",
                "keyframes",
                "interpolation",
                "--save-intermediates",
            ]
        )
        == 2
    )
    assert "disk full" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
