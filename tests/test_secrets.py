"""No usable default secrets: `pygmy up` generates them, keeps them private, and client commands find them;
a node refuses to face the network with a weak one."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest
import requests

from pygmy.cluster.credentials import PUBLISHED_SECRETS, ensure_secrets, require_secrets, with_stored_secrets
from pygmy.config import DEFAULT_TOML, ConfigError, load, parse
from support.cli import failed_cleanly, run_pygmy, succeeded
from support.cluster import Cluster, free_ports


def world_or_group_readable(root: Path) -> list[str]:
    return [str(p) for p in [root, *root.rglob("*")] if p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)]


def test_the_built_in_configuration_names_no_secret() -> None:
    config = parse(DEFAULT_TOML)
    assert config.admin_token == "" and config.cluster_secret == ""
    assert not any(s in DEFAULT_TOML for s in PUBLISHED_SECRETS)


def test_generated_secrets_are_random_private_and_kept_across_starts(tmp_path: Path) -> None:
    config = load().with_overrides(data_dir=tmp_path / "data")
    first, generated = ensure_secrets(config)
    assert generated
    assert len(first.admin_token) >= 32 and len(first.cluster_secret) >= 32
    assert first.admin_token != first.cluster_secret
    assert stat.S_IMODE((tmp_path / "data" / "secrets.toml").stat().st_mode) == 0o600
    again, generated_again = ensure_secrets(config)
    assert not generated_again
    assert (again.admin_token, again.cluster_secret) == (first.admin_token, first.cluster_secret)
    other, _ = ensure_secrets(load().with_overrides(data_dir=tmp_path / "other"))
    assert other.admin_token != first.admin_token


def test_a_configured_secret_wins_over_the_stored_one(tmp_path: Path) -> None:
    config = load().with_overrides(data_dir=tmp_path)
    ensure_secrets(config)
    mine = with_stored_secrets(config.with_overrides(admin_token="mine-" + "x" * 20))
    assert mine.admin_token == "mine-" + "x" * 20
    assert mine.cluster_secret == tomllib.loads((tmp_path / "secrets.toml").read_text())["cluster_secret"]


@pytest.mark.parametrize("secret", ["pygmy-cluster-secret", "short-secret"])
def test_a_weak_secret_is_refused_off_loopback_and_accepted_on_it(secret: str) -> None:
    strong = "s" * 40
    exposed = load().with_overrides(admin_token=strong, cluster_secret=secret)
    exposed = exposed.with_overrides(nodes=tuple(n if n.kind != "frontend" else type(n)(n.kind, n.id, "0.0.0.0", n.port)
                                                  for n in exposed.nodes))
    with pytest.raises(ConfigError, match="cluster_secret"):
        require_secrets(exposed)
    require_secrets(exposed, exposed.node("catalog", 0))  # this node is on 127.0.0.1: it may start


def test_serve_on_a_public_address_with_a_published_token_exits_with_how_to_mend_it(tmp_path: Path) -> None:
    port, raft = free_ports(2)
    config = tmp_path / "pygmy.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nadmin_token = "pygmy-admin"\ncluster_secret = "{"c" * 40}"\n'
        f'[[nodes]]\nkind = "frontend"\nid = 0\nhost = "0.0.0.0"\nport = {port}\n'
        f'[[nodes]]\nkind = "catalog"\nid = 0\nhost = "127.0.0.1"\nport = {free_ports(1)[0]}\nraft_port = {raft}\n'
        f'[[nodes]]\nkind = "order"\nid = 0\nhost = "127.0.0.1"\nport = {free_ports(1)[0]}\nraft_port = {free_ports(1)[0]}\n'
    )
    output = failed_cleanly(run_pygmy("serve", "frontend", "0", "--config", str(config)))
    assert "admin_token" in output and "published default" in output and "token_urlsafe" in output


def test_serve_without_any_secret_says_where_to_get_one(tmp_path: Path) -> None:
    config = tmp_path / "pygmy.toml"
    config.write_text(DEFAULT_TOML.replace('data_dir = "data"', f'data_dir = "{tmp_path / "data"}"'))
    output = failed_cleanly(run_pygmy("serve", "frontend", "0", "--config", str(config)))
    assert "no admin_token" in output and "pygmy up" in output


def test_pygmy_up_generates_secrets_that_client_commands_on_this_machine_find(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, mode="up", replicas=1, secrets_in_config=False)
    try:
        cluster.start()
        assert len(cluster.admin_token) >= 32 and cluster.admin_token not in PUBLISHED_SECRETS
        assert "the admin token is in" in cluster.log("up") and "secrets.toml" in cluster.log("up")
        # The /internal/ API is closed to the secret of any earlier README, open to the generated one.
        for secret in PUBLISHED_SECRETS:
            assert requests.get(f"{cluster.catalog_url}/internal/health", headers={"X-Pygmy-Secret": secret}, timeout=5).status_code == 403
        assert requests.get(f"{cluster.catalog_url}/internal/health", headers=cluster.secret_headers(), timeout=5).ok
        # No --token: the admin token is read from the data dir named by the configuration.
        updated = succeeded(run_pygmy("update", "1", "--delta", "3", "--config", str(cluster.config_path),
                                      "--url", cluster.frontend_url, "--json"))
        assert json.loads(updated)["stock"] == 103
        succeeded(run_pygmy("check", "--data-dir", str(cluster.data_dir), "--config", str(cluster.config_path)))
        assert world_or_group_readable(cluster.data_dir) == []
    finally:
        cluster.stop()


def test_a_client_command_without_a_token_anywhere_says_where_it_looked(tmp_path: Path) -> None:
    output = failed_cleanly(run_pygmy("update", "1", "--delta", "1", "--data-dir", str(tmp_path / "nothing"),
                                      "--url", "http://127.0.0.1:9"))
    assert "no admin token" in output and "secrets.toml" in output
