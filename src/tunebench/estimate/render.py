"""A plan as a rich table: one column per method, one row per cost. Rendering only; no arithmetic on costs."""

from __future__ import annotations

from rich.table import Table

from tunebench.estimate.model import GIB, PRECISIONS, Estimate
from tunebench.estimate.plan import Plan


def human_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}" if n / size < 100 else f"{n / size:.0f} {unit}"
    return f"{n:.0f} B" if n else "—"


def human_count(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def human_time(seconds: float | None) -> str:
    if seconds is None:
        return "— (no throughput figure)"
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _fits(e: Estimate, peak: int) -> str:
    share = peak / e.device_bytes
    return f"[green]yes[/green] ({share:.0%})" if share <= 1 else f"[red]no[/red] ({share:.0%})"


ROWS = [
    ("trainable parameters", lambda e: f"{human_count(e.trainable)} ({100 * e.trainable / e.params:.3g}%)"),
    ("weights", lambda e: human_bytes(e.memory["weights"])),
    ("quantization constants", lambda e: human_bytes(e.memory["quantization"])),
    ("gradients", lambda e: human_bytes(e.memory["gradients"])),
    ("optimizer states", lambda e: human_bytes(e.memory["optimizer"])),
    ("method's buffers", lambda e: human_bytes(e.memory["buffers"]) if e.memory["buffers"] else "—"),
    ("activations", lambda e: human_bytes(e.memory["activations"])),
    ("activations, checkpointed", lambda e: human_bytes(e.memory["activations_ckpt"])),
    ("logits and loss", lambda e: human_bytes(e.memory["logits"])),
    ("weight-sized products kept", lambda e: human_bytes(e.memory["formed"]) if e.memory["formed"] else "—"),
    ("allocator slack", lambda e: human_bytes(e.memory["allocator"])),
    ("runtime overhead", lambda e: human_bytes(e.memory["overhead"])),
    ("[bold]peak memory[/bold]", lambda e: f"[bold]{human_bytes(e.peak)}[/bold]"),
    ("[bold]peak, checkpointed[/bold]", lambda e: f"[bold]{human_bytes(e.peak_ckpt)}[/bold]"),
    ("fits", lambda e: _fits(e, e.peak)),
    ("fits, checkpointed", lambda e: _fits(e, e.peak_ckpt)),
    ("artifact", lambda e: human_bytes(e.artifact_bytes) if e.artifact_bytes else "prompt file (KB)"),
    ("FLOPs per token", lambda e: f"{e.flops_per_token:.3g}" + ("" if e.trains else " (forward)")),
    ("time for the tokens", lambda e: human_time(e.seconds)),
    ("time, checkpointed", lambda e: human_time(e.seconds_ckpt)),
]


def render(p: Plan) -> Table:
    a, d, s = p.arch, p.device, p.setting
    peak = f"{d.bf16_tflops:g}/{d.fp32_tflops:g} TFLOPS bf16/fp32" if d.bf16_tflops else "throughput unknown"
    table = Table(
        title=f"Estimate · {a.name} ({human_count(a.params)} parameters; {a.source}) on {d.name} "
        f"({d.memory_gib:g} GiB, {peak})",
        title_justify="left",
        caption=f"batch {s.batch} × {s.seq_len} tokens, {s.grad_accum} per step · {human_count(s.tokens)} tokens · "
        f"{s.precision}: {PRECISIONS[s.precision].summary} · {s.optimizer} · MFU {s.mfu:g}. Peak: weights, "
        "optimizer states and overhead, plus the larger of the gradients and a step's activations and logits "
        "(both when gradients accumulate); checkpointing keeps each block's input and recomputes one block.",
        caption_justify="left",
    )
    table.add_column("")
    for e in p.estimates:
        table.add_column(e.method, justify="right")
    for label, cell in ROWS:
        table.add_row(label, *(cell(e) for e in p.estimates))
    return table


def to_json(p: Plan) -> dict:
    """The plan as data (`tunebench estimate --json`)."""
    return {"model": p.arch.name, "params": p.arch.params, "source": p.arch.source, "device": p.device.name,
            "device_gib": p.device.memory_gib, "estimates": [e.to_dict() for e in p.estimates],
            "gib": GIB}  # fmt: skip
