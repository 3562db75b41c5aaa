"""Parsing the few parameters requests carry, with 400s that say what was wrong."""

from __future__ import annotations

from pygmy.common.errors import bad_request

MAX_ID = 2**63 - 1  # SQLite's INTEGER range
MAX_ID_DIGITS = len(str(MAX_ID))


def parse_id(text: str | None, what: str = "item") -> int:
    """A positive integer id: '7' is fine; '', '-1', '0', '1.5', 'abc' and '٣' are not."""
    if text is None or text == "":
        raise bad_request(f"{what} is required", f"bad_{what}")
    # The length check comes first: int() refuses strings over 4,300 digits with a ValueError.
    if len(text) > MAX_ID_DIGITS or not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_ID:
        raise bad_request(f"{what} must be a positive integer, not {text[:40]!r}", f"bad_{what}")
    return int(text)


MAX_IDEMPOTENCY_KEY = 255


def parse_idempotency_key(key: object) -> str | None:
    """None (no key) or a string of 1 to 255 characters."""
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not _utf8(key)):
        raise bad_request(
            f"Idempotency-Key must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters", "bad_idempotency_key"
        )
    return key


def _utf8(text: str) -> bool:
    """Whether `text` is valid Unicode (a header's non-UTF-8 bytes arrive as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def in_id_range(value: object) -> bool:
    """A positive integer SQLite can store (a JSON int, not a bool); checked before anything is proposed."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def ints_fit_sqlite(value: object) -> bool:
    """Whether every integer in a JSON value fits SQLite's INTEGER (int64). A command holding one that
    does not must be refused before it is proposed: applied, it would raise on every replica, forever."""
    if isinstance(value, int):
        return -(2**63) <= value <= MAX_ID
    if isinstance(value, dict):
        return all(ints_fit_sqlite(v) for v in value.values())
    if isinstance(value, list):
        return all(ints_fit_sqlite(v) for v in value)
    return True


def parse_page(offset: str | None, limit: str | None, *, max_limit: int = 1000) -> tuple[int, int]:
    """offset >= 0 (default 0), 1 <= limit <= max_limit (default 100)."""
    off = _non_negative(offset, "offset", 0)
    lim = _non_negative(limit, "limit", 100)
    if not 1 <= lim <= max_limit:
        raise bad_request(f"limit must be between 1 and {max_limit}", "bad_limit")
    return off, lim


def _non_negative(text: str | None, what: str, default: int) -> int:
    if text is None:
        return default
    if len(text) > MAX_ID_DIGITS or not (text.isascii() and text.isdigit()) or int(text) > MAX_ID:
        raise bad_request(f"{what} must be a non-negative integer, not {text[:40]!r}", f"bad_{what}")
    return int(text)
