"""Quantities as people write them on a command line or in a spec: sizes (4GB), counts (1M, 2B), shares
(1%), durations (5min); every error names the flag or key and shows the expected form."""

from __future__ import annotations

import re

from tunebench.core.errors import SpecError

_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_MEM_UNITS = {"": 1.0, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0**2}
_COUNT_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}
TIME_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
MS_UNITS = {"": 1.0, "ms": 1.0, "s": 1000.0}


def parse_memory(text: str, flag: str = "--max-memory") -> float:
    """'4GB', '4g', '512MB', '512' (MB) → megabytes."""
    m = _SIZE.match(str(text))
    if not m:
        raise SpecError(f"{flag} {text!r}: expected a size such as 4GB or 512MB (a bare number is MB)")
    return float(m.group(1)) * _MEM_UNITS[m.group(2).lower()]


def parse_params(text: str, flag: str = "--max-trainable-params") -> tuple[float | None, float | None]:
    """'1M', '250k', '2e6' → (count, None); '1%' → (None, percent of the model's parameters)."""
    t = str(text).strip()
    if t.endswith("%"):
        try:
            return None, float(t[:-1])
        except ValueError:
            pass
    else:
        m = re.match(r"^([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgb]?)$", t, re.IGNORECASE)
        if m:
            return float(m.group(1)) * _COUNT_UNITS[m.group(2).lower()], None
    raise SpecError(f"{flag} {text!r}: expected a count such as 1M or 250k, or a share such as 1%")


def parse_number(text: str, flag: str, units: dict[str, float] | None = None) -> float:
    m = re.match(r"^([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)$", str(text).strip(), re.IGNORECASE)
    unit = m.group(2).lower() if m else None
    if not m or unit not in (units or {"": 1.0}):
        hint = f" (units: {', '.join(u for u in units if u)})" if units else ""
        raise SpecError(f"{flag} {text!r}: expected a non-negative number{hint}")
    return float(m.group(1)) * (units or {"": 1.0})[unit]


def parse_count(text: str, flag: str) -> float:
    """'1e9', '2B', '500M', '10k' → a number of tokens."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kKmMbBgGtT]?)\s*", str(text))
    if not match:
        raise SpecError(f"{flag} {text!r}: expected a number such as 1e9, 2B or 500M")
    return float(match.group(1)) * _SUFFIX[match.group(2).lower()]
