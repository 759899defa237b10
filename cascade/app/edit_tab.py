"""The Edit tab without its widgets: an uploaded video edited from what it shows (the source prompt) to the
target prompt by :meth:`CascadePipeline.edit <cascade.pipelines.cascade.CascadePipeline.edit>`, on a model
lent from the pool the Generate tab uses, its files in the same request cache. :mod:`cascade.app.ui` lays out
the widgets and hands this their values; tests call it directly.

The keyframes stage edits the video brought to its frame count and size (frames sampled evenly over the clip,
resized to cover the size and center-cropped: :mod:`cascade.data.video_fit`), then the later stages bring the
edited keyframes to the cascade's output frame count and size, with the model's own settings.

Outputs: ``video`` (the mp4), ``downloads`` (mp4 and gif) and ``keyframes`` (a picture: the fitted source
keyframes in the top row, the edited keyframes below them).
"""

import inspect
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cascade.data.media_io import VIDEO_EXTENSIONS
from cascade.data.video_fit import read_video_input
from cascade.pipelines.cascade import CascadePipeline
from cascade.pipelines.editing import DEFAULT_STRENGTH, EDIT_METHODS
from cascade.pipelines.inputs import fit_videos
from cascade.pipelines.stages import STAGE_NAMES
from cascade.utils.checks import check_choice, check_int, check_number

from .cache import RequestCache
from .generate_tab import ModelPool, whole_as_int
from .generation import step_callback
from .views import write_rows_picture, write_videos

INPUT_NAMES = (
    "video",
    "source prompt",
    "prompt",
    "method",
    "steps",
    "guidance",
    "strength",
    "seed",
    "keyframes",
)


def edit_default(cascade, argument: str):
    """``argument``'s default in ``cascade``'s keyframes stage's ``edit`` (``"num_inference_steps"``,
    ``"guidance_scale"``, ...): what the Edit tab starts with."""
    if not isinstance(cascade, CascadePipeline) or STAGE_NAMES[0] not in cascade.stages:
        raise ValueError(
            f"`cascade` must be a CascadePipeline with a {STAGE_NAMES[0]} stage, got {cascade!r}."
        )
    parameters = inspect.signature(cascade.stages[STAGE_NAMES[0]].edit).parameters
    settings = [
        name for name, parameter in parameters.items() if parameter.default is not inspect.Parameter.empty
    ]
    return parameters[check_choice("argument", argument, settings)].default


@dataclass(frozen=True)
class EditRequest:
    """One press of Edit, checked (:meth:`EditTab.request`).

    Attributes:
        video: the uploaded file, anything :func:`~cascade.data.video_fit.read_video_input` reads.
        prompt, source_prompt: what the edited video shows, and what the upload shows (``""``: the empty
            prompt).
        method: one of :data:`~cascade.pipelines.editing.EDIT_METHODS`.
        num_inference_steps, guidance_scale: the edit's steps and guidance.
        strength: how far up the noise schedule the edit starts, in (0, 1]; ``None``: the method's default
            (:data:`~cascade.pipelines.editing.DEFAULT_STRENGTH`).
        seed: seeds the edit, and stage ``i`` of the cascade with ``seed + i``.
        num_frames: the number of keyframes the video is brought to.
    """

    video: Path
    prompt: str
    source_prompt: str
    method: str
    num_inference_steps: int
    guidance_scale: float
    strength: float | None
    seed: int
    num_frames: int


