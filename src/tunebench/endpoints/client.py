"""A client for any OpenAI-compatible endpoint: concurrent within a limit, retried with back-off, cached.

Used by the `openai` teacher and by endpoint contestants (`openai:MODEL@URL` models running the prompting
methods). Each request is one completion (the chat or the completions API); up to `max_concurrency` are
in flight at once. A connection error, a timeout, HTTP 429 or a 5xx is retried `max_retries` times,
waiting `backoff` × 2^attempt seconds (with jitter; a Retry-After header is honoured); any other HTTP
error stops at once with the server's message. A response is cached on disk under a hash of (base URL,
model, request) before the call returns, so a rerun, or a run resumed after a failure, sends only the
requests that never got an answer.

The API key is read from the environment only (so it never lands in a spec or a run folder):
`$TUNEBENCH_TEACHER_API_KEY`, else `$OPENAI_API_KEY`, or the variable named by `api_key_env`.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunebench.core.errors import SpecError, TunebenchError, did_you_mean
from tunebench.core.typed import build, require
from tunebench.endpoints.cache import ResponseCache, request_key

if TYPE_CHECKING:
    import openai

BASE_URL_ENV = ("TUNEBENCH_TEACHER_BASE_URL", "OPENAI_BASE_URL")
MODEL_ENV = ("TUNEBENCH_TEACHER_MODEL",)
API_KEY_ENV = ("TUNEBENCH_TEACHER_API_KEY", "OPENAI_API_KEY")
MAX_BACKOFF_S = 60.0


@dataclass
class ConnectionOptions:
    """Where the endpoint is and how hard to push it (shared by the teacher and endpoint contestants)."""

    base_url: str = ""
    """The API root, e.g. http://127.0.0.1:8000/v1. Default: $TUNEBENCH_TEACHER_BASE_URL, else $OPENAI_BASE_URL."""
    model: str = ""
    """The model name the endpoint serves. Default: $TUNEBENCH_TEACHER_MODEL."""
    api_key_env: str = ""
    """The environment variable holding the key. Default: TUNEBENCH_TEACHER_API_KEY, else OPENAI_API_KEY
    (a local server may need none)."""
    api: str = "chat"
    """chat (/chat/completions, for instruction-tuned models) or completions (/completions, plain text)."""
    max_concurrency: int = 8
    """Requests in flight at once."""
    max_retries: int = 4
    """Retries of a request after a connection error, timeout, HTTP 429 or 5xx."""
    backoff: float = 1.0
    """Seconds before the first retry; doubled at each next one (with jitter, at most 60 s)."""
    timeout: float = 120.0
    """Seconds to wait for one response."""
    cache: bool = True
    """Keep every response on disk and answer a repeated request from there."""
    cache_dir: str | None = None
    """Where the responses are kept. Default: $TUNEBENCH_CACHE/teachers, else ~/.cache/tunebench/teachers."""

    def check(self, where: str) -> None:
        self.base_url = self.base_url or _first_env(BASE_URL_ENV)
        self.model = self.model or _first_env(MODEL_ENV)
        require(
            bool(self.base_url),
            f"{where}.base_url",
            f"no endpoint given; set base_url=http://HOST:PORT/v1 or ${BASE_URL_ENV[0]}",
        )
        require(
            self.base_url.startswith(("http://", "https://")),
            f"{where}.base_url",
            f"expected an http:// or https:// URL, got {self.base_url!r}",
        )
        require(bool(self.model), f"{where}.model", f"no model given; set model=NAME or ${MODEL_ENV[0]}")
        require(
            self.api in ("chat", "completions"),
            f"{where}.api",
            f"expected chat or completions, got {self.api!r}",
        )
        require(self.max_concurrency >= 1, f"{where}.max_concurrency", "must be at least 1")
        require(self.max_retries >= 0, f"{where}.max_retries", "must be 0 or more")
        require(self.backoff >= 0, f"{where}.backoff", "must be 0 or more seconds")
        require(self.timeout > 0, f"{where}.timeout", "must be more than 0 seconds")
        if self.api_key_env:
            require(
                self.api_key_env in os.environ,
                f"{where}.api_key_env",
                f"${self.api_key_env} is not set in the environment",
            )


def _first_env(names: tuple[str, ...]) -> str:
    return next((os.environ[n] for n in names if os.environ.get(n)), "")


@dataclass
class Completion:
    text: str
    prompt_tokens: int | None
    """As the endpoint reported them (None when it reports no usage)."""
    completion_tokens: int | None
    latency_s: float
    """Wall time of the request that produced it (kept in the cache, so a cached answer keeps its cost)."""
    cached: bool = False


@dataclass
class EndpointStats:
    """What talking to the endpoint cost in this process (HTTP attempts, not counting cached answers)."""

    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


def chat_request(
    messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0
) -> dict[str, Any]:
    return {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}


def completion_request(
    prompt: str, *, max_tokens: int, temperature: float = 0.0, stop: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature}
    if stop:
        body["stop"] = stop
    return body


