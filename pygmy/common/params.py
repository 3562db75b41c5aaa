"""Parsing the few parameters requests carry, with 400s that say what was wrong."""

from __future__ import annotations

from pygmy.common.errors import bad_request

MAX_ID = 2**63 - 1  # SQLite's INTEGER range


def parse_id(text: str | None, what: str = "item") -> int:
    """A positive integer id: '7' is fine; '', '-1', '0', '1.5', 'abc' and '٣' are not."""
    if text is None or text == "":
        raise bad_request(f"{what} is required", f"bad_{what}")
    if not (text.isascii() and text.isdigit()) or int(text) <= 0 or int(text) > MAX_ID:
        raise bad_request(f"{what} must be a positive integer, not {text!r}", f"bad_{what}")
    return int(text)


MAX_IDEMPOTENCY_KEY = 255


def parse_idempotency_key(key: object) -> str | None:
    """None (no key) or a string of 1 to 255 characters."""
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY):
        raise bad_request(
            f"Idempotency-Key must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters", "bad_idempotency_key"
        )
    return key


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
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ID:
        raise bad_request(f"{what} must be a non-negative integer, not {text!r}", f"bad_{what}")
    return int(text)