class EditTab:
    """What Edit does with a pool of models, a request cache and a frame rate for the videos (the Generate
    tab's pool and cache: requests of both tabs wait for the same models and share the cache's bound)."""

    def __init__(self, pool: ModelPool, cache: RequestCache, fps: int = 8):
        if not isinstance(pool, ModelPool):
            raise ValueError(f"`pool` must be a ModelPool, got {pool!r}.")
        if not isinstance(cache, RequestCache):
            raise ValueError(f"`cache` must be a RequestCache, got {cache!r}.")
        if STAGE_NAMES[0] not in pool.first.stages:
            raise ValueError(
                f"`pool` must hold a cascade with a {STAGE_NAMES[0]} stage (it edits), it has "
                f"{list(pool.first.stages)}."
            )
        self.pool, self.cache, self.fps = pool, cache, check_int("fps", fps, minimum=1)
        self.output_names = ("video", "downloads", "keyframes")

    def request(self, values: list) -> EditRequest:
        """The checked request from the inputs' values, in :data:`INPUT_NAMES` order: the uploaded video's
        path, the source prompt, the target prompt, the method, steps, guidance, strength (``None`` or ``""``:
        the method's default), seed and keyframes. Raises ``ValueError`` naming the input for a bad one."""
        if not isinstance(values, list | tuple) or len(values) != len(INPUT_NAMES):
            raise ValueError(
                f"`values` must be a list of {len(INPUT_NAMES)} inputs: {', '.join(INPUT_NAMES)}; "
                f"got {values!r}."
            )
        video, source_prompt, prompt, method, steps, guidance, strength, seed, frames = values
        if not isinstance(video, str | Path) or not str(video):
            raise ValueError(
                f"`video` must be an uploaded video ({', '.join(VIDEO_EXTENSIONS)}) of at least 2 frames, "
                f"got {video!r}."
            )
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(
                f"`prompt` must be a non-empty str (what the edited video shows), got {prompt!r}."
            )
        source_prompt = source_prompt or ""
        if not isinstance(source_prompt, str):
            raise ValueError(f"`source_prompt` must be a str (what the video shows), got {source_prompt!r}.")
        if strength in (None, ""):  # an empty box: the method's default
            strength = None
        else:
            strength = check_number("strength", strength, greater_than=0.0, maximum=1.0)
        return EditRequest(
            video=Path(video),
            prompt=prompt,
            source_prompt=source_prompt,
            method=check_choice("method", method, EDIT_METHODS),
            num_inference_steps=check_int("num_inference_steps", whole_as_int(steps), minimum=1),
            guidance_scale=check_number("guidance_scale", guidance, minimum=0.0),
            strength=strength,
            seed=check_int("seed", whole_as_int(seed), minimum=0),
            num_frames=check_int(
                "num_frames", whole_as_int(frames), minimum=2, meaning=" (keyframes: an edit makes a video)"
            ),
        )

    def run(self, values: list, progress: Callable | None = None) -> Iterator[dict[str, object]]:
        """Runs the edit the inputs' ``values`` ask for (:meth:`request`) and yields every output's value (by
        name): cleared at first, then the edited video, its downloads and the keyframes picture.
        ``progress(fraction, desc=...)`` is called when the keyframes' edit starts and after every denoising
        step of the later stages. Bad input, the video included (unreadable, a single frame), raises
        ``ValueError`` before any model runs, and no file of the request is kept."""
        request = self.request(values)
        cascade = self.pool.first
        clip = read_video_input(request.video)[None] / 255.0  # (1, F, H, W, 3) in [0, 1]
        size = cascade.stages[STAGE_NAMES[0]].default_size
        source = fit_videos(clip, request.num_frames, size)[0]  # (num_frames, size, size, 3): what is edited
        later = [name for name in cascade.stages if name != STAGE_NAMES[0]]
        shown = dict.fromkeys(self.output_names)
        yield dict(shown)

        stage_kwargs = None  # the later stages' settings beyond the model's own: a progress report per step
        if progress is not None:

            def on_step(name: str, step: int, steps: int) -> None:
                fraction = (1 + later.index(name) + step / steps) / (1 + len(later))
                progress(fraction, desc=f"{name}: step {step}/{steps}")

            stage_kwargs = {name: {"callback_on_step_end": step_callback(on_step, name)} for name in later}
            strength = DEFAULT_STRENGTH[request.method] if request.strength is None else request.strength
            progress(
                0.0,
                desc=f"{STAGE_NAMES[0]}: editing by {request.method}, {request.num_inference_steps} steps at "
                f"strength {strength}",
            )
        with self.pool.borrow() as model:
            folder = self.cache.new_request()
            try:
                result = model.edit(
                    clip,
                    request.prompt,
                    source_prompt=request.source_prompt,
                    num_frames=request.num_frames,
                    stage_kwargs=stage_kwargs,
                    seed=request.seed,
                    return_stage_outputs=True,
                    method=request.method,
                    num_inference_steps=request.num_inference_steps,
                    guidance_scale=request.guidance_scale,
                    strength=request.strength,
                )
                edited = result.stage_frames[STAGE_NAMES[0]][0]  # (num_frames, 3, size, size)
                edited = edited.permute(0, 2, 3, 1).float().cpu().numpy()  # (num_frames, size, size, 3)
                picture = write_rows_picture([source, edited], folder / "keyframes.png")
                paths = write_videos(result.frames[0], folder, self.fps)  # frames: (F', H', W', 3)
            except ValueError:  # a pipeline's own check refused the request: nothing of it is kept
                shutil.rmtree(folder, ignore_errors=True)
                raise
        shown["video"], shown["downloads"] = str(paths[0]), [str(path) for path in paths]
        shown["keyframes"] = str(picture)
        yield dict(shown)
