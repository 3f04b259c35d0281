"""Numbers as people read them, shared by every renderer (terminal, HTML, Markdown) so they agree."""

from __future__ import annotations


def count(n: float | None) -> str:
    """1234567 → '1.2M'."""
    if n is None:
        return "—"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def pct(x: float | None, digits: int = 1) -> str:
    """0.6875 → '68.8%'."""
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def share(p: float | None) -> str:
    """A percentage already in percent (trainable share): 100 → '100%', 1.234 → '1.2%', 0.0123 → '0.012%'."""
    if p is None:
        return "—"
    if p == 0:
        return "0%"
    if p >= 10:
        return f"{p:.0f}%"
    return f"{p:.2g}%"


def ci(interval: tuple[float, float] | None, digits: int = 1) -> str:
    """(0.623, 0.751) → '62.3–75.1%'."""
    return "—" if interval is None else f"{100 * interval[0]:.{digits}f}–{100 * interval[1]:.{digits}f}%"


def points(d: float | None, digits: int = 1) -> str:
    """A difference in metric units as signed points, with a true minus: -0.03 → '−3.0', 0.012 → '+1.2'."""
    return "—" if d is None else f"{100 * d:+.{digits}f}".replace("-", "−")


def diff(d: float | None, interval: tuple[float, float] | None, digits: int = 1) -> str:
    """A difference with its interval: '−3.0 (−4.1, −2.0)'."""
    if d is None:
        return "—"
    if interval is None:
        return points(d, digits)
    return f"{points(d, digits)} ({points(interval[0], digits)}, {points(interval[1], digits)})"


def pvalue(p: float | None) -> str:
    """'<0.001', '0.004', '0.04', '0.62'; '—' when there is no test."""
    if p is None:
        return "—"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def mem_mb(mb: float | None) -> str:
    """Megabytes (2**20 bytes) → '1.9 GB', '6.0 GB' (not '6 GB' beside '4.3 GB'), '120 GB' or '512 MB'."""
    if mb is None:
        return "—"
    if mb < 1024:
        return f"{mb:.0f} MB"
    return f"{mb / 1024:.1f} GB" if mb < 100 * 1024 else f"{mb / 1024:.0f} GB"


def size_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= size:
            value = n / size  # three digits, but 1000–1023 of a unit in full (.3g would write 1e+03)
            return f"{value:.3g} {unit}" if value < 999.5 else f"{value:.0f} {unit}"
    return f"{n:.0f} B"


def seconds(s: float | None) -> str:
    if s is None:
        return "—"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.3g} s" if s < 10 else f"{s:.0f} s"


def ms(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x / 1000:.3g} s" if x >= 1000 else f"{x:.3g} ms"


def nats(x: float | None) -> str:
    return "—" if x is None else f"{x:+.3f}"


def lr(x: float | None) -> str:
    """A learning rate as people write one: 3e-5, 1e-4, 2e-3, 0.03, 0.1 (not 3e-05 beside 0.0001)."""
    if x is None:
        return "—"
    if x == 0 or 1e-2 <= abs(x) < 1e3:
        return f"{x:g}"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
