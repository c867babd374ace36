"""The HTTP API over a ``Service`` (FastAPI; run by uvicorn, see ``run_server``).

    GET    /health                     200 when every task is loaded
    GET    /v1/tasks                   the tasks: name, labels, task type, method, backbone, ...
    POST   /v1/tasks/{name}/predict    an audio file (the body, or a multipart upload) -> the JSON
                                       of one entry of ``softmoa predict --json``; query top_k,
                                       threshold, timeline, window, hop
    POST   /v1/tasks/{name}            the same file -> [{"label", "score"}] (Hugging Face's
                                       audio-classification shape)
    WS     /v1/tasks/{name}/stream     live audio: binary frames of 16 kHz mono s16le PCM in, a
                                       text frame per window out, ``softmoa predict --stream``'s
                                       JSON; query top_k, threshold, window, hop; the text "end"
                                       gives the last (padded) window and closes
    POST   /v1/tasks                   {"run": RUN, "name": NAME}: serve another run   (admin)
    DELETE /v1/tasks/{name}            stop serving a task                             (admin)
    GET    /                           a page to try the tasks in a browser
    GET    /v2/health/ready, /v2/models/{name}, POST /v2/models/{name}/infer
                                       KServe's open inference protocol (v2), ``_add_v2_routes``

Every refusal is ``{"error": "..."}`` on one line with a 4xx status (503 with Retry-After when
the queue is full; on the stream, that frame and then a close with code 4000 + the status); the
admin routes exist only with ``admin`` and answer only the host itself.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from ..errors import SoftmoaError
from .service import Query, RequestError, Service

LOCAL = {"127.0.0.1", "::1", "localhost", "testclient"}  # the host itself (testclient: FastAPI's test client)
PAGE = resources.files(__package__) / "page"


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)


async def _body(request: Request, service: Service) -> tuple[bytes, str]:
    """The uploaded file and its name: a multipart form's first file, else the raw body."""
    declared = request.headers.get("content-length") or "0"
    declared = int(declared) if declared.isdigit() else 0  # a malformed length: the body read decides
    if declared > service.max_bytes + (1 << 16):
        raise RequestError(413, f"{declared / 2**20:.1f} MB is over the limit of {service.max_bytes / 2**20:g} MB")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = next((value for value in form.values() if hasattr(value, "read")), None)
        if upload is None:
            raise RequestError(400, "the form has no file; send the audio as a file field or as the body")
        return await upload.read(), upload.filename or "upload"
    return await request.body(), request.query_params.get("filename", "upload")


PARSERS = {"top_k": int, "threshold": float, "window": float, "hop": float,
           "timeline": lambda text: {"true": True, "1": True, "false": False, "0": False}[text.lower()]}
PREDICT = ("top_k", "threshold", "window", "hop", "timeline", "filename")  # filename: read by _body
STREAM = ("top_k", "threshold", "window", "hop")


def _query(params, allowed: tuple[str, ...]) -> Query:
    """The query of a route taking the parameters ``allowed`` (of ``PARSERS``, or read elsewhere);
    an unknown name or a bad value is a RequestError naming it."""
    values = {}
    for name in params:
        if name not in allowed:
            raise RequestError(400, f"unknown query parameter {name!r}; allowed: {', '.join(allowed)}")
    for name in allowed:
        if name in params and name in PARSERS:
            try:
                values[name] = PARSERS[name](params[name])
            except (ValueError, KeyError):
                raise RequestError(400, f"{name}={params[name]!r} is not a valid value") from None
    return Query(**values)


async def _stream(websocket: WebSocket, service: Service, name: str) -> None:
    """A live timeline over a WebSocket: binary frames of PCM in, a text frame of JSON per window
    out, until the client closes (or sends the text ``end``: the last, padded window, then a
    normal close). A refusal: an ``{"error"}`` frame, then a close with code 4000 + its HTTP status."""
    await websocket.accept()
    try:
        live = service.stream(name, _query(websocket.query_params, STREAM))
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                windows = await asyncio.to_thread(live.feed, message["bytes"])
            elif message.get("text") == "end":
                windows = await asyncio.to_thread(live.end)
            else:
                raise RequestError(400, 'send binary frames of 16 kHz mono s16le PCM, then the text "end" or close')
            for window in windows:
                await websocket.send_text(json.dumps(window.to_dict()))
            if message.get("text") == "end":
                await websocket.close()
                return
    except RequestError as error:
        await websocket.send_text(json.dumps({"error": " ".join(str(error).split())}))
        await websocket.close(code=4000 + error.status)
    except WebSocketDisconnect:
        return


async def _answered(service: Service, name: str, data: bytes, filename: str, query: Query) -> dict:
    """``service.predict`` without holding a thread while the windows wait for their batch:
    decoding takes a worker thread, the wait does not (the default pool has only a few threads:
    a request holding one while it waits would keep others out of the batch)."""
    pending = await asyncio.to_thread(service.submit, name, data, filename, query)
    await asyncio.wait([asyncio.wrap_future(pending.future)])
    return await asyncio.to_thread(pending.answer) if query.timeline else pending.answer()


