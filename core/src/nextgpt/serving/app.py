"""The OpenAI-compatible app: `create_app(model, settings)` returns a FastAPI application.

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` (JSON, or server-sent
events with ``stream: true``). Everything modality-specific comes from the model's specs
(`nextgpt.serving.openai_format`); each request, its files read and written included, runs on the
model's worker, one at a time
(`nextgpt.serving.worker`). Each request has its own temporary folder for the files it carries
and the files it gets, removed when it ends, so no request sees another's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from nextgpt.errors import NextGPTError
from nextgpt.serving.openai_format import RequestError, media_part, message_fields, to_hf_messages, to_openai_message
from nextgpt.serving.settings import ChatCompletionRequest, ServeSettings
from nextgpt.serving.worker import ModelWorker
from nextgpt.suggest import hint, listing

if TYPE_CHECKING:
    from nextgpt.model import NextGPTModel

log = logging.getLogger("nextgpt.serve")


class ChatService:
    """What the routes do, apart from HTTP: check a request, run it on the model, shape the answer."""

    def __init__(self, model: NextGPTModel, settings: ServeSettings) -> None:
        self.model = model
        self.settings = settings
        self.worker = ModelWorker(settings.queue_size)
        self.created = int(time.time())
        self._count = 0

    # -- checking ----------------------------------------------------------------------------
    def check_key(self, authorization: str | None) -> None:
        key = self.settings.api_key
        if key is None:
            return
        if not authorization or not authorization.startswith("Bearer "):
            raise RequestError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        if authorization.removeprefix("Bearer ").strip() != key:
            raise RequestError(401, "incorrect API key", code="invalid_api_key")

    def parse(self, body: bytes) -> ChatCompletionRequest:
        if len(body) > self.settings.max_request_bytes:
            raise RequestError(
                413,
                f"the request is larger than the limit of {self.settings.max_request_bytes} bytes",
                code="too_large",
            )
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(400, f"the request body is not JSON: {exc}") from None
        try:
            fields = [spec.openai_message_field for spec in self.model.specs.values() if spec.openai_message_field]
            request = ChatCompletionRequest.parse(raw, fields)
        except NextGPTError as exc:
            raise RequestError(400, one_line(exc)) from None
        if request.model != self.settings.model_name:
            raise RequestError(
                404,
                f"model {request.model!r} is not served here (this server serves {self.settings.model_name!r})",
                "model",
                "model_not_found",
            )
        return request

    def wanted(self, request: ChatCompletionRequest) -> list[str]:
        """The modalities to generate (``modalities`` less text); unknown ones are a 400."""
        names = [m for m in request.modalities or [] if m != "text"]
        for name in [*names, *(request.decode or {})]:
            if name not in self.model.decoders:
                can = ["text", *sorted(self.model.decoders)]
                raise RequestError(
                    400,
                    f"modalities: unknown modality {name!r}{hint(name, can)} (this model can generate: {listing(can)})",
                    "modalities",
                    "unknown_modality",
                )
        return names

    def check_output_limits(self, request: ChatCompletionRequest) -> None:
        s = self.settings
        if request.size:
            width, height = (int(v) for v in request.size.split("x"))
            if width * height > s.max_pixels:
                raise RequestError(400, f"size: {request.size} is over the limit of {s.max_pixels} pixels", "size")
        if request.seconds is not None and request.seconds > s.max_seconds:
            raise RequestError(400, f"seconds: {request.seconds} is over the limit of {s.max_seconds}", "seconds")
        tokens = request.max_new_tokens()
        if tokens is not None and tokens > s.max_new_tokens:
            raise RequestError(400, f"max_tokens: {tokens} is over the limit of {s.max_new_tokens}", "max_tokens")

    # -- running -----------------------------------------------------------------------------
    def prepare(self, request: ChatCompletionRequest, folder: Path) -> tuple[dict[str, Any], list[str]]:
        """The keyword arguments of ``generate`` for a checked request, and the modalities it reads."""
        wanted = self.wanted(request)
        self.check_output_limits(request)
        try:
            decode = request.decode_options(sorted({*wanted, *self.model.decoders}))
        except NextGPTError as exc:
            raise RequestError(400, one_line(exc)) from None
        messages, read = to_hf_messages(request.messages, self.model.specs, folder, self.settings)
        (folder / "out").mkdir()
        options = dict(
            messages=messages,
            output_dir=folder / "out",
            request=wanted,
            decode=decode,
            max_new_tokens=request.max_new_tokens(),
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            progress=False,
        )
        return options, read

    @contextlib.contextmanager
    def request_folder(self) -> Iterator[Path]:
        """A request's own temporary folder (its files in and out), removed when it ends."""
        folder = Path(tempfile.mkdtemp(prefix="nextgpt-serve-", dir=self.settings.work_dir))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def answer(self, request_id: str, request: ChatCompletionRequest) -> tuple[dict[str, Any], str, int]:
        """A whole non-streamed request, run on the worker (files, `generate`, the response
        built while its files exist): the response, its log summary and its token count."""
        with self.request_folder() as folder:
            options, read = self.prepare(request, folder)
            output = run_generate(self.model, options)
            answer = self.completion(request_id, output, options)
        return answer, self.summary(request_id, read, options), len(output.token_ids)

    def summary(self, request_id: str, read: list[str], options: dict[str, Any]) -> str:
        return f"{request_id} in: {listing(['text', *read])} out: {listing(['text', *options['request']])}"

    def next_id(self) -> str:
        self._count += 1
        return f"chatcmpl-{uuid.uuid4().hex[:24]}"

    def finish_reason(self, output: Any, options: dict[str, Any]) -> str:
        limit = options["max_new_tokens"] or self.model.config.llm.max_new_tokens
        return "length" if len(output.token_ids) >= limit else "stop"

    def completion(self, request_id: str, output: Any, options: dict[str, Any]) -> dict[str, Any]:
        finish = self.finish_reason(output, options)
        return {
            "id": request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.settings.model_name,
            "choices": [{"index": 0, "message": to_openai_message(output, self.model.specs), "finish_reason": finish}],
        }

    def chunk(self, request_id: str, delta: dict[str, Any], finish: str | None = None) -> str:
        body = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.settings.model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(body)}\n\n"


