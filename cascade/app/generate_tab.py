"""The Generate tab without its widgets: the inputs turned into a request, the request run on a model lent
from a pool, and what each output shows after every stage, by output name. :mod:`cascade.app.ui` lays out the
widgets and hands this their values; tests call it directly.

Outputs: ``video`` (the mp4), ``downloads`` (mp4 and gif), ``readings`` (markdown), and per stage
``stage-<name>`` (its frames) and ``truth-<name>`` (the renderer's clip of the prompt).
"""

import contextlib
import queue
import shutil
from collections.abc import Callable, Iterator

from cascade.pipelines.cascade import CascadePipeline
from cascade.utils.checks import check_int

from .cache import RequestCache
from .generation import GenerationRequest, StageSettings, check_request, run_stages
from .views import readings_table, shapes_target, stage_view, write_videos


class ModelPool:
    """Loaded copies of one cascade, each lent to one request at a time (a pipeline's scheduler holds the state
    of the call it runs, so two requests never share one)."""

    def __init__(self, models: list[CascadePipeline]):
        if not isinstance(models, list) or not models:
            raise ValueError(f"`models` must be a non-empty list of CascadePipeline, got {models!r}.")
        if not all(isinstance(model, CascadePipeline) for model in models):
            raise ValueError(f"`models` must hold CascadePipeline objects, got {models!r}.")
        if len({id(model) for model in models}) != len(models):
            raise ValueError("`models` must be distinct copies: a pipeline runs one call at a time.")
        if len({tuple(model.stages) for model in models}) != 1:
            raise ValueError("`models` must be copies of one cascade, with the same stages.")
        self.first = models[0]
        self.size = len(models)
        self._free = queue.Queue()
        for model in models:
            self._free.put(model)

    @contextlib.contextmanager
    def borrow(self) -> Iterator[CascadePipeline]:
        """A model no other request holds, waiting for one if need be; it is given back on exit."""
        model = self._free.get()
        try:
            yield model
        finally:
            self._free.put(model)


def whole_as_int(value):
    """A float that is a whole number as an int (gradio gives numbers as floats), any other value as it is,
    for the checks after it to accept or name."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class GenerateTab:
    """What Generate does with a pool of models, a request cache and a frame rate for the videos."""

    def __init__(self, pool: ModelPool, cache: RequestCache, fps: int = 8):
        if not isinstance(pool, ModelPool):
            raise ValueError(f"`pool` must be a ModelPool, got {pool!r}.")
        if not isinstance(cache, RequestCache):
            raise ValueError(f"`cache` must be a RequestCache, got {cache!r}.")
        self.pool, self.cache, self.fps = pool, cache, check_int("fps", fps, minimum=1)
        self.stage_names = tuple(pool.first.stages)
        pictures = [f"{kind}-{name}" for name in self.stage_names for kind in ("stage", "truth")]
        self.output_names = ("video", "downloads", "readings", *pictures)

    def request(self, values: list) -> GenerationRequest:
        """The request from the inputs' values: prompt, negative prompt, seed, keyframes, the stages chosen,
        then each stage's steps and guidance, in cascade order."""
        if not isinstance(values, list | tuple) or len(values) != 5 + 2 * len(self.stage_names):
            raise ValueError(
                f"`values` must be a list of {5 + 2 * len(self.stage_names)} inputs: prompt, negative prompt, seed, "
                f"keyframes, stages, then steps and guidance for each of {list(self.stage_names)}; got {values!r}."
            )
        prompt, negative, seed, frames, stages, *per_stage = values
        chosen = stages or []
        if not isinstance(chosen, list | tuple):
            raise ValueError(
                f"`stages` must be a list of stage names from {list(self.stage_names)}, got {stages!r}."
            )
        unknown = [name for name in chosen if name not in self.stage_names]
        if unknown:
            raise ValueError(
                f"`stages` has {unknown}, which this model does not have; it has {list(self.stage_names)}."
            )
        settings = {
            name: StageSettings(whole_as_int(per_stage[2 * index]), per_stage[2 * index + 1])
            for index, name in enumerate(self.stage_names)
            if name in chosen
        }
        return GenerationRequest(prompt, negative or "", whole_as_int(seed), whole_as_int(frames), settings)

    def run(self, values: list, progress: Callable | None = None) -> Iterator[dict[str, object]]:
        """Runs the request the inputs' ``values`` make and yields every output's value (by name): cleared at
        first, then after each stage, then with the videos. ``progress(fraction, desc=...)`` is called after
        every denoising step. Bad input raises ``ValueError`` before any model runs."""
        request = self.request(values)
        check_request(self.pool.first, request)
        names = list(request.stages)
        shown = dict.fromkeys(self.output_names)
        shown["readings"] = ""
        yield dict(shown)

        def on_step(name: str, step: int, steps: int) -> None:
            if progress is not None:
                progress((names.index(name) + step / steps) / len(names), desc=f"{name}: step {step}/{steps}")

        target, views = shapes_target(request.prompt), []
        with self.pool.borrow() as model:
            folder = self.cache.new_request()
            try:
                for output in run_stages(model, request, on_step):
                    view = stage_view(output.name, output.frames, target, request.seed, folder)
                    views.append(view)
                    shown[f"stage-{view.name}"] = str(view.picture)
                    shown[f"truth-{view.name}"] = None if view.truth is None else str(view.truth)
                    shown["readings"] = readings_table(views, target)
                    yield dict(shown)
                paths = write_videos(output.frames, folder, self.fps)
            except ValueError:  # a stage's own check refused the request: nothing of it is kept
                shutil.rmtree(folder, ignore_errors=True)
                raise
        shown["video"], shown["downloads"] = str(paths[0]), [str(path) for path in paths]
        yield dict(shown)
