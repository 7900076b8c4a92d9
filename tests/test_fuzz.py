"""Fuzzing the reranker through its own OpenAPI spec: schemathesis generates valid (positive) and
invalid (negative) requests for every operation the running service publishes and sends them over
real HTTP to a `lref serve` process with the tiny judge. Nothing may answer 5xx, and every error
must be a JSON 4xx {"error": ...}.

The cases come from schemathesis' Hypothesis strategies (`APIOperation.as_strategy`) inside an
ordinary test: its pytest loader for fixtures (`schemathesis.pytest.from_fixture`) does not run
under pytest 9 (it sets a node attribute pytest 9 no longer has)."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from schemathesis import Response
from hypothesis import HealthCheck, Phase, given, settings

from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, negative_data_rejection, response_schema_conformance, status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
MAX_EXAMPLES = 40  # per operation and mode: the whole fuzz stays well under a minute


def assert_no_5xx_and_json_errors(response: Response, label: str) -> None:
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]  # lowercase keys, list values
        assert content_type.startswith("application/json"), f"{label}: {response.text[:300]}"
        error = response.json()
        assert isinstance(error, dict) and isinstance(error.get("error"), str) and error["error"], f"{label}: {error}"
        assert "Traceback" not in response.text


def short_reasoning(case):
    """Valid classify requests may ask for up to 256 reasoning tokens per document, generated one
    document after another: correct, but on a shared 2-core CPU that is minutes per case. The
    fuzz keeps every other part of the request and asks for at most 4 tokens."""
    if isinstance(case.body, dict) and case.body.get("reasoning") is True:
        case.body["max_reasoning_tokens"] = min(case.body.get("max_reasoning_tokens") or 4, 4)
    return case


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_5xx_and_every_error_is_json_4xx(server, mode):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/rerank", "POST /v1/classify", "GET /health", "GET /metrics"} <= labels
    session = requests.Session()
    sent: dict[str, list[int]] = {}
    for operation in operations:
        if mode is schemathesis.GenerationMode.NEGATIVE and not operation.body:
            continue  # nothing to make invalid (no body, no parameters)

        cases = operation.as_strategy(generation_mode=mode)
        if mode is schemathesis.GenerationMode.POSITIVE:
            cases = cases.map(short_reasoning)

        # No shrinking: a failure still prints its case (as curl), and the time stays bounded.
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=cases)
        def fuzz(case):
            response = case.call(base_url=server.url, session=session, timeout=60)
            sent.setdefault(operation.label, []).append(response.status_code)
            assert_no_5xx_and_json_errors(response, f"{case.method} {case.formatted_path} ({mode.value})")
            # and schemathesis' own checks: documented status codes and content types, responses
            # that match their schema, invalid data refused
            case.validate_response(response, checks=CHECKS)

        fuzz()
    print({label: (len(codes), sorted(set(codes))) for label, codes in sent.items()})
    for label in ("POST /v1/rerank", "POST /v1/classify"):
        assert len(sent[label]) >= MAX_EXAMPLES // 2
        if mode is schemathesis.GenerationMode.POSITIVE:
            assert 200 in sent[label], f"no valid {label} request reached the model"
