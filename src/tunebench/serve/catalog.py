"""The catalog: which names are served, from which folders, and loading or unloading them at run time.

Folders come from three places only: `--adapter NAME=PATH` and `--runs DIR` at start, and `--adapter-dir`,
the one folder the admin endpoint may load from, by name. A request never carries a path.

Where an artifact goes is decided by what it is (artifacts.py) and by what PEFT accepts (lanes.py): a
prompt rides on the shared lane as the base model with a template; an adapter joins the shared lane when
PEFT can mix it, and gets a lane of its own otherwise; a whole model always has its own lane.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from tunebench.serve.artifacts import Artifact, ArtifactError, check_name, discover_runs, inspect
from tunebench.serve.engine import Route
from tunebench.serve.lanes import Loader, NotMixable, SharedLane, own_lane
from tunebench.serve.prompts import template_for

log = logging.getLogger("tunebench.serve")


class CatalogError(Exception):
    """An admin request that cannot be done; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Catalog:
    base_name: str
    base_path: str
    loader: Loader
    routes: dict[str, Route]
    """Shared with the engine: the served names."""
    adapter_dir: Path | None = None
    known: dict[str, Path] = field(default_factory=dict)
    """Names given at start (flags and run stores) → their folders, loaded or not."""
    merged: bool = False
    shared: SharedLane | None = None

    def serve_base(self) -> None:
        model, tokenizer = self.loader.model(self.base_path), self.loader.tokenizer(self.base_path)
        self.shared = SharedLane(self.base_name, model, tokenizer)
        self.routes[self.base_name] = Route(self.base_name, self.shared)

    def serve_merged(self, name: str, folder: Path) -> None:
        """The one route of merged mode: `folder`'s adapter folded into a fresh copy of the base."""
        artifact = inspect(folder)
        self._check_base(name, artifact)
        self.routes[name] = Route(
            name, own_lane(name, artifact, self.base_path, self.loader, merge=True), artifact=artifact
        )
        self.known[name] = folder
        self.merged = True

    def add_start(self, adapters: dict[str, Path], runs: list[Path]) -> list[tuple[str, str]]:
        """Serve the flags' adapters and the run stores' finished runs; (where, why) for each one skipped."""
        skipped: list[tuple[str, str]] = []
        for name, folder in adapters.items():
            self.known[name] = folder
        for root in runs:
            found = discover_runs(root)
            skipped += found.skipped
            for name, artifact in found.found.items():
                if name in self.known or name == self.base_name:
                    skipped.append((str(artifact.path.parent), f"the name {name!r} is already served"))
                    continue
                self.known[name] = artifact.path
        for name, folder in _lora_first(list(self.known.items())):
            try:
                self.add(name, folder)
            except (ArtifactError, CatalogError) as e:
                skipped.append((str(folder), str(e)))
                del self.known[name]
        return skipped

    def add(self, name: str, folder: Path) -> Route:
        """Load `folder` under `name` (on the engine's thread once serving)."""
        problem = check_name(name)
        if problem:
            raise CatalogError(400, problem)
        if name in self.routes:
            raise CatalogError(409, f"{name!r} is already served; unload it first")
        artifact = inspect(folder)
        self._check_base(name, artifact)
        route = self._route(name, artifact)
        self.routes[name] = route
        log.info(
            "serving %s: %s from %s (%s batches)",
            name,
            artifact.summary,
            folder,
            "shared" if route.lane.mixes else "its own",
        )
        return route

    def _route(self, name: str, artifact: Artifact) -> Route:
        assert self.shared is not None
        if artifact.kind == "prompt":
            return Route(name, self.shared, template=template_for(artifact), artifact=artifact)
        if artifact.kind == "peft":
            try:
                return Route(name, self.shared, adapter=self.shared.add(artifact), artifact=artifact)
            except NotMixable as e:
                log.info("%s gets batches of its own: %s", name, e)
        return Route(name, own_lane(name, artifact, self.base_path, self.loader), artifact=artifact)

    def _check_base(self, name: str, artifact: Artifact) -> None:
        """An adapter or a prompt only makes sense on the model it was made for."""
        if artifact.kind != "weights" and artifact.trained_on not in (None, self.base_name):
            raise ArtifactError(
                f"{name}: made for model {artifact.trained_on!r}, but this server serves {self.base_name!r}"
            )

    def remove(self, name: str) -> None:
        route = self.routes.get(name)
        if route is None:
            raise CatalogError(404, f"{name!r} is not served")
        if route.artifact is None:
            raise CatalogError(409, f"{name!r} is the base model; it cannot be unloaded")
        del self.routes[name]
        if isinstance(route.lane, SharedLane):
            if route.adapter is not None:
                route.lane.remove(route.adapter)
        else:
            route.lane.close()
        log.info("unloaded %s", name)

    def loadable(self, name: str) -> Path:
        """The folder an admin request may load `name` from: a start-time name, or one under --adapter-dir."""
        problem = check_name(name)
        if problem:
            raise CatalogError(400, problem)
        if name in self.known:
            return self.known[name]
        if self.adapter_dir is not None:
            folder = (self.adapter_dir / name).resolve()
            if folder.parent == self.adapter_dir.resolve() and folder.is_dir():
                return folder
        where = f" or a folder under {self.adapter_dir}" if self.adapter_dir else " (no --adapter-dir is set)"
        raise CatalogError(
            404, f"no adapter named {name!r}: names given at start are {sorted(self.known)}{where}"
        )

    def available(self) -> list[str]:
        """Every name an admin request may load now."""
        under = (
            sorted(p.name for p in self.adapter_dir.iterdir() if p.is_dir() and not check_name(p.name))
            if self.adapter_dir
            else []
        )
        return sorted({*self.known, *under} - set(self.routes))


def _lora_first(items: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Plain LoRA adapters load first. The shared lane's PEFT model holds adapters of one type, that of the
    first it loads: an alphabetically earlier LoHa run would otherwise put every LoRA run in a lane of its
    own, and LoRA is the type most runs have and the one the stacked fast path serves."""

    def rank(item: tuple[str, Path]) -> int:
        try:
            artifact = inspect(item[1])
        except ArtifactError:
            return 1  # refused again, with its reason, when it is added
        return 0 if artifact.kind == "peft" and artifact.summary == "LORA adapter" else 1

    return sorted(items, key=rank)  # stable: the given order otherwise