def one_line(error: Exception) -> str:
    """A validation error's lines joined into one (an HTTP error message is one line)."""
    return str(error).replace("invalid configuration:\n  ", "").replace("\n  ", "; ")


def error_response(error: RequestError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def create_app(model: NextGPTModel, settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI app serving ``model`` with OpenAI's chat-completions API."""
    settings = settings or ServeSettings()
    service = ChatService(model, settings)
    app = FastAPI(title="nextgpt", summary="an any-to-any model behind OpenAI's chat-completions API")
    app.state.service = service

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return error_response(exc)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": settings.model_name,
            "pending": service.worker.pending,
            "served": service.worker.served,
        }

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        service.check_key(request.headers.get("authorization"))
        card = {"id": settings.model_name, "object": "model", "created": service.created, "owned_by": "nextgpt"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        start = time.perf_counter()
        service.check_key(request.headers.get("authorization"))
        parsed = service.parse(await request.body())
        request_id = service.next_id()
        try:
            if parsed.stream:
                events = await start_stream(service, request_id, parsed, start)
                return StreamingResponse(events, media_type="text/event-stream")
            answer, summary, tokens = await service.worker.run(lambda: service.answer(request_id, parsed))
        except RequestError as exc:
            log.info("%s refused: %d %s", request_id, exc.status, exc.message)
            raise
        log.info("%s: 200 in %.2f s (%d tokens)", summary, time.perf_counter() - start, tokens)
        return answer

    return app


def run_generate(model: Any, options: dict[str, Any]) -> Any:
    """``model.generate`` with a request's options; a `NextGPTError` (bad input found while
    generating) becomes a 400 carrying its message, anything else a 500 that names only its kind."""
    try:
        return model.generate(**options)
    except NextGPTError as exc:
        raise RequestError(400, one_line(exc)) from None
    except Exception as exc:  # the server stays up; the details stay in its log
        log.exception("a request failed")
        raise RequestError(500, f"internal error ({type(exc).__name__}); see the server log") from None


async def start_stream(
    service: ChatService, request_id: str, request: ChatCompletionRequest, start: float
) -> AsyncIterator[str]:
    """Queue a streamed request on the model and wait until its turn has come and its input was
    read: a refusal (503 for a full queue, 400 for bad media...) is still an HTTP status then.
    Returns its server-sent events: the role, text deltas as the LLM writes them, one chunk per
    media item when it is ready (its part in ``delta.content_parts``, and the modality's OpenAI
    field, e.g. ``delta.audio``), the finish reason, then ``[DONE]``. An error after the first
    event is sent as an event with OpenAI's ``error`` object."""
    from nextgpt.streaming import Finished, MediaReady, TextDelta

    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Any] = asyncio.Queue()
    end = object()
    specs = service.model.specs

    def send(item: Any) -> None:
        loop.call_soon_threadsafe(events.put_nowait, item)

    def job() -> None:
        with service.request_folder() as folder:
            try:
                options, read = service.prepare(request, folder)
            except RequestError as exc:
                send(exc)
                return
            send((options, service.summary(request_id, read, options)))
            text: list[str] = []
            try:
                for event in service.model.generate(**options, stream=True):
                    if isinstance(event, TextDelta):
                        text.append(event.text)
                        send(service.chunk(request_id, {"content": event.text}))
                    elif isinstance(event, MediaReady):
                        delta = {"content_parts": [media_part(event.item)]}
                        delta.update(message_fields(event.item, specs[event.item.modality], "".join(text)))
                        send(service.chunk(request_id, delta))
                    elif isinstance(event, Finished):
                        send(event.output)
            except NextGPTError as exc:
                send(RequestError(400, one_line(exc)))
            except Exception as exc:  # the server stays up; the client gets the error as an event
                log.exception("%s failed", request_id)
                send(RequestError(500, f"internal error ({type(exc).__name__}); see the server log"))
            finally:
                send(end)

    service.worker.submit(job)
    first = await events.get()
    if isinstance(first, RequestError):
        raise first
    options, summary = first

    async def sse() -> AsyncIterator[str]:
        yield service.chunk(request_id, {"role": "assistant", "content": ""})
        tokens = 0
        while (item := await events.get()) is not end:
            if isinstance(item, RequestError):
                log.info("%s failed: %s", request_id, item.message)
                yield f"data: {json.dumps(item.body())}\n\n"
            elif isinstance(item, str):
                yield item
            else:
                tokens = len(item.token_ids)
                yield service.chunk(request_id, {}, service.finish_reason(item, options))
        yield "data: [DONE]\n\n"
        log.info("%s: 200 streamed in %.2f s (%d tokens)", summary, time.perf_counter() - start, tokens)

    return sse()


def http_protocol() -> type:
    """uvicorn's HTTP/1.1 protocol with ``TCP_NODELAY`` on each connection. Without it a kept-alive
    connection waits for the client's delayed ACK (40 ms on Linux) between a response's headers
    and its body, which is longer than a tiny model's whole answer."""
    import socket

    from uvicorn.protocols.http.h11_impl import H11Protocol

    class NoDelayH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)

    return NoDelayH11Protocol


class BackgroundServer:
    """Serve an ASGI app with uvicorn on a thread (for tests, benchmarks and notebooks):
    ``with BackgroundServer(app) as url: ...``; port 0 picks a free port."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.url = f"http://{host}:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", http=http_protocol()))
        self._thread: Any = None

    def __enter__(self) -> str:
        import threading

        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
