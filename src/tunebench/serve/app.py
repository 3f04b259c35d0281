"""The HTTP side: OpenAI's routes on FastAPI, the API key, the body limit, and errors in OpenAI's shape.

Handlers only validate, tokenize and wait: a request becomes a job for the engine's thread, and its
tokens come back through an asyncio queue, streamed as server-sent events or gathered into one answer.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from tunebench.core.errors import TunebenchError
from tunebench.serve import protocol as wire
from tunebench.serve.catalog import Catalog, CatalogError
from tunebench.serve.engine import Busy, Engine, Job, Route
from tunebench.serve.options import Limits
from tunebench.serve.protocol import ServeError

log = logging.getLogger("tunebench.serve")


def create_app(engine: Engine, catalog: Catalog, limits: Limits, api_key: str | None = None) -> FastAPI:
    app = FastAPI(title="tunebench serve", docs_url=None, redoc_url=None, openapi_url=None)
    state = _State(engine, catalog, limits)
    _errors(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": len(engine.routes), **engine.stats}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [r.describe() for r in engine.routes.values()]}

    @app.get("/v1/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        return state.route(name).describe()

    @app.post("/v1/completions")
    async def completions(body: wire.CompletionRequest, request: Request):
        return await state.completions(body, request)

    @app.post("/v1/chat/completions")
    async def chat(body: wire.ChatRequest, request: Request):
        return await state.chat(body, request)

    @app.get("/admin/adapters")
    async def adapters() -> dict[str, Any]:
        return {"served": sorted(engine.routes), "loadable": catalog.available()}

    @app.post("/admin/adapters", status_code=201)
    async def load(body: LoadRequest) -> dict[str, Any]:
        return await state.admin(lambda: catalog.add(body.name, catalog.loadable(body.name)).describe())

    @app.delete("/admin/adapters/{name}")
    async def unload(name: str) -> dict[str, Any]:
        await state.admin(lambda: catalog.remove(name))
        return {"unloaded": name}

    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    if api_key is not None:
        app.add_middleware(
            ApiKey, key=api_key
        )  # added last, so it runs first: no body is read unauthenticated
    return app


class LoadRequest(BaseModel):
    name: str
    """A name given at start, or a folder name under --adapter-dir; never a path."""


class _State:
    def __init__(self, engine: Engine, catalog: Catalog, limits: Limits) -> None:
        self.engine, self.catalog, self.limits = engine, catalog, limits

    def route(self, name: str) -> Route:
        route = self.engine.routes.get(name)
        if route is None:
            known = ", ".join(sorted(self.engine.routes))
            raise ServeError(
                404,
                f"model {name!r} is not served here; served models: {known}",
                param="model",
                code="model_not_found",
            )
        return route

    async def admin(self, fn):
        if self.catalog.merged:
            raise ServeError(
                409,
                "this server serves one merged adapter; restart it without --merged to load "
                "or unload adapters",
                code="merged_mode",
            )
        try:
            return await asyncio.wrap_future(self.engine.call(fn))
        except CatalogError as e:
            raise ServeError(e.status, str(e)) from None
        except TunebenchError as e:
            raise ServeError(422, str(e)) from None

    # -- completions ---------------------------------------------------------------------------------

    async def completions(self, body: wire.CompletionRequest, request: Request):
        body.refuse_unsupported()
        route = self.route(body.model)
        sampling = body.sampling(body.max_tokens, 16, self.limits.max_tokens, "max_tokens")
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not 1 <= len(prompts) <= self.limits.max_prompts:
            raise ServeError(
                400,
                f"prompt: give 1 to {self.limits.max_prompts} prompts, got {len(prompts)}",
                param="prompt",
            )
        texts = [route.template.plain(p) if route.template else p for p in prompts]
        tokenizer = route.lane.tokenizer
        ids = [self._check_length(route, tokenizer(t)["input_ids"], sampling.max_tokens) for t in texts]
        job = self._submit(route, ids, sampling)
        rid = wire.new_id("cmpl")
        if body.stream:
            return _sse(self._stream_completion(job, rid, body), job)
        texts_out, finishes = await _gather(job)
        return wire.completion(rid, body.model, texts_out, finishes, _usage(job))

    async def _stream_completion(
        self, job: Job, rid: str, body: wire.CompletionRequest
    ) -> AsyncIterator[dict]:
        async for event in _events(job):
            _, index, text, finish = event
            yield wire.completion_chunk(rid, body.model, index, text, finish)
        if body.stream_options and body.stream_options.include_usage:
            yield wire.usage_chunk(rid, body.model, "text_completion", _usage(job))

    # -- chat ----------------------------------------------------------------------------------------

    async def chat(self, body: wire.ChatRequest, request: Request):
        body.refuse_unsupported()
        route = self.route(body.model)
        field = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
        wanted = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        tokenizer = route.lane.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ServeError(
                400, f"model {body.model!r} has no chat template; use /v1/completions", param="model"
            )
        messages = [m.plain() for m in body.messages]
        if route.template is not None:
            messages = route.template.chat(messages)
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # jinja templates raise their own errors (e.g. "roles must alternate")
            raise ServeError(
                400, f"messages: the model's chat template refused them ({e})", param="messages"
            ) from None
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        # Without max_tokens, a chat answer may run to the server's limit or the end of the context.
        room = (route.lane.context or len(ids) + self.limits.max_tokens) - len(ids)
        default = max(1, min(self.limits.max_tokens, room))
        sampling = body.sampling(wanted, default, self.limits.max_tokens, field)
        job = self._submit(route, [self._check_length(route, ids, sampling.max_tokens)], sampling)
        rid = wire.new_id("chatcmpl")
        if body.stream:
            return _sse(self._stream_chat(job, rid, body), job)
        texts, finishes = await _gather(job)
        return wire.chat(rid, body.model, texts[0], finishes[0], _usage(job))

    async def _stream_chat(self, job: Job, rid: str, body: wire.ChatRequest) -> AsyncIterator[dict]:
        yield wire.chat_chunk(rid, body.model, {"role": "assistant", "content": ""}, None)
        async for event in _events(job):
            _, _, text, finish = event
            if text:
                yield wire.chat_chunk(rid, body.model, {"content": text}, None)
            if finish is not None:
                yield wire.chat_chunk(rid, body.model, {}, finish)
        if body.stream_options and body.stream_options.include_usage:
            yield wire.usage_chunk(rid, body.model, "chat.completion.chunk", _usage(job))

    # -- shared ----------------------------------------------------------------------------------------

    def _check_length(self, route: Route, ids: list[int], max_tokens: int) -> list[int]:
        if not ids:
            raise ServeError(400, "prompt: empty after tokenization", param="prompt")
        if len(ids) > self.limits.max_prompt_tokens:
            raise ServeError(
                400,
                f"prompt: {len(ids)} tokens, over this server's limit of {self.limits.max_prompt_tokens}",
                param="prompt",
            )
        context = route.lane.context
        if context is not None and len(ids) + max_tokens > context:
            raise ServeError(
                400,
                f"prompt ({len(ids)} tokens) plus max_tokens ({max_tokens}) exceed the model's "
                f"context of {context} tokens",
                param="max_tokens",
            )
        return ids

    def _submit(self, route: Route, ids: list[list[int]], sampling) -> Job:
        job = Job(route, ids, sampling, asyncio.get_running_loop())
        try:
            self.engine.submit(job)
        except Busy as e:
            raise ServeError(
                429, f"{e}; retry shortly", type="rate_limit_error", code="server_busy"
            ) from None
        return job


async def _events(job: Job) -> AsyncIterator[tuple]:
    """The job's deltas until it is done; an engine error becomes a ServeError."""
    while True:
        event = await job.events.get()
        if event[0] == "delta":
            yield event
        elif event[0] == "error":
            raise ServeError(
                event[1], event[2], type="server_error" if event[1] >= 500 else "invalid_request_error"
            )
        else:
            return


