"""Sizes and durations as users see them: one format for each, everywhere.

Planning details, the plan table and the terminal display all show these; JSON lines and
metrics keep raw numbers (bytes, seconds).
"""

from __future__ import annotations

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def size(value: int | None) -> str:
    """Bytes in 1024-based units: `512B`, `12.1KiB`, `3.4GiB`; `?` when unknown."""
    if value is None:
        return "?"
    if value < 0:
        return "-" + size(-value)
    amount = float(value)
    for unit in _SIZE_UNITS:
        if amount < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{amount:.0f}{unit}" if unit == "B" else f"{amount:.1f}{unit}"
        amount /= 1024
    raise AssertionError("unreachable: the last unit takes any amount")


def duration(seconds: float | None) -> str:
    """`0.4s`, `42.0s` under a minute; above, the two largest units: `1m5s`, `3h`, `2d12h`;
    `?` when unknown. Negative (a date in the future) with a leading `-`."""
    if seconds is None:
        return "?"
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 59.95:  # not `60.0s`
        return f"{seconds:.1f}s"
    rest = max(int(seconds), 60)
    parts: list[str] = []
    for unit, length in _DURATION_UNITS:
        count, rest = divmod(rest, length)
        if count or parts:
            parts.append(f"{count}{unit}" if count else "")
        if len(parts) == 2:
            break
    return "".join(parts)
