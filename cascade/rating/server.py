"""The rating server of ``cascade rate``: one page of plain HTML and JavaScript and a small JSON API, on
FastAPI and uvicorn (what gradio itself runs on).

Why not gradio's components: a blind study must not let the page tell the models apart, and gradio serves a
returned file under its own path (``/gradio_api/file=/.../A_DIR/00003.mp4``), which names the folder; the
votes must also be reachable by plain HTTP clients (the simulated raters, the concurrency test), one request a
vote, which gradio's queue (server-sent events per call) makes roundabout. Here a pair's videos are served as
``/api/pairs/<id>/left.mp4`` and ``right.mp4``, the id a random token, and the page is a static file.

API (JSON; errors as ``{"error": message}`` with 400 for bad input, 404 for an unknown rater or a pair never
served, 409 for other answers to a pair already answered):

- ``POST /api/raters`` -> ``{"rater": id}``: a new anonymous rater (the page keeps it in localStorage).
- ``GET /api/next?rater=ID`` -> ``{"pair", "prompt", "left", "right", "rated", "prompts"}``, or
  ``{"done": true, "rated", "prompts"}`` when the rater has rated every prompt.
- ``GET /api/pairs/{pair}/{left|right}.mp4``: the videos.
- ``POST /api/votes`` with ``{"rater", "pair", "quality", "text"}`` (each answer ``left``, ``right`` or
  ``same``) -> ``{"recorded": true, "duplicate": bool}``.
"""

import contextlib
import random
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from cascade.utils.checks import check_choice, check_int, check_number

from .checks import CHECK_KINDS, check_kinds_argument
from .media import StudyMedia
from .store import (
    MAX_CHECK_SHARE,
    AnsweredPairError,
    UnknownPairError,
    UnknownRaterError,
    VoteStore,
    undo_sides,
)
from .study import MODELS, Study

STATUS = {UnknownPairError: 404, UnknownRaterError: 404, AnsweredPairError: 409}


class VoteBody(BaseModel):
    rater: str
    pair: str
    quality: str
    text: str


def create_app(
    study: Study,
    store: VoteStore,
    check_share: float = 0.1,
    seed: int | None = None,
    check_kinds: tuple[str, ...] = CHECK_KINDS,
) -> FastAPI:
    """The rating app for ``study``, its votes in ``store``; ``check_share`` of the pairs served are attention
    checks, spoiled by one of ``check_kinds``; sides, ties and checks are drawn from ``seed`` (``None``: fresh
    randomness)."""
    if not isinstance(study, Study):
        raise ValueError(f"`study` must be a Study, got {study!r}.")
    if not isinstance(store, VoteStore):
        raise ValueError(f"`store` must be a VoteStore, got {store!r}.")
    check_number("check_share", check_share, minimum=0.0, maximum=MAX_CHECK_SHARE)
    check_int("seed", seed, minimum=0, optional=True)
    check_kinds = check_kinds_argument("check_kinds", check_kinds)
    study_id = store.register_study(study)
    media = StudyMedia(study)
    rng, rng_lock = random.Random(seed), threading.Lock()
    page = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    app = FastAPI(title="cascade rate", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ValueError)
    async def bad_input(request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=STATUS.get(type(error), 400))

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.post("/api/raters")
    def new_rater() -> dict:
        return {"rater": store.add_rater()}

    @app.get("/api/next")
    def next_pair(rater: str) -> dict:
        with rng_lock:  # one draw at a time keeps a seeded study reproducible for one rater
            assignment = store.next_assignment(study_id, rater, rng, check_share, check_kinds)
        rated, prompts = store.progress(study_id, rater)
        if assignment is None:
            return {"done": True, "rated": rated, "prompts": prompts}
        return {
            "pair": assignment.id,
            "prompt": assignment.prompt,
            "left": f"/api/pairs/{assignment.id}/left.mp4",
            "right": f"/api/pairs/{assignment.id}/right.mp4",
            "rated": rated,
            "prompts": prompts,
        }

    @app.get("/api/pairs/{pair}/{side}.mp4")
    def video(pair: str, side: str) -> Response:
        check_choice("side", side, ("left", "right"))
        assignment = store.assignment(study_id, pair)
        if assignment is None:
            raise UnknownPairError(f"pair {pair!r} was never served in this study")
        shown = undo_sides(side, assignment.left_shown)  # a model, or "intact" / "degraded" for a check
        if shown in MODELS:
            content = media.original(assignment.prompt_index, shown)
        elif shown == "intact":
            content = media.original(assignment.prompt_index, assignment.check_model)
        else:
            content = media.spoiled(assignment.prompt_index, assignment.check_model, assignment.check_kind)
        headers = {"Cache-Control": "no-store"}
        if isinstance(content, Path):
            return FileResponse(content, media_type="video/mp4", headers=headers)
        return Response(content, media_type="video/mp4", headers=headers)

    @app.post("/api/votes")
    def vote(body: VoteBody) -> dict:
        _, duplicate = store.record_vote(study_id, body.rater, body.pair, body.quality, body.text)
        return {"recorded": True, "duplicate": duplicate}

    return app


def _check_address(app: FastAPI, host: str, port: int) -> None:
    if not isinstance(app, FastAPI):
        raise ValueError(f"`app` must be a FastAPI app (create_app's), got {app!r}.")
    if not isinstance(host, str) or not host:
        raise ValueError(f"`host` must be a non-empty str, got {host!r}.")
    check_int("port", port, minimum=1, maximum=65535)


def serve(app: FastAPI, host: str, port: int) -> None:
    """Serves ``app`` on ``host``:``port`` until interrupted."""
    _check_address(app, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@contextlib.contextmanager
def serving(app: FastAPI, host: str, port: int) -> Iterator[str]:
    """Serves ``app`` on ``host``:``port`` from a thread of this process while the block runs; yields its base
    URL (for simulated raters and tests)."""
    _check_address(app, host, port)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise OSError(f"the rating server could not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join()
