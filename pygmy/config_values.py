"""Type and range checks for the values of the configuration file, each refusal naming its key.

TOML has integers, floats and booleans, and Python's `int()` accepts all three: a port of `8201.9` became
8201 and `true` became 1, silently. Here an integer is an integer, a port is in 1-65535, a node id is a
small non-negative integer (it ends up on a command line and in a directory name), and two nodes that
would bind the same socket clash even when one says `localhost` and the other `127.0.0.1`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

MAX_NODE_ID = 999  # node ids name directories and Raft members; nobody runs a thousand replicas
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_WILDCARDS = ("0.0.0.0", "::")


class ConfigError(ValueError):
    """The configuration file is missing, malformed or inconsistent (re-exported by `pygmy.config`)."""


def integer(value: Any, key: str, *, low: int, high: int) -> int:
    """`value` if it is a TOML integer in [low, high]; booleans and floats are refused, not truncated."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer from {low} to {high}, not {_shown(value)}")
    if not low <= value <= high:
        raise ConfigError(f"{key} must be from {low} to {high}, not {value}")
    return value


def port(value: Any, key: str) -> int:
    return integer(value, key, low=1, high=65535)


def node_id(value: Any, key: str) -> int:
    return integer(value, key, low=0, high=MAX_NODE_ID)


def string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, not {_shown(value)}")
    return value


def host(value: Any, key: str) -> str:
    text = string(value, key)
    if any(c.isspace() or c in "/?#@" for c in text):
        raise ConfigError(f"{key} must be a host name or an IP address, not {text!r}")
    return text


def same_socket(host_a: str, host_b: str) -> bool:
    """Whether binding the same port on both hosts would clash (one would fail with 'address in use')."""
    a, b = bind_addresses(host_a), bind_addresses(host_b)
    # A wildcard binds every address of the machine, so it clashes with any host on that port.
    return bool(a & b) or bool((a | b) & set(_WILDCARDS))


def bind_addresses(name: str) -> set[str]:
    """The addresses a host name stands for when a node binds it (names other than loopback ones: themselves)."""
    text = name.strip("[]").rstrip(".").lower()
    if text in _LOOPBACK_NAMES or text.endswith(".localhost"):
        return {"127.0.0.1", "::1"}
    try:
        return {str(ipaddress.ip_address(text))}
    except ValueError:
        return {text}


def _shown(value: Any) -> str:
    kind = {bool: "a boolean", float: "a float", str: "a string", list: "a list", dict: "a table"}.get(type(value))
    return f"{value!r} ({kind})" if kind else repr(value)
