"""The OpenAI wire format: request bodies (validated), response and stream-chunk shapes, errors.

Only what tunebench does is accepted: a field that would change the answer and that it does not support
(n > 1, logprobs, tools, echo, ...) is refused with a 400 naming it, rather than silently ignored.
Fields that do not change the answer (user, metadata, ...) are accepted and ignored, as clients send them.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tunebench.serve.decode import Sampling

#: OpenAI's own limit on stop sequences.
MAX_STOPS = 4


class ServeError(Exception):
    """An error the client gets as OpenAI's {"error": {...}} body with this HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        type: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: Any = None

    #: Fields that would change the answer, with the values that mean "not used"; others get a 400.
    refused: ClassVar[dict[str, tuple]] = {"n": (1,), "logprobs": (False, 0)}

    def refuse_unsupported(self) -> None:
        given = {**(self.model_extra or {}), **{k: getattr(self, k) for k in type(self).model_fields}}
        for name, allowed in self.refused.items():
            value = given.get(name)
            if value is not None and value not in allowed:
                raise ServeError(400, f"{name}: {value!r} is not supported by this server", param=name)

    def stops(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOPS:
            raise ServeError(400, f"stop: at most {MAX_STOPS} sequences, got {len(stops)}", param="stop")
        if any(not s for s in stops):
            raise ServeError(400, "stop: sequences must not be empty", param="stop")
        return tuple(stops)

    def sampling(self, max_tokens: int | None, default: int, limit: int, field: str) -> Sampling:
        wanted = default if max_tokens is None else max_tokens
        if wanted < 1:
            raise ServeError(400, f"{field}: must be at least 1, got {wanted}", param=field)
        if wanted > limit:
            raise ServeError(400, f"{field}: {wanted} is over this server's limit of {limit}", param=field)
        return Sampling(
            max_tokens=wanted,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stops(),
            seed=self.seed,
        )


class CompletionRequest(_Common):
    prompt: str | list[str]
    max_tokens: int | None = 16
    refused: ClassVar[dict[str, tuple]] = {
        **_Common.refused,
        "echo": (False,),
        "best_of": (1,),
        "suffix": ("",),
        "logit_bias": ({},),
    }


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def plain(self) -> dict[str, str]:
        """{"role", "content"} with the content as one string; 'developer' is OpenAI's new 'system'."""
        content = (
            self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        )
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    refused: ClassVar[dict[str, tuple]] = {
        **_Common.refused,
        "tools": ([],),
        "functions": ([],),
        "tool_choice": ("none",),
        "function_call": ("none",),
        "top_logprobs": (0,),
        "logit_bias": ({},),
        "audio": (),
        "prediction": (),
        "response_format": ({"type": "text"},),
    }


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(rid: str, model: str, texts: list[str], finishes: list[str | None], use: dict) -> dict:
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "text": t, "logprobs": None, "finish_reason": f}
            for i, (t, f) in enumerate(zip(texts, finishes))
        ],
        "usage": use,
    }


def completion_chunk(rid: str, model: str, index: int, text: str, finish: str | None) -> dict:
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}],
    }


def chat(rid: str, model: str, text: str, finish: str | None, use: dict) -> dict:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": use,
    }


def chat_chunk(rid: str, model: str, delta: dict, finish: str | None) -> dict:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(rid: str, model: str, obj: str, use: dict) -> dict:
    return {
        "id": rid,
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": use,
    }
