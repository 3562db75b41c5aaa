"""/openapi.json is the file in the repo, describes every public route, and the live API keeps to it.

The last test lets schemathesis generate requests (valid and invalid) for every operation against a
live cluster of its own: no answer may be a 5xx, and every answer must match the document (status,
headers, body schema, content type).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

import pygmy
from support.cluster import Cluster, running_cluster
from support.http import Api, ok_json

DOCUMENT = Path(pygmy.__file__).parent / "frontend" / "openapi.json"
PUBLIC_OPERATIONS = {
    "GET /search/{topic}", "GET /search", "GET /lookup/{item}", "GET /lookup", "POST /buy/{item}", "POST /buy",
    "GET /buy", "GET /orders/{order_id}", "GET /orders", "POST /admin/books/{item}", "GET /health",
    "GET /openapi.json", "GET /metrics",
}  # fmt: skip
EXAMPLES_PER_OPERATION = 50


def _document() -> dict:
    return json.loads(DOCUMENT.read_text())


def test_the_document_is_openapi_3_0_3_and_names_every_public_operation() -> None:
    assert _document()["openapi"] == "3.0.3"
    loaded = schemathesis.openapi.from_path(DOCUMENT)
    assert {op.ok().label for op in loaded.get_all_operations()} == PUBLIC_OPERATIONS


def test_every_response_in_the_document_carries_server_timing_and_every_503_retry_after() -> None:
    doc = _document()
    shared = doc["components"]["responses"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    response = shared[response["$ref"].rsplit("/", 1)[-1]]
                where = f"{method.upper()} {path} {status}"
                assert "Server-Timing" in response.get("headers", {}), where
                if status == "503":
                    assert "Retry-After" in response["headers"], where


def test_the_frontend_serves_the_document_in_the_repo(api: Api) -> None:
    assert ok_json(api.get("/openapi.json")) == _document()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of its own: the fuzzer buys and restocks at random."""
    with running_cluster(tmp_path_factory.mktemp("fuzzed-cluster")) as c:
        yield c


# The document in the repo (the test above proves the frontend serves exactly this). Loaded from the
# file rather than from the live frontend because schemathesis's lazy fixture loader does not run
# under this pytest version.
# A schema-valid request may still be refused for the state it meets: 422 is a buy whose
# Idempotency-Key was already used for another item (generated keys repeat across items).
STATEFUL_REFUSALS = ["2xx", "401", "403", "404", "409", "422", "5xx"]
document = schemathesis.openapi.from_path(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": STATEFUL_REFUSALS}}}
    ),
)


@document.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_live_api_keeps_to_its_document_and_never_answers_5xx(case: schemathesis.Case, fuzzed: Cluster) -> None:
    # The admin route gets the real token, so generated bodies reach validation instead of stopping at 401.
    headers = fuzzed.admin_headers() if case.path.startswith("/admin/") else None
    case.call_and_validate(base_url=fuzzed.frontend_url, headers=headers, timeout=15)
