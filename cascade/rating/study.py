"""A pairwise study: for every prompt of a prompt file, the video of model A and the video of model B.

The folders hold videos named as ``cascade eval`` names its outputs (``{index:05d}-{digest}.mp4``, or
``{index:05d}.mp4``; :func:`~cascade.eval.video_files.match_videos` pairs them with the prompts) and the prompt
file is the one ``cascade eval`` read. Checked when the study is loaded, each failure a ``ValueError`` naming
the folder: a video for every prompt and none for a prompt the file does not have, every video readable, and,
where ``cascade eval`` left its ``report.json`` beside the videos, the prompts it generated them for equal to
the file's. Every video's sha256 is recorded with every vote, so a vote says which files were compared.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cascade.data.media_io import probe_video, read_video
from cascade.eval.prompts import read_prompts
from cascade.eval.video_files import VIDEO_SUFFIXES, match_videos

MODELS = ("A", "B")


@dataclass(frozen=True)
class StudyVideo:
    """One video file of the study: its resolved path and its sha256."""

    path: Path
    sha256: str


@dataclass(frozen=True)
class StudyItem:
    """Prompt ``index`` of the prompt file with model A's and model B's video."""

    index: int
    prompt: str
    a: StudyVideo
    b: StudyVideo

    def video(self, model: str) -> StudyVideo:
        """The video of ``model`` (``"A"`` or ``"B"``)."""
        if model not in MODELS:
            raise ValueError(f"`model` must be one of {list(MODELS)}, got {model!r}.")
        return self.a if model == "A" else self.b


@dataclass(frozen=True)
class Study:
    """A named comparison of two folders of videos over one prompt file."""

    name: str
    a_dir: Path
    b_dir: Path
    prompts_file: Path
    items: tuple[StudyItem, ...]

    @property
    def fingerprint(self) -> str:
        """sha256 over every prompt and both its videos' hashes: equal exactly when two studies compare the
        same files for the same prompts (a study resumed from the database must be the same study)."""
        rows = [[item.index, item.prompt, item.a.sha256, item.b.sha256] for item in self.items]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_no_extra_videos(folder: Path, count: int, flag: str) -> None:
    """``flag``'s folder holds no video named for a prompt index the prompt file does not have."""
    for path in sorted(folder.iterdir()):
        prefix = path.stem.split("-", 1)[0]
        if (
            path.suffix.lower() in VIDEO_SUFFIXES
            and len(prefix) == 5
            and prefix.isdigit()
            and int(prefix) >= count
        ):
            raise ValueError(
                f"{flag} {str(folder)!r} has {path.name!r}, a video for prompt {int(prefix)}, but the prompt file "
                f"has {count} prompts: the folder was made for other prompts"
            )


def _check_eval_prompts(folder: Path, prompts: list[str], flag: str) -> None:
    """Where ``cascade eval`` left ``report.json`` beside the videos (in the folder or the one above it), the
    prompt it made each video for must be the prompt file's."""
    for report in (folder / "report.json", folder.parent / "report.json"):
        if not report.is_file():
            continue
        try:
            rows = json.loads(report.read_text())["videos"]
            made_for = {int(row["index"]): row["prompt"] for row in rows}
        except (ValueError, KeyError, TypeError):
            continue  # not a report of cascade eval
        for index, prompt in enumerate(prompts):
            if index in made_for and made_for[index] != prompt:
                raise ValueError(
                    f"{flag} {str(folder)!r} holds videos for other prompts: {str(report)!r} says video {index} "
                    f"was made for {made_for[index]!r}, the prompt file says {prompt!r}"
                )
        return


def _study_video(path: Path, flag: str) -> StudyVideo:
    try:
        read_video(path) if path.suffix.lower() == ".npz" else probe_video(path)
    except ValueError as error:
        raise ValueError(f"{flag}: {error}") from None
    return StudyVideo(path.resolve(), file_sha256(path))


def _label(folder: Path) -> str:
    """A folder's name for a study's default name (``cascade eval``'s ``OUTDIR/videos`` by ``OUTDIR``)."""
    folder = folder.resolve()
    return folder.parent.name if folder.name == "videos" else folder.name


def load_study(a_dir, b_dir, prompts_file, name: str | None = None) -> Study:
    """The study comparing ``a_dir`` (model A) with ``b_dir`` (model B) on the prompts of ``prompts_file``,
    named ``name`` (default ``"<A folder> vs <B folder>"``); ``ValueError`` for anything that cannot be
    compared (see the module docstring)."""
    for flag, folder in (("A_DIR", a_dir), ("B_DIR", b_dir)):
        if not isinstance(folder, str | Path) or not Path(folder).is_dir():
            raise ValueError(f"{flag} {str(folder)!r} is not a folder")
    a_dir, b_dir = Path(a_dir), Path(b_dir)
    if a_dir.resolve() == b_dir.resolve():
        raise ValueError(f"A_DIR and B_DIR are the same folder {str(a_dir)!r}; give the two models' folders")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"`name` must be a non-empty str, got {name!r}.")
    prompts = [item.prompt for item in read_prompts(prompts_file)]
    videos = {}
    for flag, folder in (("A_DIR", a_dir), ("B_DIR", b_dir)):
        _check_no_extra_videos(folder, len(prompts), flag)
        _check_eval_prompts(folder, prompts, flag)
        videos[flag] = [_study_video(path, flag) for path in match_videos(folder, len(prompts), flag)]
    items = tuple(
        StudyItem(index, prompt, a, b)
        for index, (prompt, a, b) in enumerate(zip(prompts, videos["A_DIR"], videos["B_DIR"], strict=True))
    )
    name = name.strip() if name else f"{_label(a_dir)} vs {_label(b_dir)}"
    return Study(name, a_dir.resolve(), b_dir.resolve(), Path(prompts_file).resolve(), items)
