"""The web app as a Hugging Face Space (gradio SDK): the demo cascade of ``weights/demo``.

Runs as ``python app.py`` (what a Space does) or ``gradio app.py`` (reloads on edits); ``cascade serve`` is
the same app with flags. The Space's host and port come from ``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT``.
``scripts/make_space.py`` assembles the Space's folder (docs/space.md).
"""

from pathlib import Path

from cascade.app.ui import build_app, launch
from cascade.pipelines.cascade import load_cascade

# weights/demo beside this file, in the repository and in the Space's folder alike (scripts/make_space.py); the
# package's own default (DEMO_MODEL) is looked for from the package's folder, which misses it in a Space.
MODEL = Path(__file__).resolve().parent / "weights" / "demo"

cascade = load_cascade(MODEL)
cascade.set_progress_bar_config(disable=True)
demo = build_app(cascade)

if __name__ == "__main__":
    launch(demo)
