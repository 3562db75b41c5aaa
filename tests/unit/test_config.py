"""The cluster configuration: the [raft] table, the cluster id, resizing the backend groups, and the checks
that refuse a configuration a Raft cluster cannot run on."""

from __future__ import annotations

from pathlib import Path

import pytest

from pygmy.config import DEFAULT_TOML, Config, ConfigError, FrontendSettings, RaftSettings, dump, load, parse
from pygmy.raft.core import RaftConfig
from pygmy.raft.node import GroupOptions

BASE = """\
data_dir = "data"
admin_token = "a"
cluster_secret = "s"
{extra}
[[nodes]]
kind = "frontend"
id = 0
port = 7000
{nodes}"""


def backend(kind: str, node_id: int, port: int, raft_port: int | None = None) -> str:
    text = f'\n[[nodes]]\nkind = "{kind}"\nid = {node_id}\nport = {port}\n'
    return text + (f"raft_port = {raft_port}\n" if raft_port is not None else "")


def three_each(offset: int = 0) -> str:
    return "".join(
        backend(kind, i, 7100 + 100 * k + i + offset, 7500 + 100 * k + i + offset)
        for k, kind in enumerate(("catalog", "order"))
        for i in range(3)
    )


def config_text(extra: str = "", nodes: str | None = None) -> str:
    return BASE.format(extra=extra, nodes=three_each() if nodes is None else nodes)


# -- [raft] ----------------------------------------------------------------------------------------


def test_without_a_raft_table_the_defaults_are_10ms_ticks_30ms_heartbeats_150ms_elections() -> None:
    raft = parse(config_text()).raft
    assert raft == RaftSettings(tick_ms=10, heartbeat_ticks=3, election_ticks=15, snapshot_every=10_000, sync=True)


def test_the_raft_table_becomes_the_groups_options() -> None:
    text = config_text("[raft]\ntick_ms = 20\nheartbeat_ticks = 2\nelection_ticks = 12\nsnapshot_every = 500\nsync = false\n")
    options = parse(text).raft.group_options()
    assert isinstance(options, GroupOptions)
    assert options.tick_seconds == pytest.approx(0.02)
    assert options.raft == RaftConfig(election_ticks=12, heartbeat_ticks=2)
    assert (options.snapshot_every, options.sync) == (500, False)


def test_the_default_raft_settings_give_the_groups_default_options() -> None:
    assert parse(config_text()).raft.group_options() == GroupOptions()


