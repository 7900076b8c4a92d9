"""`lref opensearch install`: ML Commons settings, the reranker connector, its model and the search
pipelines, created idempotently. A second run with the same inputs changes nothing; a changed
reranker URL, timeout or key updates the one connector in place (no duplicates)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

from engine.access import NO_ACCESS, Access
from engine.client import EngineError, call, connect, definition, http_url, reason
from engine.policy import agreed, served_policy
from engine.smoke import predict_check
from reranker.core import TIERS, load_scheme

CONNECTOR_NAME = "lref-reranker"
MODEL_NAME = "lref-reranker"
REQUIRED_PLUGINS = ("opensearch-ml", "opensearch-neural-search", "lref-tier-filter")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


# One default for `lref opensearch install` and `lref demo`, so that one does not silently
# rewrite the other's connector with a different timeout.
DEFAULT_READ_TIMEOUT_S = 10


@dataclass
class InstallSpec:
    opensearch_url: str = "http://127.0.0.1:9200"
    reranker_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    # ML Commons reads client_config timeouts as whole seconds (its defaults are 30).
    connect_timeout_s: int = 2
    read_timeout_s: int = DEFAULT_READ_TIMEOUT_S
    document_fields: list[str] = field(default_factory=lambda: ["title"])
    # None: the running reranker's (its /health), else DEFAULT_MIN_TIER / four_level (engine/policy.py)
    min_tier: str | None = None
    scheme: str | None = None
    levels: tuple[str, ...] = ()  # the scheme's level names, best first, as the reranker reported them
    access: Access = NO_ACCESS  # user, password and CA for a secured cluster (connectors need its admin)

    def validate(self) -> None:
        if not http_url(self.opensearch_url):
            raise EngineError(f"OpenSearch URL must look like http(s)://host:port, got {self.opensearch_url!r}")
        if not http_url(self.reranker_url):
            raise EngineError(f"reranker URL must look like http://host:port, got {self.reranker_url!r}")
        for name in ("connect_timeout_s", "read_timeout_s"):
            if not 1 <= getattr(self, name) <= 600:
                raise EngineError(f"{name} must be between 1 and 600 seconds, got {getattr(self, name)}")
        if not self.document_fields or not all(FIELD_NAME.match(f) for f in self.document_fields):
            raise EngineError(f"document fields must be field names, got {self.document_fields!r}")
        if self.min_tier is not None and self.min_tier not in TIERS:
            raise EngineError(f"min tier must be one of {', '.join(TIERS)}, got {self.min_tier!r}")
        try:
            if self.scheme is not None:
                load_scheme(self.scheme)
        except Exception as exc:  # SchemeError or a bad file: one line either way
            raise EngineError(str(exc)) from exc

    @property
    def endpoint_regex(self) -> str:
        parts = urlsplit(self.reranker_url)
        return "^" + re.escape(f"{parts.scheme}://{parts.netloc}") + "/.*$"


# ---- the steps -------------------------------------------------------------------------------

def check_plugins(client: OpenSearch) -> None:
    present = {p["component"] for p in client.cat.plugins(format="json")}
    missing = [p for p in REQUIRED_PLUGINS if p not in present]
    if missing:
        raise EngineError(f"OpenSearch lacks plugin(s) {', '.join(missing)} (`lref opensearch up` installs them)")


def ensure_settings(client: OpenSearch, spec: InstallSpec) -> str:
    current = call(client, "GET", "/_cluster/settings", what="reading cluster settings")
    flat = json.dumps(current)
    persistent = current.get("persistent", {}).get("plugins", {}).get("ml_commons", {})
    trusted = persistent.get("trusted_connector_endpoints_regex", [])
    trusted = [trusted] if isinstance(trusted, str) else list(trusted)
    wanted = {
        "plugins.ml_commons.only_run_on_ml_node": "false",
        "plugins.ml_commons.connector.private_ip_enabled": "true",
        "plugins.ml_commons.trusted_connector_endpoints_regex": trusted + [spec.endpoint_regex]
        if spec.endpoint_regex not in trusted else trusted,
    }
    same = (
        persistent.get("only_run_on_ml_node") == "false"
        and persistent.get("connector", {}).get("private_ip_enabled") == "true"
        and spec.endpoint_regex in trusted
    )
    if same:
        return "unchanged"
    call(client, "PUT", "/_cluster/settings", {"persistent": wanted}, what="setting ML Commons cluster settings")
    return "updated" if "ml_commons" in flat else "created"


def connector_body(spec: InstallSpec) -> dict:
    body = definition("connector.json")
    action = body["actions"][0]
    action["url"] = spec.reranker_url.rstrip("/") + "/v1/rerank"
    body["client_config"].update(connection_timeout=spec.connect_timeout_s, read_timeout=spec.read_timeout_s)
    body["credential"] = {"api_key": spec.api_key or "none"}
    # The credential is stored encrypted, so a fingerprint (key hashed) tells whether anything changed.
    visible = {k: v for k, v in body.items() if k != "credential"}
    key_hash = hashlib.sha256((spec.api_key or "").encode()).hexdigest()
    body["parameters"]["lref_fingerprint"] = hashlib.sha256(
        (json.dumps(visible, sort_keys=True) + key_hash).encode()
    ).hexdigest()[:16]
    return body


def _search(client: OpenSearch, kind: str, name: str) -> list[dict]:
    query = {"query": {"match_phrase": {"name": name}}, "size": 100}
    try:
        found = client.transport.perform_request("POST", f"/_plugins/_ml/{kind}/_search", body=query)
    except TransportError as exc:
        if exc.status_code == 404:  # no ML index yet: nothing was ever created
            return []
        raise EngineError(f"searching ML {kind}: {reason(exc)}") from exc
    return [dict(h["_source"], _id=h["_id"]) for h in found["hits"]["hits"] if h["_source"].get("name") == name]


def ensure_connector(client: OpenSearch, spec: InstallSpec) -> tuple[str, str]:
    body = connector_body(spec)
    existing = _search(client, "connectors", CONNECTOR_NAME)
    if not existing:
        created = call(client, "POST", "/_plugins/_ml/connectors/_create", body, what="creating the connector")
        return created["connector_id"], "created"
    connector = existing[0]
    if connector.get("parameters", {}).get("lref_fingerprint") == body["parameters"]["lref_fingerprint"]:
        return connector["_id"], "unchanged"
    # A deployed model caches its connector: take it down, update in place, deploy again later.
    for model in _search(client, "models", MODEL_NAME):
        if model.get("connector_id") == connector["_id"]:
            undeploy(client, model["_id"])
    update = {k: v for k, v in body.items() if k != "name"}
    call(client, "PUT", f"/_plugins/_ml/connectors/{connector['_id']}", update, what="updating the connector")
    return connector["_id"], f"updated ({connector_changes(connector, body)})"


def connector_changes(old: dict, new: dict) -> str:
    """What an update changes, said in a few words (the key is stored encrypted: only its fingerprint differs)."""
    url = lambda body: (body.get("actions") or [{}])[0].get("url")  # noqa: E731
    changes = [f"url {url(old)} -> {url(new)}"] if url(old) != url(new) else []
    for key in ("connection_timeout", "read_timeout"):
        before, after = old.get("client_config", {}).get(key), new["client_config"][key]
        if before != after:
            changes.append(f"{key} {before} -> {after} s")
    return ", ".join(changes) or "API key or other settings"


def undeploy(client: OpenSearch, model_id: str) -> None:
    call(client, "POST", f"/_plugins/_ml/models/{model_id}/_undeploy", what="undeploying the model")


def _wait_deployed(client: OpenSearch, model_id: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = call(client, "GET", f"/_plugins/_ml/models/{model_id}").get("model_state")
        if state == "DEPLOYED":
            return
        if state == "DEPLOY_FAILED":
            break
        time.sleep(0.5)
    raise EngineError(f"model {model_id} did not deploy (state {state}); see the OpenSearch log")


def ensure_model(client: OpenSearch, connector_id: str) -> tuple[str, str]:
    ours = [m for m in _search(client, "models", MODEL_NAME) if m.get("connector_id") == connector_id]
    if not ours:
        body = {"name": MODEL_NAME, "function_name": "remote", "connector_id": connector_id,
                "description": "lref reranker (remote)"}
        created = call(client, "POST", "/_plugins/_ml/models/_register?deploy=true", body, what="registering the model")
        model_id = created.get("model_id") or _task_model(client, created["task_id"])
        _wait_deployed(client, model_id)
        return model_id, "created"
    model_id = ours[0]["_id"]
    if call(client, "GET", f"/_plugins/_ml/models/{model_id}").get("model_state") == "DEPLOYED":
        return model_id, "unchanged"
    call(client, "POST", f"/_plugins/_ml/models/{model_id}/_deploy", what="deploying the model")
    _wait_deployed(client, model_id)
    return model_id, "deployed"


def _task_model(client: OpenSearch, task_id: str) -> str:
    for _ in range(120):
        task = call(client, "GET", f"/_plugins/_ml/tasks/{task_id}")
        if task.get("model_id"):
            return task["model_id"]
        time.sleep(0.5)
    raise EngineError(f"model registration task {task_id} did not finish")


def pipeline_bodies(spec: InstallSpec, model_id: str) -> dict[str, dict]:
    names_worst_first = list(reversed(spec.levels or [lv.name for lv in load_scheme(spec.scheme or "four_level").levels]))
    bodies = definition("pipelines.json")
    for name, body in bodies.items():
        for processor in body["response_processors"]:
            if "rerank" in processor:
                processor["rerank"]["ml_opensearch"]["model_id"] = model_id
                processor["rerank"]["context"]["document_fields"] = list(spec.document_fields)
            if "lref_tier" in processor:
                processor["lref_tier"]["level_names"] = names_worst_first
                if name == "lref-rerank":
                    processor["lref_tier"]["min_tier"] = spec.min_tier
    return bodies


def ensure_pipelines(client: OpenSearch, spec: InstallSpec, model_id: str) -> dict[str, str]:
    actions = {}
    for name, body in pipeline_bodies(spec, model_id).items():
        try:
            current = client.transport.perform_request("GET", f"/_search/pipeline/{name}").get(name)
        except TransportError as exc:
            if exc.status_code != 404:
                raise EngineError(f"reading pipeline {name}: {reason(exc)}") from exc
            current = None
        if current == body:
            actions[name] = "unchanged"
            continue
        call(client, "PUT", f"/_search/pipeline/{name}", body, what=f"creating pipeline {name}")
        actions[name] = "updated" if current else "created"
    return actions


def install(spec: InstallSpec, log: Callable[[str], None] = print) -> list[tuple[str, str, str]]:
    """Returns (what, id, action) rows; raises EngineError with a one-line reason."""
    spec.validate()
    spec, policy_source = agreed(spec, served_policy(spec.reranker_url, spec.api_key))
    log(f"tier policy of the reranker at {spec.reranker_url}: {policy_source}")
    client = connect(spec.opensearch_url, spec.access)
    check_plugins(client)
    rows = [("ML Commons settings", "persistent", ensure_settings(client, spec))]
    connector_id, action = ensure_connector(client, spec)
    rows.append(("connector", connector_id, action))
    model_id, model_action = ensure_model(client, connector_id)
    rows.append(("model", model_id, model_action))
    for name, pipeline_action in ensure_pipelines(client, spec, model_id).items():
        rows.append(("search pipeline", name, pipeline_action))
    if spec.levels:  # the reranker answered /health, so a search through the connector must reach it too
        log(predict_check(client, model_id))
    else:
        log("predict check skipped: the reranker is not up (install again once it is, to check the connector)")
    return rows
