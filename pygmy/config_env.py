"""Configuration from environment variables, laid over the TOML file: how a container is configured.

A container image carries no configuration and no secrets: the orchestrator mounts a TOML file (or none,
for the built-in topology) and passes the secrets and this process's listening address as variables.
A variable that is set wins over the file; one that is unset or empty leaves the file's value.
"""

from __future__ import annotations

from typing import Any, Mapping

# Variable -> top-level key of the TOML document it replaces.
ENV_KEYS: dict[str, str] = {
    "PYGMY_ADMIN_TOKEN": "admin_token",
    "PYGMY_CLUSTER_SECRET": "cluster_secret",
    "PYGMY_DATA_DIR": "data_dir",
    "PYGMY_CLUSTER_ID": "cluster_id",
    # Where this process listens, instead of its node's `host` (which is how the others reach it): a
    # container binds 0.0.0.0 while its peers know it by a DNS name or a static address.
    "PYGMY_BIND_HOST": "bind_host",
}


def overlay(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """`raw` (a parsed TOML document) with every set variable of ENV_KEYS in place of its key."""
    merged = dict(raw)
    for variable, key in ENV_KEYS.items():
        value = env.get(variable, "")
        if value:
            merged[key] = value
    return merged
