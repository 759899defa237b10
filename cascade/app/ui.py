"""The web app of ``cascade serve`` (gradio): a Generate tab and an Edit tab for a cascade.

Generate takes a prompt, a negative prompt, a seed, the number of keyframes, which stages to run and each
stage's steps and guidance (their defaults the model's own), runs the stages one at a time with a progress
bar, and shows each stage's frames as soon as it finishes, beside the shapes-world renderer's clip of the
prompt and what the analysis reads in both; then the video, playable and downloadable as mp4 and gif
(:class:`~cascade.app.generate_tab.GenerateTab` does the work; this module lays out its widgets).

Edit takes an uploaded video, what it shows and what it should show, the edit's method, steps, guidance,
strength, seed and number of keyframes, and shows the edited video (mp4 and gif downloads too) and the
keyframes the video was fitted to above the edited keyframes (:class:`~cascade.app.edit_tab.EditTab`).

Requests of both tabs wait in one gradio queue (at most ``queue_size``); as many run at once as there are
loaded copies of the model. Bad input is answered with the checks' own ``ValueError`` message. Every
request's files go to a folder of a :class:`~cascade.app.cache.RequestCache` inside gradio's cache folder, so
gradio serves them without copying them, and only the last ``cache_size`` requests' files are kept.
"""

from collections.abc import Callable
from pathlib import Path

import gradio as gr

from cascade.pipelines.cascade import CascadePipeline
from cascade.pipelines.editing import DEFAULT_STRENGTH, EDIT_METHODS
from cascade.utils.checks import check_int

from .cache import RequestCache
from .edit_tab import EditTab, edit_default
from .generate_tab import GenerateTab, ModelPool
from .generation import default_num_frames, default_settings

TITLE = "cascade: cascaded text-to-video"
EXAMPLE_PROMPT = "a red circle moving right"
MAX_STEPS = 100
MAX_GUIDANCE = 20.0
CACHE_NAME = "cascade-requests"  # in gradio's cache folder: a restarted server prunes what the last one left


def _cache(app: gr.Blocks, cache_folder: str | Path | None, cache_size: int) -> RequestCache:
    """The request cache in ``cache_folder`` (default ``CACHE_NAME``), which must be inside ``app``'s gradio
    cache folder: files there are served as they are, not copied into the cache again."""
    upload_folder = Path(app.GRADIO_CACHE).resolve()
    folder = Path(cache_folder or upload_folder / CACHE_NAME).resolve()
    if not folder.is_relative_to(upload_folder):
        raise ValueError(
            f"`cache_folder` must be inside gradio's cache folder {str(upload_folder)!r} (GRADIO_TEMP_DIR), "
            f"got {str(folder)!r}."
        )
    return RequestCache(folder, cache_size)


def build_app(
    models: CascadePipeline | list[CascadePipeline],
    cache_folder: str | Path | None = None,
    cache_size: int = 32,
    queue_size: int = 16,
    fps: int = 8,
) -> gr.Blocks:
    """The gradio app for ``models``: one cascade, or several loaded copies of it (that many requests run at
    once). Request files go to ``cache_folder`` (default: ``cascade-requests`` in gradio's cache folder,
    ``GRADIO_TEMP_DIR``; it must be inside it), the last ``cache_size`` requests' kept; at most ``queue_size``
    requests wait; videos play at ``fps``. ``app.generate_tab`` is the
    :class:`~cascade.app.generate_tab.GenerateTab` behind the Generate button, ``app.edit_tab`` the
    :class:`~cascade.app.edit_tab.EditTab` behind Edit."""
    pool = ModelPool(models if isinstance(models, list) else [models])
    check_int("queue_size", queue_size, minimum=1)
    cascade = pool.first
    defaults, frames_default = default_settings(cascade), default_num_frames(cascade)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        cache = _cache(app, cache_folder, cache_size)
        tab, edit_tab = GenerateTab(pool, cache, fps), EditTab(pool, cache, fps)
        gr.Markdown(f"# {TITLE}\nStages: {' → '.join(cascade.stages)}")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    prompt = gr.Textbox(label="Prompt", value=EXAMPLE_PROMPT, elem_id="prompt")
                    negative = gr.Textbox(label="Negative prompt", elem_id="negative-prompt")
                    with gr.Row():
                        seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="seed")
                        frames = gr.Number(
                            label="Keyframes",
                            value=frames_default,
                            precision=0,
                            minimum=1,
                            elem_id="keyframes",
                        )
                    stages = gr.CheckboxGroup(
                        list(cascade.stages), value=list(cascade.stages), label="Stages", elem_id="stages"
                    )
                    per_stage = []
                    with gr.Accordion("Steps and guidance per stage", open=False):
                        for name, settings in defaults.items():
                            with gr.Row():
                                per_stage.append(
                                    gr.Slider(
                                        1,
                                        MAX_STEPS,
                                        settings.num_inference_steps,
                                        step=1,
                                        label=f"{name} steps",
                                    )
                                )
                                per_stage.append(
                                    gr.Slider(
                                        0.0,
                                        MAX_GUIDANCE,
                                        settings.guidance_scale,
                                        step=0.5,
                                        label=f"{name} guidance",
                                    )
                                )
                    button = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column(scale=2):
                    outputs = {}
                    with gr.Row():
                        outputs["video"] = gr.Video(
                            label="Video",
                            autoplay=True,
                            loop=True,
                            interactive=False,
                            height=288,
                            elem_id="video",
                        )
                        outputs["downloads"] = gr.File(
                            label="Download (mp4, gif)",
                            file_count="multiple",
                            interactive=False,
                            elem_id="downloads",
                        )
                    gr.Markdown(
                        "Each stage's frames as it finishes (left), the renderer's clip of the prompt (right)"
                    )
                    for name in cascade.stages:
                        with gr.Row():
                            for kind, label in (("stage", name), ("truth", f"{name}: renderer")):
                                outputs[f"{kind}-{name}"] = gr.Image(
                                    label=label, type="filepath", interactive=False, elem_id=f"{kind}-{name}"
                                )
                    outputs["readings"] = gr.Markdown(elem_id="readings")

        inputs = [prompt, negative, seed, frames, stages, *per_stage]
        generate = _handler("generate", tab, outputs)
        gr.on([button.click, prompt.submit], generate, inputs, set(outputs.values()), api_name="generate")
        with gr.Tab("Edit"):
            edit_inputs, edit_outputs, edit_button = _edit_widgets(cascade, frames_default)
        edit = _handler("edit", edit_tab, edit_outputs)
        edit_button.click(edit, edit_inputs, set(edit_outputs.values()), api_name="edit")
    app.queue(default_concurrency_limit=pool.size, max_size=queue_size)
    app.generate_tab, app.edit_tab = tab, edit_tab
    return app


