"""A real headless Chromium (Debian's, driven by Selenium) against one real `pygmy up --control` cluster.

The browser and the cluster are shared by the browser tests of this folder (starting them costs seconds);
tests that change the cluster put it back (a crashed node is restarted by the supervisor). Where Chromium
cannot be installed the tests skip and say so; `scripts/install-chromium.sh` (run by `make browser-deps`,
which `make test` runs first) installs it from Debian.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from support.cluster import Cluster

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1000",
]
# Selenium Manager would fetch driver lists and send usage stats over the internet: the binaries are given.
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")


def _binaries() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("Chromium or chromedriver is not installed (scripts/install-chromium.sh installs both "
                    "with apt-get; it could not run here): the browser tests are skipped")
    return browser, driver


@pytest.fixture(scope="package")
def web_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("web-cluster"), mode="up", control=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _binaries()
    profile = Path(tempfile.mkdtemp(prefix="pygmy-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # The performance log lists every request the page makes (Network.requestWillBeSent).
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(120)  # generous: the test machine may be saturated
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any, web_cluster: Cluster) -> Any:
    """The browser at the cluster's storefront, this origin's storage emptied and the logs drained first."""
    origin = web_cluster.frontend_url
    browser.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "local_storage,session_storage"})
    browser.get_log("browser")
    browser.get_log("performance")
    browser.get(origin + "/")
    return browser
