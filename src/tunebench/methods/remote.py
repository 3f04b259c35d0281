"""A model behind an OpenAI-compatible endpoint, answering for a prompting method (zero-shot, few-shot).

The models entry `openai:MODEL@URL` (endpoints/client.py) gives black-box access: text in, text out.
The prompting method renders its instruction and shots as chat turns (the chat API) or as plain text
(the completions API, one "question = answer" per line, stopping at the end of the line), sends every
test input as one request (concurrently, within the entry's max_concurrency), and keeps what it cost:
tokens as the endpoint reported them and the latency of each request. That cost, per 1k examples, is
what the result records for such a model instead of parameter counts (`Method.usage`).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import TYPE_CHECKING, Any

from tunebench.endpoints.client import (
    Completion,
    Endpoint,
    chat_request,
    completion_request,
    parse_endpoint_model,
)
from tunebench.models.zoo import ResolvedModel

if TYPE_CHECKING:
    from tunebench.methods.base import Context
    from tunebench.methods.prompting import PromptingMethod
    from tunebench.tasks.base import Task


class EndpointBackend:
    """The prompting backend for a model behind an endpoint (prompting.py `PromptBackend`)."""

    def __init__(self, model: ResolvedModel) -> None:
        self.connection = parse_endpoint_model(model.path)
        self.endpoint = Endpoint(self.connection)
        self.last: list[Completion] = []
        self.last_seconds = 0.0

    def check(self, method: PromptingMethod, task: Task, model: ResolvedModel) -> None:
        """An endpoint writes text by definition: there is no head to choose."""

    def prepare(self, method: PromptingMethod, ctx: Context) -> bool:
        self.chat = self.connection.api == "chat"
        return self.chat

    def chat_text(self, method: PromptingMethod, messages: list[dict[str, str]]) -> str:
        return json.dumps(messages, ensure_ascii=False)  # the endpoint applies its own chat template

    def param_counts(self, method: PromptingMethod) -> tuple[int, int | None]:
        return 0, None  # nothing is trained, and the size of a model behind an API is unknown

    def text_nll(self, method: PromptingMethod, texts: list[str], ctx: Context) -> float | None:
        return None  # an endpoint gives text, not log-likelihoods

    def predict(self, method: PromptingMethod, ctx: Context, inputs: list[str]) -> list[str]:
        task, max_tokens = ctx.task, method.max_new_tokens(ctx.task)
        if self.chat:
            bodies = [chat_request(method.messages(task, x), max_tokens=max_tokens) for x in inputs]
        else:
            bodies = [
                completion_request(method.plain(task, x), max_tokens=max_tokens, stop=["\n"]) for x in inputs
            ]
        start = time.perf_counter()
        self.last = self.endpoint.complete(bodies)
        self.last_seconds = time.perf_counter() - start
        if ctx.on_eval_batch is not None:
            ctx.on_eval_batch(len(inputs))
        # A plain-text answer ends at its line's end even if the server ignored `stop`.
        return [c.text if self.chat else c.text.split("\n")[0] for c in self.last]

    def usage(self) -> dict[str, Any] | None:
        """What the last `predict` cost: tokens as reported, latency per request, and both per 1k examples."""
        if not self.last:
            return None
        n = len(self.last)
        latencies = sorted(1000 * c.latency_s for c in self.last)
        prompt = _total([c.prompt_tokens for c in self.last])
        completion = _total([c.completion_tokens for c in self.last])
        per_1k = 1000 / n
        return {
            "endpoint": self.connection.base_url,
            "model": self.connection.model,
            "api": self.connection.api,
            "examples": n,
            "requests": n,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "latency_ms": {
                "median": statistics.median(latencies),
                "p90": latencies[min(n - 1, int(0.9 * n))],
                "mean": statistics.fmean(latencies),
            },
            "seconds": self.last_seconds,
            "max_concurrency": self.connection.max_concurrency,
            "per_1k_examples": {
                "prompt_tokens": None if prompt is None else prompt * per_1k,
                "completion_tokens": None if completion is None else completion * per_1k,
                "seconds": self.last_seconds * per_1k,
            },
        }


def _total(counts: list[int | None]) -> int | None:
    """The sum, or None when the endpoint reported no usage for some request (a partial sum would mislead)."""
    known = [c for c in counts if c is not None]
    return None if len(known) < len(counts) else sum(known)
