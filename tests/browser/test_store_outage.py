"""A store that is briefly unavailable: the page says so and how to retry, and the retry (same
Idempotency-Key) opens one order once the order tier is back."""

from __future__ import annotations

from typing import Any, Callable

from selenium.webdriver.common.by import By

from support.cluster import Cluster
from support.polling import wait_for
from support.web import book, order_total


def test_a_buy_during_an_outage_says_retry_and_the_retry_buys_once(browser: Any, make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster("outage")
    browser.get(cluster.frontend_url + "/")  # a new origin (its own port): nothing stored yet
    wait_for("book 2 in the list", lambda: browser.find_elements(By.CSS_SELECTOR, 'button.book[data-item="2"]'))[0].click()
    wait_for("its stock", lambda: browser.find_element(By.ID, "detail-stock").get_attribute("data-stock"))
    for i in range(cluster.replicas):
        cluster.kill("order", i)

    browser.find_element(By.ID, "buy").click()
    message = lambda: browser.find_element(By.ID, "buy-message").text  # noqa: E731
    wait_for("the unavailable message", lambda: "briefly unavailable" in message() and "retry" in message(), timeout=30)
    assert browser.find_elements(By.CSS_SELECTOR, "#orders tr") == []

    for i in range(cluster.replicas):
        cluster.start_node("order", i, wait=False)
    cluster.wait_ready([cluster.node("order", i) for i in range(cluster.replicas)])
    cluster.leader("order", timeout=30)
    stock = book(cluster, 2)["stock"]
    browser.find_element(By.ID, "buy").click()  # the retry the message asks for
    wait_for("the order confirmation", lambda: "placed" in message(), timeout=30)
    assert order_total(cluster) == 1
    assert book(cluster, 2)["stock"] == stock - 1