class Endpoint:
    def __init__(self, options: ConnectionOptions) -> None:
        self.options = options
        self.cache = ResponseCache(options.cache_dir) if options.cache else None
        self.stats = EndpointStats()
        self._client: openai.OpenAI | None = None

    @property
    def api(self) -> str:
        return self.options.api

    def client(self):
        if self._client is None:
            try:
                import openai  # lazy: optional extra [teacher]
            except ImportError:
                raise TunebenchError(
                    "talking to an OpenAI-compatible endpoint needs the openai package: "
                    "pip install 'tunebench[teacher]'"
                ) from None
            env = [self.options.api_key_env] if self.options.api_key_env else list(API_KEY_ENV)
            self._client = openai.OpenAI(
                base_url=self.options.base_url,
                api_key=_first_env(tuple(env)) or "unused",  # a local server may need no key
                timeout=self.options.timeout,
                max_retries=0,  # retries are ours: counted, backed off, and reported with the URL
            )
        return self._client

    def complete(self, requests: list[dict[str, Any]]) -> list[Completion]:
        """One completion per request body (see `chat_request` / `completion_request`), in order."""
        if not requests:
            return []
        workers = min(self.options.max_concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="endpoint") as pool:
            return list(pool.map(self._complete_one, requests))

    def _complete_one(self, body: dict[str, Any]) -> Completion:
        o = self.options
        key = request_key(o.base_url, o.model, {"api": o.api, **body})
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.stats.add(cache_hits=1)
            return Completion(**hit, cached=True)
        completion = self._send(body)
        if self.cache is not None:
            self.cache.put(key, {k: v for k, v in vars(completion).items() if k != "cached"})
        return completion

    def _send(self, body: dict[str, Any]) -> Completion:
        client = self.client()  # first: it says what to install when the openai package is missing
        import openai  # lazy: optional extra [teacher]

        o = self.options
        create = client.chat.completions.create if o.api == "chat" else client.completions.create
        for attempt in range(o.max_retries + 1):
            self.stats.add(requests=1)
            start = time.perf_counter()
            try:
                response = create(model=o.model, **body)
            except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as e:
                if attempt == o.max_retries:
                    raise self._failure(e, attempt + 1) from None
                self.stats.add(retries=1)
                time.sleep(self._wait(attempt, e))
                continue
            except openai.APIStatusError as e:
                raise TunebenchError(
                    f"endpoint {o.base_url} refused the request for model {o.model!r}: "
                    f"HTTP {e.status_code}: {_message(e)}"
                ) from None
            return _completion(response, o.api, time.perf_counter() - start)
        raise AssertionError("unreachable")

    def _wait(self, attempt: int, error: Exception) -> float:
        retry_after = getattr(getattr(error, "response", None), "headers", {}).get("retry-after")
        try:
            wait = float(retry_after) if retry_after is not None else self.options.backoff * 2**attempt
        except ValueError:  # an HTTP date instead of seconds: fall back to our own schedule
            wait = self.options.backoff * 2**attempt
        return min(MAX_BACKOFF_S, wait) * random.uniform(1.0, 1.25)

    def _failure(self, error: Exception, attempts: int) -> TunebenchError:
        import openai  # lazy: optional extra [teacher]

        o = self.options
        if isinstance(error, openai.APIConnectionError):
            kind = "timed out" if isinstance(error, openai.APITimeoutError) else "is unreachable"
            cause = error.__cause__ or error
            return TunebenchError(
                f"endpoint {o.base_url} {kind} after {attempts} attempt(s) ({type(cause).__name__}: {cause}); "
                f"check base_url (or ${BASE_URL_ENV[0]}) and that the server is running"
            )
        return TunebenchError(
            f"endpoint {o.base_url} kept failing for model {o.model!r} after {attempts} attempt(s): "
            f"HTTP {getattr(error, 'status_code', '?')}: {_message(error)}"
        )


def _message(error: Exception) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(error, "message", error))


def _completion(response: Any, api: str, latency: float) -> Completion:
    choice = response.choices[0] if response.choices else None
    if choice is None:
        text = ""
    elif api == "chat":
        text = (choice.message.content if choice.message else None) or ""
    else:
        text = choice.text or ""
    usage = getattr(response, "usage", None)
    return Completion(
        text=text,
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        latency_s=round(latency, 6),
    )


# -- an endpoint as a contestant: `openai:MODEL@URL` in a spec's models ---------------------------------

ENDPOINT_PREFIX = "openai:"
#: Connection options a models entry may set after '#'; the rest keep ConnectionOptions' defaults.
_ENTRY_OPTIONS = ("api", "max_concurrency", "max_retries", "backoff", "timeout", "api_key_env")
ENTRY_FORM = "openai:MODEL@URL, e.g. openai:gpt-4o-mini@https://api.openai.com/v1#max_concurrency=4"


def parse_endpoint_model(entry: str) -> ConnectionOptions:
    """The connection of a models entry `openai:MODEL@URL[#key=value&...]`.

    The part after '#' (a URL fragment, which is never sent to the server) sets client options: api,
    max_concurrency, max_retries, backoff, timeout, api_key_env. A contestant's answers are not cached:
    each run measures the endpoint (a finished run is kept by the run store and not redone anyway).
    """

    where = f"model {entry!r}"
    body = entry[len(ENDPOINT_PREFIX) :]
    model, at, rest = body.partition("@")
    url, _, fragment = rest.partition("#")
    if not at or not model or not url:
        raise SpecError(f"{where}: expected {ENTRY_FORM}")
    options: dict[str, str] = {}
    for pair in filter(None, fragment.split("&")):
        key, eq, value = pair.partition("=")
        if not eq:
            raise SpecError(f"{where}: expected key=value after '#', got {pair!r}")
        if key not in _ENTRY_OPTIONS:
            raise SpecError(
                f"{where}: unknown option {key!r}.{did_you_mean(key, _ENTRY_OPTIONS)} "
                f"Expected one of: {', '.join(_ENTRY_OPTIONS)}"
            )
        options[key] = value
    return build(ConnectionOptions, {**options, "base_url": url, "model": model, "cache": False}, where)
