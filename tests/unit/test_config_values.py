"""Configuration values are checked for type and range, and every refusal is one line naming the key.

TOML integers, floats and booleans all pass Python's `int()`; these tests pin that a value of the wrong
type is refused rather than converted, and that two nodes cannot be given the same socket under two names.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pygmy.config import ConfigError, dump, load, parse
from pygmy.config_values import same_socket

from tests.unit.test_config import backend, config_text, three_each


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as refused:
        parse(text)
    message = str(refused.value)
    assert "\n" not in message
    return message


def with_catalog_0(**values: str) -> str:
    """The standard three-each configuration with catalog-0's keys (TOML values as written) overridden."""
    table = {"kind": '"catalog"', "id": "0", "port": "7100", "raft_port": "7500", **values}
    original = backend("catalog", 0, 7100, 7500)
    replaced = "\n[[nodes]]\n" + "".join(f"{k} = {v}\n" for k, v in table.items())
    return config_text(nodes=three_each().replace(original, replaced, 1))


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("port", "8201.9", ["nodes[1] (catalog).port", "integer", "8201.9", "float"]),
        ("port", "true", ["nodes[1] (catalog).port", "integer", "boolean"]),
        ("port", '"8201"', ["nodes[1] (catalog).port", "integer", "string"]),
        ("port", "0", ["nodes[1] (catalog).port", "from 1 to 65535", "not 0"]),
        ("raft_port", "70000", ["nodes[1] (catalog).raft_port", "from 1 to 65535", "70000"]),
        ("raft_port", "9101.0", ["nodes[1] (catalog).raft_port", "float"]),
        ("id", "-5", ["nodes[1] (catalog).id", "from 0 to 999", "-5"]),
        ("id", "true", ["nodes[1] (catalog).id", "boolean"]),
        ("id", "1.0", ["nodes[1] (catalog).id", "float"]),
        ("host", '""', ["nodes[1] (catalog).host", "non-empty string"]),
        ("host", "127", ["nodes[1] (catalog).host", "string"]),
        ("host", '"127.0.0.1/8"', ["nodes[1] (catalog).host", "host name or an IP address"]),
    ],
)
def test_a_value_of_the_wrong_type_or_out_of_range_is_refused_naming_its_key(key: str, value: str, words: list[str]) -> None:
    message = refusal(with_catalog_0(**{key: value}))
    for word in words:
        assert word in message, message


def test_a_node_without_a_port_is_refused_naming_the_key() -> None:
    nodes = three_each().replace("port = 7100\n", "", 1)
    assert "nodes[1] (catalog) needs port" in refusal(config_text(nodes=nodes))


@pytest.mark.parametrize("value", ['5', "[1]", "true"])
def test_a_data_dir_that_is_not_a_string_is_refused(value: str) -> None:
    assert "data_dir must be a non-empty string" in refusal(config_text().replace('data_dir = "data"', f"data_dir = {value}"))


def test_two_nodes_with_the_same_kind_and_id_are_refused() -> None:
    nodes = three_each() + backend("catalog", 1, 7990, 7991) + backend("catalog", 3, 7992, 7993)
    assert "two nodes are named catalog-1" in refusal(config_text(nodes=nodes))


@pytest.mark.parametrize(
    "host_a, host_b",
    [("localhost", "127.0.0.1"), ("127.0.0.1", "LOCALHOST"), ("::1", "localhost"), ("0.0.0.0", "10.1.2.3"), ("[::1]", "::1")],
)
def test_two_names_for_one_socket_clash(host_a: str, host_b: str) -> None:
    assert same_socket(host_a, host_b)


@pytest.mark.parametrize("host_a, host_b", [("127.0.0.1", "127.0.0.2"), ("10.0.0.1", "10.0.0.2"), ("a.example", "b.example")])
def test_distinct_addresses_do_not_clash(host_a: str, host_b: str) -> None:
    assert not same_socket(host_a, host_b)


def test_localhost_and_127_0_0_1_on_the_same_port_are_a_clash() -> None:
    # The frontend binds 127.0.0.1:7000 (the default host); catalog-0 says localhost:7000.
    text = with_catalog_0(host='"localhost"', port="7000")
    message = refusal(text)
    assert "catalog-0.port localhost:7000" in message and "frontend-0.port" in message


def test_a_raft_port_equal_to_another_nodes_http_port_is_a_clash() -> None:
    text = with_catalog_0(raft_port="7000")
    assert "catalog-0.raft_port 127.0.0.1:7000" in refusal(text)


@pytest.mark.parametrize("token", ['a"b', "a\\b", 'quote " and backslash \\ and newline \n end', "'single'"])
def test_the_written_configuration_keeps_a_secret_with_quotes_and_backslashes(tmp_path: Path, token: str) -> None:
    # cluster.toml (what every node of `pygmy up` reads) is written by `dump`, which uses tomli-w.
    config = parse(config_text(), base_dir=tmp_path).with_overrides(admin_token=token, cluster_secret=token + "2")
    path = tmp_path / "cluster.toml"
    path.write_text(dump(config))
    again = load(path)
    assert (again.admin_token, again.cluster_secret) == (token, token + "2")
