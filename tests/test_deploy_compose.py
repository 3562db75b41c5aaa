"""compose.yaml against the configuration it mounts: the same nodes, addresses, ports and commands.

Containers cannot run on these machines, so the file is checked by reading it: a service per node of
deploy/compose/pygmy.toml, started as that node, at that node's static address, probed on its port, with
its data in a named volume at the configuration's data_dir, and no secret written in the file.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pygmy.config import Config, Node, parse

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
SECRET_VARIABLES = ("PYGMY_ADMIN_TOKEN", "PYGMY_CLUSTER_SECRET")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def mounted_config(doc: dict[str, Any]) -> Config:
    path = ROOT / doc["configs"]["pygmy"]["file"]
    # The secrets are not in the file (the test below makes sure): stand-ins let it parse.
    return parse(path.read_text(), env={v: "stand-in" for v in SECRET_VARIABLES})


def services_and_nodes() -> list[tuple[str, dict[str, Any], Node]]:
    doc = compose()
    config = mounted_config(doc)
    return [(node.name, doc["services"].get(node.name, {}), node) for node in config.nodes]


def test_there_is_a_service_for_every_node_and_no_other() -> None:
    doc = compose()
    assert set(doc["services"]) == {node.name for node in mounted_config(doc).nodes}


def test_the_default_topology_starts_and_a_second_frontend_is_an_optional_profile() -> None:
    services = compose()["services"]
    default = sorted(name for name, s in services.items() if not s.get("profiles"))
    assert default == ["catalog-0", "catalog-1", "catalog-2", "frontend-0", "order-0", "order-1", "order-2"]
    assert services["frontend-1"]["profiles"] == ["scale"]


@pytest.mark.parametrize("name,service,node", services_and_nodes(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_service_runs_its_node_at_its_address(name: str, service: dict[str, Any], node: Node) -> None:
    doc = compose()
    config = mounted_config(doc)
    assert service["command"] == ["serve", node.kind, str(node.id)]
    address = service["networks"]["pygmy"]["ipv4_address"]
    assert address == node.host
    subnet = ipaddress.ip_network(doc["networks"]["pygmy"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(address) in subnet
    assert service["restart"] == "unless-stopped"
    env = service["environment"]
    assert env["PYGMY_BIND_HOST"] == "0.0.0.0"
    target = service["configs"][0]["target"]
    assert env["PYGMY_CONFIG"] == target and service["configs"][0]["mode"] == 0o444  # mounted read-only
    probed = re.search(r"http://127\.0\.0\.1:(\d+)/livez", " ".join(service["healthcheck"]["test"]))
    assert probed and int(probed.group(1)) == node.port
    if node.kind == "frontend":
        published = [str(p).rsplit(":", 1)[1] for p in service["ports"]]
        assert published == [str(node.port)]
    else:
        volume, mount = service["volumes"][0].split(":")
        assert volume in doc["volumes"] and Path(mount) == config.data_dir


def test_no_secret_is_written_in_the_file_or_the_configuration() -> None:
    doc = compose()
    for service in doc["services"].values():
        for variable in SECRET_VARIABLES:
            # Compose refuses to start without them (${VAR:?...}) rather than run with a default.
            assert service["environment"][variable].startswith("${" + variable + ":?"), service["environment"]
    config_text = (ROOT / doc["configs"]["pygmy"]["file"]).read_text()
    assert "admin_token" not in config_text and "cluster_secret" not in config_text
