"""The ``cascade`` command line: writing videos, help, and one-line errors with nothing left behind."""

import shutil
import subprocess

import imageio.v3 as iio
import pytest

from cascade.cli import main


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    assert main(["init-tiny", str(folder)]) == 0
    return folder


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_generate_writes_a_video_with_the_requested_frames(tiny_model, tmp_path, suffix, capsys):
    output = tmp_path / f"clip{suffix}"
    args = ["generate", "a red circle moving right", "-o", str(output), "--model", str(tiny_model)]
    assert main([*args, "--frames", "5", "--steps", "2", "--seed", "1"]) == 0
    assert f"wrote {output}" in capsys.readouterr().out
    frames = iio.imread(output, index=None)  # (F, H, W, 3)
    assert frames.shape[0] == 5 and frames.shape[-1] == 3
    assert [p.name for p in tmp_path.iterdir()] == [output.name]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{tmp}/missing"], "is not a saved pipeline folder"),
        (["-o", "{tmp}/no/such/folder/out.mp4"], "does not exist or is not writable"),
        (["-o", "{tmp}/out.avi"], "--output must end in .mp4 or .gif"),
        (["--frames", "0"], "--frames must be a positive int, got 0"),
    ],
)
def test_errors_print_one_line_and_leave_no_file(tiny_model, tmp_path, capsys, args, message):
    base = {"-o": str(tmp_path / "out.mp4"), "--model": str(tiny_model)}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value.format(tmp=tmp_path)
    argv = ["generate", "a prompt", *[item for pair in base.items() for item in pair]]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error
    assert list(tmp_path.iterdir()) == []


def test_init_tiny_refuses_an_existing_folder(tmp_path, capsys):
    assert main(["init-tiny", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_installed_entry_point_runs():
    result = subprocess.run(
        [shutil.which("cascade") or "cascade", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: cascade" in result.stdout and "generate" in result.stdout and "init-tiny" in result.stdout


def test_each_subcommand_has_complete_help(capsys):
    for command in ("generate", "init-tiny"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: cascade {command}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    generate_help = capsys.readouterr().out
    for flag in ("--output", "--model", "--frames", "--steps", "--seed", "--fps", "--guidance"):
        assert flag in generate_help
