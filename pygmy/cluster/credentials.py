"""The cluster's two secrets — the admin token and the cluster secret — when the configuration names none.

A configuration may leave out `admin_token` and `cluster_secret` (the built-in default does). `pygmy up`
then generates both at the first start of a data directory and keeps them in `<data_dir>/secrets.toml`,
readable by its owner only; every later start, every node it runs and every client command run on the same
machine (`pygmy update`, `check`, `backup`, ... with the same config or `--data-dir`) reads them there. A
value given in the configuration always wins over the file.

Secrets are what keep strangers out of the admin API, the `/internal/` API and the Raft port, so a node
refuses to listen on anything but loopback with a secret that is short or one that was ever published
(the values older versions of the README printed).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import tomllib
from pathlib import Path

import tomli_w

from pygmy.config import Config, ConfigError, Node

SECRETS_FILE = "secrets.toml"
MIN_SECRET_LENGTH = 16
# Printed in the README of earlier versions: anyone may know them.
PUBLISHED_SECRETS = frozenset({"pygmy-admin", "pygmy-cluster-secret"})
SECRET_KEYS = ("admin_token", "cluster_secret")


def secrets_path(config: Config) -> Path:
    return config.data_dir / SECRETS_FILE


def with_stored_secrets(config: Config) -> Config:
    """`config` with every secret it leaves out taken from the data directory's file, if there is one."""
    missing = [key for key in SECRET_KEYS if not getattr(config, key)]
    if not missing:
        return config
    stored = _read(secrets_path(config))
    return config.with_overrides(**{key: stored[key] for key in missing if stored.get(key)})


def ensure_secrets(config: Config) -> tuple[Config, bool]:
    """`config` with both secrets set, generating and storing the missing ones; True if any was generated."""
    config = with_stored_secrets(config)
    missing = [key for key in SECRET_KEYS if not getattr(config, key)]
    if not missing:
        return config, False
    path = secrets_path(config)
    stored = _read(path)
    stored.update({key: secrets.token_urlsafe(32) for key in missing})
    _write_private(path, tomli_w.dumps(stored))
    return config.with_overrides(**{key: stored[key] for key in missing}), True


def require_secrets(config: Config, node: Node | None = None) -> None:
    """Refuse to run without secrets, or with weak ones on a non-loopback address (ConfigError says how to mend it)."""
    for key in SECRET_KEYS:
        value: str = getattr(config, key)
        if not value:
            raise ConfigError(
                f"no {key}: set it in the configuration, or start the cluster with `pygmy up`, which generates one "
                f"in {secrets_path(config)}"
            )
    nodes = [node] if node is not None else list(config.nodes)
    exposed = [n for n in nodes if not is_loopback(n.host)]
    if not exposed:
        return
    for key in SECRET_KEYS:
        why = weakness(getattr(config, key))
        if why is not None:
            raise ConfigError(
                f"{exposed[0].name} would listen on {exposed[0].host}, beyond this machine, with a {key} that is {why}: "
                f"set {key} in the configuration to a random value (python -c 'import secrets; "
                f"print(secrets.token_urlsafe(32))'), or remove it to have `pygmy up` generate one"
            )


def weakness(secret: str) -> str | None:
    """Why `secret` must not guard anything reachable beyond this machine, or None if it may."""
    if secret in PUBLISHED_SECRETS:
        return "a published default"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"shorter than {MIN_SECRET_LENGTH} characters"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def private_umask() -> None:
    """Files this process creates from now on (databases, logs, configuration) are its owner's only."""
    os.umask(0o077)


def _read(path: Path) -> dict[str, str]:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc}); it holds the cluster's secrets") from exc
    return {key: value for key, value in raw.items() if key in SECRET_KEYS and isinstance(value, str)}


def _write_private(path: Path, text: str) -> None:
    # Created 0600 from the start (not chmod-ed after), then moved into place, so no reader ever sees it open.
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
