"""Setting values: parsers from text to value, each raising ValueError that names the
accepted form (config.py adds the setting's name), and how index patterns and name date
formats read index names. Pure: no argv, no environment."""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import pytimeparse2

# Characters OpenSearch forbids in index names; a pattern may add only `*` and `?`.
_FORBIDDEN_INDEX_CHARS = set('\\/"<>|, #:')
_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+$")
_AWS_HOST_RES = (
    # search-x-abc.ap-northeast-1.es.amazonaws.com, vpc-x-abc.us-east-1.es.amazonaws.com.cn
    re.compile(r"\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.es\.amazonaws\.com(?:\.cn)?$"),
    # search-x-abc.aos.ap-northeast-1.on.aws (dual-stack endpoints)
    re.compile(r"\.aos\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.on\.aws$"),
)


def parse_duration(text: str) -> dt.timedelta:
    """`90m`, `36h`, `1d`, `2w`, `1d12h`, `0` (bare numbers are seconds)."""
    seconds = pytimeparse2.parse(text.strip())
    if seconds is None or seconds < 0:
        raise ValueError("expected a duration like 90m, 36h, 1d, 2w, 1d12h or 0")
    return dt.timedelta(seconds=float(seconds))


def positive_duration(text: str) -> dt.timedelta:
    value = parse_duration(text)
    if value <= dt.timedelta(0):
        raise ValueError("expected a duration greater than 0 like 30s, 10m, 6h")
    return value


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise ValueError("expected a boolean: true/false/1/0/yes/no")


def int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected an integer >= {low}") from None
        if value < low:
            raise ValueError(f"expected an integer >= {low}")
        return value

    return parse


def percent(text: str) -> int:
    """An integer percentage, 0 to 100."""
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError("expected an integer from 0 to 100") from None
    if not 0 <= value <= 100:
        raise ValueError("expected an integer from 0 to 100")
    return value


def float_in(low: float, high: float | None) -> Callable[[str], float]:
    form = f"a number in [{low:g}, {high:g}]" if high is not None else f"a number >= {low:g}"

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected {form}") from None
        if math.isnan(value) or value < low or (high is not None and value > high):  # NaN too
            raise ValueError(f"expected {form}")
        return value

    return parse


_BYTE_SIZE_RE = re.compile(r"^(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>b|kb|mb|gb|tb)?$", re.IGNORECASE)
_BYTE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def parse_byte_size(text: str) -> int:
    """`16mb`, `512kb`, `1gb`, `0`: OpenSearch's byte-size units (1024-based); a bare
    number is bytes."""
    match = _BYTE_SIZE_RE.match(text.strip())
    if match is None:
        raise ValueError("expected a size like 0, 512kb, 16mb or 1gb")
    unit = (match.group("unit") or "b").lower()
    return int(float(match.group("number")) * _BYTE_UNITS[unit])


def choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in choices:
            raise ValueError("expected one of: " + ", ".join(choices))
        return lowered

    return parse


def parse_patterns(text: str) -> tuple[str, ...]:
    """Comma-separated index names or wildcards (`*`, `?`)."""
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    for pattern in patterns:
        bad = sorted(set(pattern) & _FORBIDDEN_INDEX_CHARS)
        if bad:
            raise ValueError(
                f"pattern {pattern!r} contains {''.join(bad)!r}; expected comma-separated "
                "index names or wildcards like logs-*,metrics-*"
            )
        if pattern.startswith("-"):
            raise ValueError(
                f"pattern {pattern!r} starts with '-'; expected index names or wildcards "
                "(put exclusions in MERGE_EXCLUDE_PATTERNS / --exclude-patterns)"
            )
    return patterns


def parse_endpoint(text: str) -> str:
    """Normalise to `scheme://host:port`; a bare `host[:port]` means https."""
    form = "expected https://host[:port], http://host[:port] or a bare host[:port]"
    raw = text.strip()
    if not raw:
        raise ValueError(form)
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"}:
        raise ValueError(f"unsupported scheme {parts.scheme!r}; {form}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"credentials in the URL are not accepted; {form} "
            "and MERGE_BASIC_AUTH_USER / MERGE_BASIC_AUTH_PASSWORD"
        )
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ValueError(f"no path or query allowed; {form}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port; {form}") from None
    host = parts.hostname
    if not host:
        raise ValueError(form)
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}"


def endpoint_host(endpoint: str) -> str:
    return urlsplit(endpoint).hostname or ""


def region_from_host(host: str) -> str | None:
    """The AWS region in an Amazon OpenSearch Service endpoint host name, else None."""
    for regex in _AWS_HOST_RES:
        match = regex.search(host.lower())
        if match:
            return match.group("region")
    return None