def build_app(service: Service, admin: bool = False) -> FastAPI:
    """The FastAPI app serving ``service``; ``admin``: the routes that add and remove tasks."""
    app = FastAPI(title="softmoa", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return _error(error.status, str(error), {"Retry-After": "1"} if error.status == 503 else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail).lower() + f": {request.method} {request.url.path}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        return _error(400, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")

    async def scored(request: Request, name: str) -> dict:
        data, filename = await _body(request, service)
        query = _query(request.query_params, PREDICT)
        return await _answered(service, name, data, filename, query)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "tasks": len(service.tasks.names)}

    @app.get("/v1/tasks")
    async def tasks() -> list[dict]:
        return service.describe()

    @app.post("/v1/tasks/{name}/predict")
    async def predict(name: str, request: Request) -> dict:
        return await scored(request, name)

    @app.post("/v1/tasks/{name}")
    async def classify(name: str, request: Request) -> list[dict]:
        return [{"label": p["label"], "score": p["score"]} for p in (await scored(request, name))["predictions"]]

    @app.websocket("/v1/tasks/{name}/stream")
    async def stream(websocket: WebSocket, name: str) -> None:
        await _stream(websocket, service, name)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return (PAGE / "index.html").read_text()

    @app.get("/page/{name}")
    async def page_file(name: str) -> Response:
        kinds = {".js": "text/javascript", ".css": "text/css"}
        found = PAGE / name
        suffix = name[name.rfind("."):] if "." in name else ""
        if "/" in name or suffix not in kinds or not found.is_file():
            raise RequestError(404, f"no page file {name!r}")
        return Response(found.read_text(), media_type=kinds[suffix])

    _add_v2_routes(app, service)

    if admin:
        def host_only(request: Request) -> None:
            if request.client is None or request.client.host not in LOCAL:
                raise RequestError(403, "adding and removing tasks is allowed from the server's host only")

        @app.post("/v1/tasks", status_code=201)
        async def add(request: Request) -> dict:
            host_only(request)
            try:
                body = await request.json()
            except ValueError:
                raise RequestError(400, 'send JSON: {"run": "RUN_FOLDER_OR_HUB_ID", "name": "NAME"}') from None
            if not isinstance(body, dict) or not isinstance(body.get("run"), str):
                raise RequestError(400, 'send JSON: {"run": "RUN_FOLDER_OR_HUB_ID", "name": "NAME"}')
            return await asyncio.to_thread(service.add, body.get("name"), body["run"])

        @app.delete("/v1/tasks/{name}", status_code=204)
        async def remove(name: str, request: Request) -> Response:
            host_only(request)
            await asyncio.to_thread(service.remove, name)
            return Response(status_code=204)

    return app


def _add_v2_routes(app: FastAPI, service: Service) -> None:
    """KServe's open inference protocol (v2, REST): a task is a model; ``infer`` takes one input
    ``audio`` of datatype BYTES holding the file base64-encoded (its ``parameters`` may carry
    ``top_k``, ``threshold``) and answers two outputs, ``labels`` (BYTES) and ``scores`` (FP32),
    the top-k of ``predict``."""
    import base64
    import binascii

    @app.get("/v2/health/ready")
    async def ready() -> dict:
        return {"ready": True}

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> dict:
        try:
            task = service.tasks.get(name)[0]
        except SoftmoaError as error:
            raise RequestError(404, str(error)) from None
        return {"name": name, "platform": "softmoa", "versions": ["1"],
                "inputs": [{"name": "audio", "datatype": "BYTES", "shape": [1]}],
                "outputs": [{"name": "labels", "datatype": "BYTES", "shape": [-1]},
                            {"name": "scores", "datatype": "FP32", "shape": [-1]}],
                "parameters": {"labels": task.classifier.labels, "task": task.classifier.task.name}}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> dict:
        try:
            body = await request.json()
            first = body["inputs"][0]
            if first.get("datatype") != "BYTES":
                raise ValueError
            data = base64.b64decode(first["data"][0], validate=True)
        except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
            raise RequestError(400, 'send {"inputs": [{"name": "audio", "datatype": "BYTES", "shape": [1], '
                                    '"data": ["<the audio file, base64>"]}]}') from None
        options = first.get("parameters") or {}
        query = Query(top_k=int(options.get("top_k", 5)), threshold=options.get("threshold"))
        answer = await _answered(service, name, data, first.get("name", "audio"), query)
        pairs = answer["predictions"]
        return {"model_name": name, "id": body.get("id"),
                "outputs": [{"name": "labels", "datatype": "BYTES", "shape": [len(pairs)],
                             "data": [p["label"] for p in pairs]},
                            {"name": "scores", "datatype": "FP32", "shape": [len(pairs)],
                             "data": [p["score"] for p in pairs]}]}


def run_server(service: Service, host: str = "127.0.0.1", port: int = 8000, admin: bool = False,
               ready=None) -> None:
    """Serve ``service`` until SIGINT or SIGTERM; then take no new connections, finish the
    requests in flight and the windows queued, and return. ``ready``: called once listening,
    with the server's URL (its real port when ``port`` is 0)."""
    import uvicorn

    config = uvicorn.Config(build_app(service, admin), host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
    if ready is not None:
        original = server.startup

        async def startup(sockets=None):
            await original(sockets)
            bound = server.servers[0].sockets[0].getsockname()
            ready(f"http://{'[' + host + ']' if ':' in host else host}:{bound[1]}")

        server.startup = startup
    try:
        server.run()
    finally:
        service.batcher.close()
