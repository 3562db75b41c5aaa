"""The partition lab from the dashboard: under `pygmy up --netns` each card has a "Cut off" button; a cut
leader's card says so, the group elects another, and "Heal" brings the node back as a follower. Without
--netns the buttons are not there (tests/browser/test_dashboard.py's cluster)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from selenium.webdriver.common.by import By

from pygmy.cluster.netns import Network, unavailable_reason
from support.netlab import NetnsUp
from support.polling import wait_for

from .test_dashboard import leaders, open_dashboard

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"network namespaces unavailable: {REASON}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsUp]:
    cluster = NetnsUp(tmp_path_factory.mktemp("web-netlab"), mode="up", control=True, ready_timeout=60)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        Network([n.name for n in cluster.nodes], seed=str(cluster.data_dir.resolve())).remove_leftovers()


def button(page: Any, node: str, action: str) -> Any:
    return page.find_element(By.CSS_SELECTOR, f".card[data-node='{node}'] button[data-action='{action}']")


def test_a_leader_cut_off_from_the_dashboard_is_replaced_and_healed_back(browser: Any, lab: NetnsUp) -> None:
    page = browser
    open_dashboard(page, lab)
    page.find_element(By.ID, "token").send_keys(lab.admin_token)
    page.find_element(By.CSS_SELECTOR, "#token-form button[type='submit']").click()
    wait_for("the cut-off buttons", lambda: button(page, "catalog-0", "partition").is_displayed())
    assert not button(page, "catalog-0", "heal").is_displayed()
    old = wait_for("a catalog leader", lambda: leaders(page, "catalog"))[0]
    button(page, old, "partition").click()

    card = page.find_element(By.CSS_SELECTOR, f".card[data-node='{old}']")
    wait_for(f"{old} shown cut off", lambda: card.get_attribute("data-cut") == "true" and "cut off" in card.text)
    listed = lab.control("GET", "/control/partitions").json()["partitions"]
    assert [p["node"] for p in listed] == [old], listed
    new = wait_for("another catalog leader", lambda: [n for n in leaders(page, "catalog") if n != old], timeout=30)
    assert button(page, old, "heal").is_displayed() and not button(page, old, "partition").is_displayed()

    button(page, old, "heal").click()
    wait_for(f"{old} no longer cut off", lambda: card.get_attribute("data-cut") == "false")
    assert lab.control("GET", "/control/partitions").json()["partitions"] == []
    wait_for(f"{old} back as a follower", lambda: card.get_attribute("data-status") == "up"
             and card.get_attribute("data-role") == "follower", timeout=30)
    assert leaders(page, "catalog") == new
