"""The one OpenSearch client of lref: connect to a node (it must answer as OpenSearch, certificates
checked), call its REST API with refusals turned into one-line errors, and read the JSON definitions
this package installs (opensearch/, packaged as lref_opensearch)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import SerializationError, SSLError, TransportError

from engine import DEFINITIONS
from engine.access import NO_ACCESS, Access, tls_problem
from reranker.errors import LrefError


class EngineError(LrefError, RuntimeError):
    """OpenSearch refused, is unreachable, or an input for it is unusable: one line, exit code 2."""


def definition(name: str) -> dict:
    text = (DEFINITIONS / name).read_text()
    data = json.loads(text)
    data.pop("_comment", None)
    return data


def http_url(url: str) -> bool:
    """Whether `url` is http(s)://host[:port][/path] with a usable port, and no query or fragment
    (an endpoint's URL gets paths appended)."""
    try:
        parts = urlsplit(url)
        return (parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port is None or parts.port > 0)
                and not parts.query and not parts.fragment)
    except ValueError:  # a port that is not a number or out of range, a broken IPv6 literal
        return False


def connect(url: str, access: Access = NO_ACCESS) -> OpenSearch:
    """A client for the OpenSearch node at `url`, which must answer as one (certificates checked)."""
    if not http_url(url):
        raise EngineError(f"OpenSearch URL must look like http(s)://host:port, got {url!r}")
    if url.startswith("http:") and access.user is not None and urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise EngineError(f"--user would send its password unencrypted to {url}: use https://")
    client = OpenSearch(url, timeout=30, **access.opensearch_kwargs())
    try:
        info = client.info()
    except SSLError as exc:
        hint = (f"its certificate does not chain to --ca-cert {access.ca_cert}" if access.ca_cert
                else "pass the CA that signed the cluster's certificate with --ca-cert")
        raise EngineError(f"TLS to {url} failed: {tls_problem(exc) or exc.error} ({hint})") from exc
    except OSConnectionError as exc:
        raise EngineError(f"cannot reach OpenSearch at {url} (is it up? `lref opensearch up`)") from exc
    except TransportError as exc:
        if exc.status_code == 401:
            raise EngineError(f"{url} refused the credentials (HTTP 401): pass --user and --password-file "
                              "of a user of that cluster") from exc
        if exc.status_code == 403:
            raise EngineError(f"{url}: user {access.user} may not read the cluster (HTTP 403)") from exc
        raise EngineError(f"{url} is not an OpenSearch node (HTTP {exc.status_code})") from exc
    except SerializationError as exc:  # an HTTP server that does not answer JSON
        raise EngineError(f"{url} is not an OpenSearch node (its answer is not JSON)") from exc
    if not isinstance(info, dict) or info.get("version", {}).get("distribution") != "opensearch":
        raise EngineError(f"{url} is not an OpenSearch node")
    return client


def call(client: OpenSearch, method: str, path: str, body: dict | None = None, what: str = "") -> dict:
    try:
        return client.transport.perform_request(method, path, body=body)
    except TransportError as exc:
        raise EngineError(f"{what or path}: {reason(exc)}") from exc


def reason(exc: TransportError) -> str:
    info = exc.info if isinstance(exc.info, dict) else {}
    error = info.get("error")
    if isinstance(error, dict):
        return f"{error.get('reason') or error.get('type')} (HTTP {exc.status_code})"
    # A HEAD request's refusal has no body: say what the status means.
    said = error or (exc.error if exc.error not in (None, "", "N/A") else None)
    return f"{said or {401: 'not authenticated', 403: 'this user may not do that'}.get(exc.status_code, 'refused')} (HTTP {exc.status_code})"
