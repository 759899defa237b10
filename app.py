"""The web app as a Hugging Face Space (gradio SDK): the demo cascade of ``weights/demo``.

Runs as ``python app.py`` (what a Space does) or ``gradio app.py`` (reloads on edits); ``cascade serve`` is
the same app with flags. The Space's host and port come from ``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT``.
"""

from cascade.app.ui import build_app, launch
from cascade.pipelines.cascade import load_cascade

cascade = load_cascade()
cascade.set_progress_bar_config(disable=True)
demo = build_app(cascade)

if __name__ == "__main__":
    launch(demo)
