"""Environment variables over the configuration file: how a container gets its secrets and listen address."""

from __future__ import annotations

from pathlib import Path


from pygmy.config import parse
from pygmy.config_env import ENV_KEYS

NODES = """
[[nodes]]
kind = "frontend"
id = 0
host = "frontend.example"
port = 8080

[[nodes]]
kind = "catalog"
id = 0
host = "catalog-0.example"
port = 8101
raft_port = 9101

[[nodes]]
kind = "order"
id = 0
host = "order-0.example"
port = 8201
raft_port = 9201
"""
WITH_SECRETS = 'admin_token = "file-admin"\ncluster_secret = "file-secret"\n' + NODES


def test_set_variables_win_over_the_file() -> None:
    env = {"PYGMY_ADMIN_TOKEN": "env-admin", "PYGMY_CLUSTER_SECRET": "env-secret", "PYGMY_DATA_DIR": "/var/lib/pygmy",
           "PYGMY_BIND_HOST": "0.0.0.0", "PYGMY_CLUSTER_ID": "prod"}
    config = parse(WITH_SECRETS, env=env)
    assert (config.admin_token, config.cluster_secret) == ("env-admin", "env-secret")
    assert config.data_dir == Path("/var/lib/pygmy") and config.cluster_id == "prod"
    # Only where it listens changes: its peers still reach it at the host the file names.
    assert config.bind_host == "0.0.0.0" and config.node("catalog", 0).host == "catalog-0.example"


def test_unset_or_empty_variables_leave_the_file_alone() -> None:
    config = parse(WITH_SECRETS, env={"PYGMY_ADMIN_TOKEN": ""})
    assert config.admin_token == "file-admin" and config.bind_host is None


def test_a_file_without_secrets_takes_them_from_the_environment_or_leaves_them_to_be_generated() -> None:
    config = parse(NODES, env={"PYGMY_ADMIN_TOKEN": "a", "PYGMY_CLUSTER_SECRET": "s"})
    assert (config.admin_token, config.cluster_secret) == ("a", "s")
    # Unset: empty, so `pygmy up` generates it (and a bare `pygmy serve` refuses to start without it).
    assert parse(NODES, env={"PYGMY_CLUSTER_SECRET": "s"}).admin_token == ""


def test_every_variable_names_a_key_of_the_file() -> None:
    assert set(ENV_KEYS.values()) == {"admin_token", "cluster_secret", "data_dir", "cluster_id", "bind_host"}
