"""``--model`` takes a folder or a Hugging Face Hub repo id, on every command that has it (generate, edit, eval,
serve), offline from the Hugging Face cache too; an id that cannot be read is one clear error naming it."""

import json
import os
import subprocess
import sys

import httpx2
import huggingface_hub
import imageio.v3 as iio
import numpy as np
import pytest
from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError

from cascade.cli import main, parser
from cascade.commands import generation
from cascade.data.media_io import write_video
from cascade.pipelines import CascadePipeline

from hub_cache import cache_repo

CASCADE_REPO = "cascade-test/tiny-cascade"
KEYFRAMES_REPO = "cascade-test/tiny-keyframes"
MISSING_REPO = "cascade-test/not-cached"
# Keyframes and interpolation of the tiny cascade, 2 keyframes of 8x8, one step: a few frames in a second.
FAST = ["--frames", "2", "--steps", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    assert main(["init-tiny", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def hub_cache(tiny_model, tmp_path_factory):
    """A Hugging Face cache holding the tiny cascade (with the file listing snapshot_download caches) and its
    keyframes stage alone (without)."""
    cache = tmp_path_factory.mktemp("hf") / "hub"
    cache_repo(tiny_model, cache, CASCADE_REPO, tree_listing=True)
    cache_repo(tiny_model / "keyframes", cache, KEYFRAMES_REPO)
    return cache


@pytest.fixture
def offline(hub_cache, monkeypatch):
    """Downloads off, as under ``HF_HUB_OFFLINE=1``, with :func:`hub_cache` as the cache."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return hub_cache


@pytest.fixture(scope="module")
def input_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "clip.gif"
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    write_video(frames, path, fps=8)
    return path


def test_every_model_flag_takes_a_folder_or_a_repo_id():
    commands = next(a for a in parser()._actions if a.dest == "command").choices
    with_model = {}
    for name, command in commands.items():
        for action in command._actions:
            if "--model" in action.option_strings:
                with_model[name] = action
    assert sorted(with_model) == ["edit", "eval", "extend", "generate", "serve"]
    for name, action in with_model.items():
        # A string reaches the loader as typed; the help says a repo id is taken.
        assert action.type is None and action.metavar == "DIR|REPO_ID", name
        assert "Hub repo id" in action.help, name


@pytest.mark.parametrize(
    ("repo", "stages"),
    [(CASCADE_REPO, ["keyframes", "interpolation"]), (KEYFRAMES_REPO, ["keyframes"])],
    ids=["cascade", "keyframes-pipeline"],
)
def test_generate_from_a_cached_repo_id_offline_equals_the_folder(
    offline, tiny_model, tmp_path, capsys, repo, stages
):
    folder = tiny_model if repo == CASCADE_REPO else tiny_model / "keyframes"
    outputs = {}
    for source in (repo, folder):
        output = tmp_path / f"{len(outputs)}.gif"
        argv = ["generate", "a red circle moving right", "-o", str(output), "--model", str(source)]
        assert main([*argv, *FAST, "--stages", *stages]) == 0, capsys.readouterr().err
        outputs[source] = iio.imread(output, index=None)
    from_repo, from_folder = outputs.values()
    assert from_repo.shape == from_folder.shape and from_repo.shape[0] == (2 if len(stages) == 1 else 5)
    np.testing.assert_array_equal(from_repo, from_folder)


def test_generate_reads_the_cache_under_hf_hub_offline_in_a_fresh_process(hub_cache, tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "home"),
        "HF_HUB_CACHE": str(hub_cache),
        "OMP_NUM_THREADS": "1",
    }
    output = tmp_path / "clip.gif"
    argv = ["generate", "a red circle", "-o", str(output), "--model", KEYFRAMES_REPO, *FAST]
    result = subprocess.run(
        [sys.executable, "-m", "cascade", *argv], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert iio.imread(output, index=None).shape[:3] == (2, 8, 8)


def command_argv(command: str, tmp_path, input_video, prompts) -> list[str]:
    """``command``'s arguments without ``--model``, each small enough to run in seconds."""
    if command == "generate":
        return ["generate", "a red circle", "-o", str(tmp_path / "out" / "clip.gif"), *FAST]
    if command in ("edit", "extend"):
        frames = "2" if command == "edit" else "5"  # extend makes more frames than the input's
        output = str(tmp_path / "out" / "clip.gif")
        return [
            command,
            str(input_video),
            "-o",
            output,
            "--prompt",
            "a blue square",
            "--steps",
            "1",
            "--frames",
            frames,
        ]
    if command == "eval":
        flags = ["--stages", "keyframes", "--num-frames", "2", "--steps", "1", "--format", "npz"]
        return ["eval", "--prompts", str(prompts), "-o", str(tmp_path / "out"), *flags]
    return ["serve"]


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red circle moving right\n")
    return path


@pytest.mark.parametrize("command", ["generate", "edit", "extend", "eval", "serve"])
def test_an_uncached_repo_id_offline_is_one_error_naming_it(
    offline, tmp_path, capsys, input_video, prompts, command
):
    (tmp_path / "out").mkdir()
    argv = [*command_argv(command, tmp_path, input_video, prompts), "--model", MISSING_REPO]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"cascade {command}: error: --model '{MISSING_REPO}' is not a folder;")
    assert "not (fully) in the Hugging Face cache" in error and "HF_HUB_OFFLINE=1" in error
    assert f"hf download {MISSING_REPO}" in error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert list((tmp_path / "out").iterdir()) == []


def test_edit_eval_and_serve_load_a_cached_repo_id(
    offline, tmp_path, capsys, input_video, prompts, monkeypatch
):
    (tmp_path / "out").mkdir()
    # The keyframes pipeline alone: the cascade's later stages would run their own (many) steps.
    assert main([*command_argv("edit", tmp_path, input_video, prompts), "--model", KEYFRAMES_REPO]) == 0
    assert iio.imread(tmp_path / "out" / "clip.gif", index=None).shape[:3] == (2, 8, 8)
    argv = [*command_argv("eval", tmp_path, input_video, prompts), "--model", KEYFRAMES_REPO]
    assert main([*argv, "--metrics", "motion_magnitude"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["settings"]["model"] == KEYFRAMES_REPO and len(report["videos"]) == 1
    # eval names its videos after the weights it read: the snapshot's, the same files as the folder's.
    assert main([*argv, "--metrics", "motion_magnitude"]) == 0
    assert "generated 0 video(s), reused 1" in capsys.readouterr().out
    import cascade.app.ui

    served = []
    monkeypatch.setattr(cascade.app.ui, "build_app", lambda models, **kwargs: served.extend(models))
    monkeypatch.setattr(cascade.app.ui, "launch", lambda *args: None)
    assert main(["serve", "--model", CASCADE_REPO, "--port", "7999"]) == 0
    assert [type(model) for model in served] == [CascadePipeline]
    assert list(served[0].stages) == ["keyframes", "interpolation", "spatiotemporal_sr", "spatial_sr"]


def test_model_folder_leaves_paths_to_the_loader(tmp_path):
    assert generation.model_folder(tmp_path) == tmp_path
    assert generation.model_folder(str(tmp_path / "missing")) == tmp_path / "missing"  # not a repo id
    assert main(["generate", "a prompt", "-o", str(tmp_path / "x.gif"), "--model", "./missing"]) == 2


def hub_error(kind: type, status: int):
    response = httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/x"))
    return kind(f"{status} Client Error: the Hub's answer", response=response)


def test_online_a_keyframes_repo_without_cascade_index_is_found_and_an_unknown_repo_named(
    offline, monkeypatch, tmp_path
):
    from cascade.pipelines import hub_loading

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    real = hub_loading.hf_hub_download
    asked = []

    def hub_download(repo_id, filename, **kwargs):
        asked.append(filename)
        if filename == "cascade_index.json":
            raise hub_error(RemoteEntryNotFoundError, 404)
        return real(repo_id, filename, **{**kwargs, "local_files_only": True})

    monkeypatch.setattr(hub_loading, "hf_hub_download", hub_download)
    monkeypatch.setattr(
        hub_loading,
        "snapshot_download",
        lambda repo_id, **kwargs: huggingface_hub.snapshot_download(
            repo_id, **{**kwargs, "local_files_only": True}
        ),
    )
    folder = generation.model_folder(KEYFRAMES_REPO)
    assert asked == ["cascade_index.json", "model_index.json"] and (folder / "model_index.json").is_file()

    def no_such_repo(repo_id, filename, **kwargs):
        raise hub_error(RepositoryNotFoundError, 401)

    monkeypatch.setattr(hub_loading, "hf_hub_download", no_such_repo)
    with pytest.raises(
        ValueError, match=f"--model '{MISSING_REPO}' is not a folder, nor a Hub repo that can"
    ):
        generation.model_folder(MISSING_REPO)
