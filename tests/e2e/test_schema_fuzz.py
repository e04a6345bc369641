"""Schema-driven fuzzing (schemathesis) of a live ``remediator serve`` on PostgreSQL.

The server is a real process on a fresh PostgreSQL database, with the webhook token and an
operator-scoped API token configured. schemathesis reads ``/api/v1/openapi.json`` and, for
every operation, sends generated valid and invalid requests. Each answer must be no 5xx and
must conform to the document: a documented status, content type, headers and body schema;
invalid input rejected with a 4xx; credentials enforced.

``positive_data_acceptance`` (every schema-valid request gets a 2xx) is left out: the API
refuses some values that a JSON Schema cannot describe (a user that does not exist, a
duration past the 100-year bound, NUL in an alert label) with a 400 naming the field.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402 - after the importorskip
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.e2e.conftest import Remediator, Stack  # noqa: E402

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 40
"""Generated requests per operation: the 13 operations take about a minute."""

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection,
          ignored_auth, unsupported_method]


CONFIG = {"checks": {"negative_data_rejection": {
    # A body over server.max_body_bytes is refused with 413 before it is parsed.
    "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "415"],
}}}


class Target:
    """The server under test and the credential each operation needs."""

    def __init__(self, receiver: Remediator, operator_token: str) -> None:
        self.receiver = receiver
        self.operator_token = operator_token

    def headers_for(self, path: str) -> dict[str, str]:
        token = self.receiver.token if path == "/api/v1/alerts" else self.operator_token
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def fuzz_target(stack: Stack) -> Iterator[Target]:
    operator_token = f"fuzz-op-{uuid.uuid4().hex}"
    config = stack.receiver_config(stack.database(), rules=[], targets={})
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["people"]["users"]["fuzz-operator"] = {"groups": []}
    data["people"]["api_tokens"]["fuzz"] = {"token": "env:FUZZ_OPERATOR_TOKEN",
                                           "user": "fuzz-operator", "scope": "operator"}
    Path(config).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    stack.env["FUZZ_OPERATOR_TOKEN"] = operator_token
    receiver = stack.serve(config, worker=False)
    yield Target(receiver, operator_token)
    stack.assert_clean_logs()


@pytest.fixture
def api_schema(fuzz_target: Target) -> Any:
    schema = schemathesis.openapi.from_url(fuzz_target.receiver.url + "/api/v1/openapi.json",
                                           config=schemathesis.Config.from_dict(CONFIG))
    schema.config.update(base_url=fuzz_target.receiver.url, request_timeout=10)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Any, fuzz_target: Target) -> None:
    """Generated requests to every operation get no 5xx and answers that match the schema."""
    case.call_and_validate(headers=fuzz_target.headers_for(case.operation.path), checks=CHECKS)
