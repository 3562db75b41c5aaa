"""Screenshots of the storefront and the dashboard for the README (docs/web-*.png), from a real cluster.

Run with `make screenshots` (needs Chromium: `make browser-deps`). It starts `pygmy up --control` on free
loopback ports, runs a small steady load through the control endpoint so the chart has lines, buys a
book through the page, and saves both pages as PNG.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.cluster import Cluster  # noqa: E402

LOAD = {"mix": "mixed", "rate": 20, "seconds": 60}
CHART_SECONDS = 25  # of load before the dashboard is shot, so its chart shows some history


def browser():  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Given the binaries, Selenium Manager has nothing to fetch; offline, it sends no usage stats either.
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1100", f"--user-data-dir={tempfile.mkdtemp(prefix='pygmy-shots-')}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main() -> None:
    from selenium.webdriver.common.by import By

    cluster = Cluster(Path(tempfile.mkdtemp(prefix="pygmy-shots-")), mode="up", control=True).start()
    driver = browser()
    try:
        base = cluster.frontend_url
        requests.post(f"{cluster.control_url}/control/load", json=LOAD, headers=cluster.admin_headers(), timeout=10)
        driver.get(base + "/dashboard")
        driver.execute_script(f"sessionStorage.setItem('pygmy.adminToken', {cluster.admin_token!r})")
        time.sleep(CHART_SECONDS)
        driver.get(base + "/")
        time.sleep(2)
        driver.find_element(By.CSS_SELECTOR, 'button.book[data-item="3"]').click()
        time.sleep(1)
        driver.find_element(By.ID, "buy").click()
        time.sleep(2)
        driver.save_screenshot(str(ROOT / "docs" / "web-storefront.png"))
        driver.set_window_size(1280, 1750)  # the whole dashboard: cards, chart and events
        driver.get(base + "/dashboard")
        time.sleep(4)
        driver.save_screenshot(str(ROOT / "docs" / "web-dashboard.png"))
        print("wrote docs/web-storefront.png and docs/web-dashboard.png")
    finally:
        driver.quit()
        cluster.stop()


if __name__ == "__main__":
    main()
