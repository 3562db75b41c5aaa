"""A replica that fail-stops (its disk refuses a write, so it stops taking part rather than risk diverging)
answers 503, never 500: `outcome_unknown` for a write that may have reached its log, `unavailable` for a read.
The frontend passes that on; the buy or update may or may not have been carried out.

The disk failure is real: the catalog process's file-size limit (RLIMIT_FSIZE, set from outside with
prlimit) makes its next write fail with EFBIG, as a full disk would.
"""

from __future__ import annotations

import resource
from typing import Iterator

import pytest
import requests

from support.cluster import Cluster, running_cluster
from support.http import assert_error


WRITE = {"op": "update", "item": 1, "stock_delta": 1}


@pytest.fixture
def catalog_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("fail-stop"), replicas=1) as c:
        requests.get(f"{c.frontend_url}/lookup/1", timeout=15).raise_for_status()
        yield c


def _fail_catalog_disk(c: Cluster) -> None:
    resource.prlimit(c.procs["catalog-0"].pid, resource.RLIMIT_FSIZE, (1, 1))


def test_a_write_to_a_fail_stopped_replica_is_503_not_500(catalog_cluster: Cluster) -> None:
    c = catalog_cluster
    _fail_catalog_disk(c)
    answers = [requests.post(f"{c.catalog_url}/internal/apply", json=WRITE, headers=c.secret_headers(), timeout=30)
               for _ in range(3)]
    # The write that meets the failure may have reached the log (outcome_unknown); once the replica has
    # stopped, a write is certainly not carried out (unavailable).
    assert assert_error(answers[0], 503)["code"] in ("outcome_unknown", "unavailable")
    for later in answers[1:]:
        assert_error(later, 503, "unavailable")
    assert all("Retry-After" in a.headers for a in answers)
    read = requests.get(f"{c.catalog_url}/internal/books/1", headers=c.secret_headers(), timeout=30)
    assert_error(read, 503)


def test_the_frontend_never_says_not_carried_out_for_an_update_its_catalog_failed_during(catalog_cluster: Cluster) -> None:
    c = catalog_cluster
    _fail_catalog_disk(c)
    resp = requests.post(f"{c.frontend_url}/admin/books/1", json={"stock_delta": 1}, headers=c.admin_headers(), timeout=30)
    assert_error(resp, 503, "outcome_unknown")
    assert c.is_running("catalog", 0)  # fail-stop: the process stays, serving 503s, until restarted
