"""Putting a server together from ServeOptions, and running it: in the foreground (the CLI) or in a thread
on a loopback port (tests, notebooks)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunebench.core.errors import UnsupportedError
from tunebench.models import resolve_model
from tunebench.serve.app import create_app
from tunebench.serve.catalog import Catalog
from tunebench.serve.engine import Engine
from tunebench.serve.lanes import Loader
from tunebench.serve.options import ServeOptions, is_loopback
from tunebench.train.device import pick_device, use_bf16

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("tunebench.serve")


@dataclass
class Built:
    app: FastAPI
    engine: Engine
    catalog: Catalog
    skipped: list[tuple[str, str]]


def build(options: ServeOptions) -> Built:
    """Load the base model and every artifact, start the engine's thread, and make the app."""
    import torch  # lazy: slow import

    options.check()
    base = resolve_model(options.model)
    if base.kind != "decoder":
        raise UnsupportedError(
            f"--model {options.model}: serving generates text and needs a decoder, "
            f"{base.name} is an {base.kind}"
        )
    device = torch.device(options.device) if options.device else pick_device()
    bf16 = use_bf16(options.precision, device)
    engine = Engine(
        device=device,
        bf16=bf16,
        mixed=options.batching == "mixed",
        max_batch_size=options.limits.max_batch_size,
        batch_wait_ms=options.limits.batch_wait_ms,
        max_concurrent=options.limits.max_concurrent,
    )
    catalog = Catalog(
        base.name,
        base.path,
        Loader(device, options.trust_remote_code),
        engine.routes,
        adapter_dir=options.adapter_dir,
    )
    skipped: list[tuple[str, str]] = []
    if options.merged is not None:
        catalog.serve_merged(options.merged, options.adapters[options.merged])
    else:
        catalog.serve_base()
        skipped = catalog.add_start(options.adapters, options.runs)
    for where, why in skipped:
        log.warning("not served: %s: %s", where, why)
    engine.start()
    app = create_app(engine, catalog, options.limits, options.api_key)
    return Built(app, engine, catalog, skipped)


def serve(options: ServeOptions) -> None:
    """Run until interrupted (the `tunebench serve` command)."""
    import uvicorn  # lazy: optional extra [serve]

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not is_loopback(options.host):
        log.warning(
            "listening on %s, reachable from other machines%s",
            options.host,
            "" if options.api_key else "; without --api-key anyone who can reach it can use it",
        )
    built = build(options)
    routes = built.engine.routes
    log.info(
        "serving %d model(s) on http://%s:%d/v1 (%s batching): %s",
        len(routes),
        options.host,
        options.port,
        options.batching,
        ", ".join(routes),
    )
    try:
        uvicorn.run(
            built.app,
            host=options.host,
            port=options.port,
            log_level="info",
            timeout_graceful_shutdown=5,
            server_header=False,
        )
    finally:
        built.engine.stop()


class Background:
    """A server on a loopback port in a thread of this process; `stop()` ends both it and the engine."""

    def __init__(self, built: Built, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn  # lazy: optional extra [serve]

        self.built = built
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(built.app, log_level="warning", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> Background:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the server did not start on {self.url} within {timeout:.0f}s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self.built.engine.stop(timeout)
        self._socket.close()

    def __enter__(self) -> Background:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