def parse_region(text: str) -> str:
    value = text.strip()
    if not _REGION_RE.match(value):
        raise ValueError("expected an AWS region name like ap-northeast-1")
    return value


def parse_pushgateway_url(text: str) -> str:
    """`http(s)://host[:port][/path]` of a Pushgateway, without credentials or query."""
    form = "expected http://host:port or https://host[:port][/path] of a Pushgateway"
    parts = urlsplit(text.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(form)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"credentials in the URL are not accepted; {form}")
    if parts.query or parts.fragment:
        raise ValueError(f"no query allowed; {form}")
    try:
        parts.port  # noqa: B018  # raises on a bad port
    except ValueError:
        raise ValueError(f"invalid port; {form}") from None
    return text.strip().rstrip("/")


_LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def parse_label_value(text: str) -> str:
    value = text.strip()
    if not _LABEL_VALUE_RE.match(value):
        raise ValueError("expected 1-128 characters of letters, digits, '.', '_', ':' or '-'")
    return value


def readable_file(text: str) -> str:
    path = text.strip()
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ValueError(f"{path!r} is not a readable file; expected a path to a PEM file")
    return path


# strftime directives understood in index names, and the digits each one matches.
_DATE_DIRECTIVES = {
    "Y": r"(?P<Y>\d{4})",
    "y": r"(?P<y>\d{2})",
    "m": r"(?P<m>\d{2})",
    "d": r"(?P<d>\d{2})",
    "j": r"(?P<j>\d{3})",
    "H": r"(?P<H>\d{2})",
    "M": r"(?P<M>\d{2})",
    "S": r"(?P<S>\d{2})",
    "G": r"(?P<G>\d{4})",
    "V": r"(?P<V>\d{2})",
}


@functools.lru_cache(maxsize=32)  # planning asks once per index
def date_format_regex(fmt: str) -> re.Pattern[str]:
    """Compile a strftime format (subset) to a regex that finds the date in a name."""
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char != "%":
            out.append(re.escape(char))
            i += 1
            continue
        if i + 1 >= len(fmt):
            raise ValueError("format ends with a lone '%'")
        directive = fmt[i + 1]
        i += 2
        if directive == "%":
            out.append("%")
            continue
        if directive not in _DATE_DIRECTIVES:
            raise ValueError(
                f"unsupported directive %{directive}; supported: "
                + " ".join(f"%{d}" for d in _DATE_DIRECTIVES)
            )
        if directive in seen:
            raise ValueError(f"directive %{directive} appears twice")
        seen.add(directive)
        out.append(_DATE_DIRECTIVES[directive])
    if not seen & {"Y", "y", "G"}:
        raise ValueError("the format needs a year (%Y, %y or %G)")
    if "G" in seen and "V" not in seen:
        raise ValueError("%G needs %V (ISO week)")
    # Digits on either side would mean the match is part of a longer number.
    return re.compile(r"(?<!\d)" + "".join(out) + r"(?!\d)")


def parse_name_date_format(text: str) -> str:
    fmt = text.strip()
    try:
        date_format_regex(fmt)
    except (ValueError, re.error) as err:
        raise ValueError(f"{err}; expected a strftime format like %Y.%m.%d") from None
    return fmt


@functools.lru_cache(maxsize=512)
def _wildcard(pattern: str) -> re.Pattern[str]:
    """OpenSearch-style wildcard: `*` any run, `?` one character, everything else literal."""
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + r"\Z")


def matches(name: str, pattern: str) -> bool:
    return _wildcard(pattern).match(name) is not None


def starts_with_wildcard(pattern: str) -> bool:
    return pattern[:1] in {"*", "?"}


def date_from_name(name: str, fmt: str) -> dt.datetime | None:
    """The (UTC) date the strftime-style `fmt` finds in `name`, last match wins; else None."""
    found: dt.datetime | None = None
    for match in date_format_regex(fmt).finditer(name):
        parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
        try:
            if "G" in parts:
                day = dt.date.fromisocalendar(parts["G"], parts["V"], 1)
            else:
                year = parts["Y"] if "Y" in parts else 2000 + parts["y"]
                if "j" in parts:
                    day = dt.date(year, 1, 1) + dt.timedelta(days=parts["j"] - 1)
                    if day.year != year:
                        continue
                else:
                    day = dt.date(year, parts.get("m", 1), parts.get("d", 1))
            found = dt.datetime(
                day.year,
                day.month,
                day.day,
                parts.get("H", 0),
                parts.get("M", 0),
                parts.get("S", 0),
                tzinfo=dt.UTC,
            )
        except ValueError:
            continue
    return found