@pytest.mark.parametrize(
    "section, table, words",
    [
        ("raft", "tick_ms = 0", ["raft.tick_ms", "positive"]),
        ("raft", "heartbeat_ticks = -1", ["raft.heartbeat_ticks", "positive"]),
        ("raft", "snapshot_every = 1.5", ["raft.snapshot_every", "positive"]),
        ("raft", "election_ticks = true", ["raft.election_ticks", "positive"]),
        ("raft", 'sync = "yes"', ["raft.sync", "true or false"]),
        ("raft", "heartbeat_ticks = 5\nelection_ticks = 10", ["election_ticks (10)", "twice", "heartbeat_ticks (5)"]),
        ("raft", "electon_ticks = 20", ["unknown key", "electon_ticks"]),
        ("frontend", "heartbeat_ms = 0", ["frontend.heartbeat_ms", "positive"]),
        ("frontend", "election_wait_ms = 1.5", ["frontend.election_wait_ms", "positive"]),
        ("frontend", "retry_budget = -0.1", ["frontend.retry_budget", "0 to 10"]),
        ("frontend", 'retry_budget = "lots"', ["frontend.retry_budget"]),
        ("frontend", "heartbeat = 100", ["unknown key in [frontend]", "heartbeat"]),
    ],
)
def test_bad_settings_are_refused_with_the_key_named(section: str, table: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as refused:
        parse(config_text(f"[{section}]\n{table}\n"))
    for word in words:
        assert word in str(refused.value)


# -- [frontend] ------------------------------------------------------------------------------------


def test_without_a_frontend_table_heartbeats_are_500ms_and_a_request_waits_4s_for_a_leader() -> None:
    assert parse(config_text()).frontend == FrontendSettings(heartbeat_ms=500, election_wait_ms=4000, retry_budget=0.2)


def test_the_frontend_table_is_read_and_dumped_back() -> None:
    config = parse(config_text("[frontend]\nheartbeat_ms = 100\nelection_wait_ms = 2500\nretry_budget = 0.5\n"))
    assert config.frontend == FrontendSettings(heartbeat_ms=100, election_wait_ms=2500, retry_budget=0.5)
    assert parse(dump(config)).frontend == config.frontend


# -- cluster id and dump ---------------------------------------------------------------------------


def test_cluster_id_is_optional() -> None:
    assert parse(config_text()).cluster_id is None
    assert parse(config_text('cluster_id = "c0ffee"')).cluster_id == "c0ffee"


def test_an_empty_cluster_id_is_refused() -> None:
    with pytest.raises(ConfigError, match="cluster_id"):
        parse(config_text('cluster_id = ""'))


def test_dump_writes_back_everything_including_raft_and_cluster_id(tmp_path: Path) -> None:
    text = config_text('cluster_id = "c0ffee"\ncatalog_file = "books.csv"\n[raft]\nelection_ticks = 30\nsync = false\n')
    config = parse(text, base_dir=tmp_path)
    again = parse(dump(config))
    assert again == config
    assert again.raft.election_ticks == 30 and again.cluster_id == "c0ffee"


def test_dump_of_the_default_reads_back_the_same() -> None:
    config = load()
    assert parse(dump(config)) == config


# -- group checks ----------------------------------------------------------------------------------


def test_an_even_group_is_refused_and_the_message_says_why() -> None:
    nodes = three_each() + backend("catalog", 3, 7900, 7901)
    with pytest.raises(ConfigError) as refused:
        parse(config_text(nodes=nodes))
    message = str(refused.value)
    assert "catalog" in message and "4 nodes" in message and "odd" in message
    assert "survives no more crashes" in message


def test_a_backend_node_without_a_raft_port_is_refused() -> None:
    nodes = three_each().replace("raft_port = 7602\n", "")
    with pytest.raises(ConfigError, match="order-2 needs a raft_port"):
        parse(config_text(nodes=nodes))


def test_the_built_in_default_passes_the_checks() -> None:
    config = parse(DEFAULT_TOML)
    assert [len(config.of_kind(k)) for k in ("frontend", "catalog", "order")] == [1, 3, 3]


# -- with_replicas ---------------------------------------------------------------------------------


def ports(config: Config, kind: str) -> list[tuple[int, int, int | None]]:
    return [(n.id, n.port, n.raft_port) for n in config.of_kind(kind)]  # type: ignore[arg-type]


def test_one_replica_keeps_replica_0_of_each_tier_and_the_frontends() -> None:
    config = parse(config_text())
    one = config.with_replicas(1)
    assert ports(one, "catalog") == [(0, 7100, 7500)]
    assert ports(one, "order") == [(0, 7200, 7600)]
    assert one.of_kind("frontend") == config.of_kind("frontend")


def test_five_replicas_keep_the_existing_ports_and_add_the_default_pattern() -> None:
    five = parse(config_text()).with_replicas(5)
    assert ports(five, "catalog") == [(0, 7100, 7500), (1, 7101, 7501), (2, 7102, 7502), (3, 8104, 9104), (4, 8105, 9105)]
    assert ports(five, "order") == [(0, 7200, 7600), (1, 7201, 7601), (2, 7202, 7602), (3, 8204, 9204), (4, 8205, 9205)]
    assert all(n.host == "127.0.0.1" for n in five.nodes)


def test_five_replicas_of_the_default_follow_the_default_pattern() -> None:
    five = load().with_replicas(5)
    assert ports(five, "catalog") == [(i, 8101 + i, 9101 + i) for i in range(5)]
    assert ports(five, "order") == [(i, 8201 + i, 9201 + i) for i in range(5)]


@pytest.mark.parametrize("n", [0, 2, 4, -1])
def test_an_even_or_non_positive_replica_count_is_refused(n: int) -> None:
    with pytest.raises(ConfigError) as refused:
        load().with_replicas(n)
    assert "odd" in str(refused.value) and "survives no more crashes" in str(refused.value)
