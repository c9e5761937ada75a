"""The peer: EfficientNet-Lite0 served by BentoML, the way a BentoML user would write it.

`bentoml serve bentoml_service:Classifier` from this directory, with WAFT_PEER_MODEL_DIR naming a
model directory built by `make models` (build/models/effnetlite0). The route is Waft's:
`curl -T cat.jpg 127.0.0.1:PORT/effnetlite0/matches[?k=N]` answers the top-k classes as JSON,
`[{"label": "n02123045 tabby, tabby cat", "probability": 0.71}, ...]`.

BentoML's `@bentoml.api` methods take JSON or multipart bodies only, so the raw-body route is a
small Starlette app mounted on the service (`@bentoml.asgi_app`), BentoML's documented way to add
custom routes; it still runs inside BentoML's server (uvicorn worker, its middleware, /readyz).
The pipeline (pipeline.py) runs in Starlette's thread pool, as a sync `@bentoml.api` method would.
Runs in build/peer/venv only: it imports bentoml, never waft.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bentoml
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import Pipeline

ROUTE = os.environ.get("WAFT_PEER_ROUTE", "effnetlite0")
_state: dict[str, Pipeline] = {}


async def matches(request: Request) -> JSONResponse:
    pipeline = _state.get("pipeline")
    if pipeline is None:
        return JSONResponse({"error": "model not loaded"}, status_code=503)
    try:
        k = int(request.query_params.get("k", "5"))
    except ValueError:
        return JSONResponse({"error": "k must be an integer"}, status_code=400)
    body = await request.body()
    if not body:
        return JSONResponse({"error": "empty body: send a JPEG or PNG image"}, status_code=400)
    try:
        result = await run_in_threadpool(pipeline.matches, body, k)
    except (OSError, ValueError) as exc:  # Pillow's UnidentifiedImageError is an OSError
        return JSONResponse({"error": f"cannot decode image: {exc}"}, status_code=400)
    return JSONResponse(result)


app = Starlette(routes=[Route("/matches", matches, methods=["PUT", "POST"])])


@bentoml.asgi_app(app, path=f"/{ROUTE}")
@bentoml.service(workers=1)
class Classifier:
    def __init__(self) -> None:
        model_dir = os.environ.get("WAFT_PEER_MODEL_DIR")
        if not model_dir:
            raise RuntimeError("set WAFT_PEER_MODEL_DIR to a model directory (build/models/effnetlite0)")
        _state["pipeline"] = Pipeline(model_dir)

    @bentoml.api
    def labels(self) -> list[str]:
        """The model's label list (a regular BentoML JSON API, for completeness)."""
        return _state["pipeline"].labels
