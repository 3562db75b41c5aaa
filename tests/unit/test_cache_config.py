"""The [cache] table: defaults, the values it takes, the values it refuses, and the launcher's dump of it."""

from __future__ import annotations

import pytest

from pygmy.config import CacheSettings, ConfigError, dump, parse
from unit.test_config import config_text


def test_without_a_cache_table_the_cache_is_on_with_10000_entries_and_1500ms_leases() -> None:
    assert parse(config_text()).cache == CacheSettings(enabled=True, size=10_000, lease_ms=1500, drift_ms=100)


def test_the_cache_table_is_read_and_survives_the_dump_children_read() -> None:
    config = parse(config_text("[cache]\nenabled = false\nsize = 50\nlease_ms = 900\ndrift_ms = 30\n"))
    assert config.cache == CacheSettings(enabled=False, size=50, lease_ms=900, drift_ms=30)
    assert parse(dump(config)).cache == config.cache


@pytest.mark.parametrize(
    "table, words",
    [
        ("size = 0", ["cache.size", "positive"]),
        ("lease_ms = -5", ["cache.lease_ms", "positive"]),
        ("drift_ms = 1.5", ["cache.drift_ms", "positive"]),
        ('enabled = "no"', ["cache.enabled", "true or false"]),
        ("leese_ms = 10", ["unknown key in [cache]", "leese_ms"]),
    ],
)
def test_bad_cache_values_are_refused_with_the_key_named(table: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as refused:
        parse(config_text(f"[cache]\n{table}\n"))
    for word in words:
        assert word in str(refused.value)