def _handler(name: str, tab: GenerateTab | EditTab, outputs: dict) -> Callable:
    """The event function ``name`` of ``tab``: its outputs' values by widget (``outputs``: output name ->
    widget) as ``tab.run`` yields them, with gradio's progress bar; bad input answered with the check's
    ``ValueError`` message."""

    def handle(*values, progress=gr.Progress()):  # noqa: B008 (gradio finds its tracker by this default)
        try:
            for shown in tab.run(list(values), progress):
                yield {outputs[output]: value for output, value in shown.items()}
        except ValueError as error:
            raise gr.Error(str(error), print_exception=False) from None

    handle.__name__ = name  # gradio names the event by its function
    return handle


def _edit_widgets(cascade: CascadePipeline, frames_default: int) -> tuple[list, dict, gr.Button]:
    """Lays out the Edit tab's widgets (inside the tab); returns its inputs in
    :data:`~cascade.app.edit_tab.INPUT_NAMES` order, its outputs by name and its button."""
    strengths = ", ".join(f"{strength:g} {method}" for method, strength in DEFAULT_STRENGTH.items())
    with gr.Row():
        with gr.Column(scale=1):
            video = gr.Video(label="Video to edit", sources=["upload"], height=224, elem_id="edit-input")
            source = gr.Textbox(label="Source prompt: what the video shows", elem_id="edit-source-prompt")
            prompt = gr.Textbox(label="Target prompt: what the edited video shows", elem_id="edit-prompt")
            method = gr.Dropdown(
                list(EDIT_METHODS), value=EDIT_METHODS[0], label="Method", elem_id="edit-method"
            )
            with gr.Row():
                steps = gr.Slider(
                    1,
                    MAX_STEPS,
                    edit_default(cascade, "num_inference_steps"),
                    step=1,
                    label="Steps",
                    elem_id="edit-steps",
                )
                guidance = gr.Slider(
                    0.0,
                    MAX_GUIDANCE,
                    edit_default(cascade, "guidance_scale"),
                    step=0.5,
                    label="Guidance",
                    elem_id="edit-guidance",
                )
            with gr.Row():
                strength = gr.Number(
                    label=f"Strength (empty: {strengths})",
                    value=None,
                    minimum=0,
                    maximum=1,
                    step=0.05,
                    elem_id="edit-strength",
                )
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="edit-seed")
                frames = gr.Number(
                    label="Keyframes", value=frames_default, precision=0, minimum=2, elem_id="edit-keyframes"
                )
            button = gr.Button("Edit", variant="primary", elem_id="edit")
        with gr.Column(scale=2):
            outputs = {}
            with gr.Row():
                outputs["video"] = gr.Video(
                    label="Edited video",
                    autoplay=True,
                    loop=True,
                    interactive=False,
                    height=288,
                    elem_id="edit-video",
                )
                outputs["downloads"] = gr.File(
                    label="Download (mp4, gif)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="edit-downloads",
                )
            outputs["keyframes"] = gr.Image(
                label="Keyframes: the video fitted to the model (top), edited (below)",
                type="filepath",
                interactive=False,
                elem_id="edit-keyframes-picture",
            )
    return [video, source, prompt, method, steps, guidance, strength, seed, frames], outputs, button


def launch(app: gr.Blocks, host: str | None = None, port: int | None = None, block: bool = True) -> None:
    """Serves ``app`` on ``host``:``port`` (``None``: gradio's defaults, ``GRADIO_SERVER_NAME`` /
    ``GRADIO_SERVER_PORT`` or 127.0.0.1:7860); with ``block``, until interrupted, then removes the request
    cache."""
    if not isinstance(app, gr.Blocks) or not isinstance(getattr(app, "generate_tab", None), GenerateTab):
        raise ValueError(f"`app` must be an app made by build_app, got {app!r}.")
    check_int("port", port, minimum=1, maximum=65535, optional=True)
    if host is not None and (not isinstance(host, str) or not host):
        raise ValueError(f"`host` must be a non-empty str or None, got {host!r}.")
    try:
        app.launch(
            server_name=host, server_port=port, prevent_thread_lock=not block, ssr_mode=False, quiet=True
        )
    finally:
        if block:
            app.generate_tab.cache.clear()