async def _gather(job: Job) -> tuple[list[str], list[str | None]]:
    texts = [""] * len(job.rows)
    finishes: list[str | None] = [None] * len(job.rows)
    try:
        async for _, index, text, finish in _events(job):
            texts[index] += text
            finishes[index] = finish or finishes[index]
    except asyncio.CancelledError:
        job.cancel()
        raise
    return texts, finishes


def _usage(job: Job) -> dict[str, int]:
    """Read once the job is done: the worker no longer touches its rows."""
    return wire.usage(sum(len(r.prompt_ids) for r in job.rows), sum(len(r.tokens) for r in job.rows))


def _sse(chunks: AsyncIterator[dict], job: Job) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        except ServeError as e:
            yield f"data: {json.dumps(e.body())}\n\n"
        finally:
            job.cancel()  # a client that left stops costing compute; a finished job ignores this
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


# -- errors and middleware ---------------------------------------------------------------------------


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def serve_error(request: Request, e: ServeError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse(
            ServeError(400, f"{where}: {first.get('msg')}", param=where).body(), status_code=400
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        message = (
            f"no route {request.method} {request.url.path}" if e.status_code in (404, 405) else str(e.detail)
        )
        return JSONResponse(ServeError(e.status_code, message).body(), status_code=e.status_code)


def _error_response(status: int, message: str, type: str, code: str) -> JSONResponse:
    return JSONResponse(ServeError(status, message, type=type, code=code).body(), status_code=status)


class ApiKey:
    """Every path but /health needs `Authorization: Bearer <key>` (compared in constant time)."""

    OPEN = frozenset({"/health"})

    def __init__(self, app, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.OPEN:
            headers = dict(scope.get("headers") or [])
            scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.key):
                response = _error_response(
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer <key>'",
                    "authentication_error",
                    "invalid_api_key",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Reads at most `max_bytes` of a request body, then answers 413; the app sees the body replayed."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the client to disconnect, as Starlette expects

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send) -> None:
        response = _error_response(
            413,
            f"request body over this server's limit of {self.max_bytes} bytes",
            "invalid_request_error",
            "body_too_large",
        )
        await response(scope, receive, send)
