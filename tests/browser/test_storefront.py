"""The storefront in a real browser: it loads cleanly, sells a book, never sells twice for one intent,
says so when a book is sold out, talks only to its own origin, and labels every control."""

from __future__ import annotations

from typing import Any

import requests
from selenium.webdriver.common.by import By

from support.cluster import Cluster
from support.polling import wait_for
from support.web import book, console_errors, foreign, order_total, requested_urls

ITEM = 3  # Xen and the Art of Surviving Graduate School


def open_book(page: Any, item: int) -> int:
    """Choose a book in the list and return the stock the page shows for it."""
    button = wait_for(f"book {item} in the list", lambda: page.find_elements(By.CSS_SELECTOR, f'button.book[data-item="{item}"]'))[0]
    button.click()
    stock = wait_for("the stock shown", lambda: page.find_element(By.ID, "detail-stock").get_attribute("data-stock"))
    return int(stock)


def shown_stock(page: Any) -> int:
    return int(page.find_element(By.ID, "detail-stock").get_attribute("data-stock"))


def buy_message(page: Any) -> str:
    return page.find_element(By.ID, "buy-message").text


def test_the_storefront_and_dashboard_load_without_console_errors(page: Any, web_cluster: Cluster) -> None:
    wait_for("the books to load", lambda: page.find_elements(By.CSS_SELECTOR, "button.book"))
    assert console_errors(page) == []
    page.get(web_cluster.frontend_url + "/dashboard")
    wait_for("a node card", lambda: page.find_elements(By.CSS_SELECTOR, ".card[data-status='up']"))
    assert console_errors(page) == []


def test_a_buy_through_the_page_decrements_the_stock_it_shows(page: Any, web_cluster: Cluster) -> None:
    before = open_book(page, ITEM)
    page.find_element(By.ID, "buy").click()
    wait_for("the order confirmation", lambda: "placed" in buy_message(page))
    wait_for("the stock to go down by one", lambda: shown_stock(page) == before - 1)
    assert book(web_cluster, ITEM)["stock"] == before - 1
    rows = page.find_elements(By.CSS_SELECTOR, "#orders tr")
    assert len(rows) == 1 and "Xen" in rows[0].text  # kept in this browser's localStorage


def test_a_double_submitted_buy_makes_one_order(page: Any, web_cluster: Cluster) -> None:
    before = open_book(page, ITEM)
    orders_before = order_total(web_cluster)
    # Two clicks in the same task: the second is sent while the first is in flight, with the same key.
    page.execute_script("const b = document.getElementById('buy'); b.click(); b.click();")
    wait_for("the order confirmation", lambda: "placed" in buy_message(page))
    wait_for("both answers", lambda: page.execute_script("return localStorage.getItem('pygmy.pendingBuy') === null"))
    assert order_total(web_cluster) == orders_before + 1
    assert book(web_cluster, ITEM)["stock"] == before - 1
    assert len(page.find_elements(By.CSS_SELECTOR, "#orders tr")) == 1


def test_a_sold_out_book_says_out_of_stock_and_places_no_order(page: Any, web_cluster: Cluster) -> None:
    item = 7
    stock = book(web_cluster, item)["stock"]
    admin = {"Authorization": f"Bearer {web_cluster.admin_token}"}
    url = f"{web_cluster.frontend_url}/admin/books/{item}"
    requests.post(url, json={"stock_delta": -stock}, headers=admin, timeout=10).raise_for_status()
    try:
        assert open_book(page, item) == 0
        orders_before = order_total(web_cluster)
        page.find_element(By.ID, "buy").click()
        wait_for("the out-of-stock message", lambda: "Sorry, this book is out of stock" in buy_message(page))
        assert order_total(web_cluster) == orders_before
        assert page.find_elements(By.CSS_SELECTOR, "#orders tr") == []
    finally:
        requests.post(url, json={"stock_delta": stock}, headers=admin, timeout=10).raise_for_status()


def test_no_request_leaves_for_another_host(page: Any, web_cluster: Cluster) -> None:
    open_book(page, 1)
    page.get(web_cluster.frontend_url + "/dashboard")
    wait_for("a node card", lambda: page.find_elements(By.CSS_SELECTOR, ".card"))
    urls = requested_urls(page)
    assert any(u.endswith("/web/store.js") for u in urls)  # the log does see the page's own requests
    assert foreign(urls, web_cluster.frontend_url) == []


UNLABELLED = """
return [...document.querySelectorAll('input, select, textarea, button')].filter((c) => {
  if (c.type === 'hidden') return false;
  const byFor = c.id && document.querySelector(`label[for="${c.id}"]`);
  const name = (c.getAttribute('aria-label') || c.textContent || '').trim();
  return !(byFor || c.closest('label') || name);
}).map((c) => c.outerHTML);
"""


def test_every_control_has_a_label(page: Any, web_cluster: Cluster) -> None:
    wait_for("the books to load", lambda: page.find_elements(By.CSS_SELECTOR, "button.book"))
    assert page.execute_script(UNLABELLED) == []
    page.get(web_cluster.frontend_url + "/dashboard")
    wait_for("the control buttons", lambda: page.find_elements(By.CSS_SELECTOR, ".card button[data-action]"))
    assert page.execute_script(UNLABELLED) == []
