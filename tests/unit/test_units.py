"""The one format for sizes and the one for durations that users see."""

from __future__ import annotations

import pytest

from merge_job.units import duration, size


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "?"),
        (0, "0B"),
        (1023, "1023B"),
        (12390, "12.1KiB"),
        (5 * 1024**3, "5.0GiB"),
        (-2048, "-2.0KiB"),
        (3 * 1024**5, "3072.0TiB"),
    ],
)
def test_size(value: int | None, shown: str) -> None:
    assert size(value) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "?"),
        (0, "0.0s"),
        (0.34, "0.3s"),
        (42, "42.0s"),
        (59.97, "1m"),
        (65, "1m5s"),
        (3600, "1h"),
        (3661, "1h1m"),
        (86400, "1d"),
        (86400 * 3 + 3600 * 12 + 59, "3d12h"),
        (-7200, "-2h"),
    ],
)
def test_duration(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown
