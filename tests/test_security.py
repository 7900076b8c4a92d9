"""A secured 2.19.1 node (`lref opensearch up --secure`): TLS with the CA made for its state dir,
HTTP basic auth, an admin and a read-only user. The pipeline itself is tested on this node with
the rest of tests/test_opensearch.py; here: what is refused, and how it is said."""

from __future__ import annotations

import http.server
import json
import stat
import threading

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from stack import lref
from engine import security
from engine.access import Access
from apps.store.app import StoreConfig, create_store_app


def one_line_error(done, *needles: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    error = done.stderr.strip()
    assert "Traceback" not in done.stderr and len(error.splitlines()) == 1, done.stderr
    for needle in needles:
        assert needle in error, error
    return error


@pytest.fixture(scope="module")
def secured(opensearch_node_secure):
    return opensearch_node_secure


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A CA of the same kind that did not sign the node's certificate."""
    folder = tmp_path_factory.mktemp("other") / "security"
    security.ensure_identity(folder)
    return folder / "ca.pem"


def test_anonymous_requests_get_401_and_our_commands_say_so(secured):
    ca = str(secured.security_dir / "ca.pem")
    assert httpx.get(secured.url, verify=security.access(secured.security_dir).ssl_context()).status_code == 401
    done = lref("opensearch", "status", "--opensearch", secured.url, "--ca-cert", ca)
    one_line_error(done, "refused the credentials (HTTP 401)", "--user")
    wrong = secured.security_dir / "admin.password"
    done = lref("opensearch", "install", "--opensearch", secured.url, "--user", security.SEARCH_USER,
                "--password-file", str(wrong), "--ca-cert", ca)  # the admin's password for the other user
    one_line_error(done, "HTTP 401")


def test_keys_and_passwords_are_the_owners_alone_and_no_demo_identity_is_used(secured):
    keys = secured.security_dir
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for name in ("ca.key", "node.key", "admin.key", "admin.password", "lref-search.password"):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600, name
    conf = secured.state / "config"
    assert not [p.name for p in conf.glob("*.pem") if p.name in ("esnode.pem", "kirk.pem", "root-ca.pem")]
    users = yaml.safe_load((conf / "opensearch-security" / "internal_users.yml").read_text())
    assert set(users) - {"_meta"} == {security.ADMIN_USER, security.SEARCH_USER}  # none of the plugin's demo users
    # The certificate the node serves is signed by this state dir's CA and names 127.0.0.1.
    info = httpx.get(secured.url, **secured.http()).json()
    assert info["version"]["number"] == secured.version


@pytest.mark.parametrize("command", ["status", "install", "load", "audit"])
def test_a_wrong_ca_is_a_one_line_tls_error(secured, other_ca, command, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"query": "drill", "product_id": "p0", "title": "drill", "level": 4}) + "\n")
    args = {"status": ["opensearch", "status", "--opensearch", secured.url],
            "install": ["opensearch", "install", "--opensearch", secured.url],
            "load": ["opensearch", "load", str(rows), "--opensearch", secured.url, "--index", "never-made"],
            "audit": ["audit", str(rows), "--opensearch", secured.url, "--out", str(tmp_path / "report")]}[command]
    admin = secured.as_user(security.ADMIN_USER)[:4]  # user and password, not the CA
    one_line_error(lref(*args, *admin, "--ca-cert", str(other_ca)),
                   f"TLS to {secured.url} failed", "certificate", f"does not chain to --ca-cert {other_ca}")
    one_line_error(lref(*args, *admin), "TLS", "pass the CA that signed the cluster's certificate with --ca-cert")
    assert httpx.head(f"{secured.url}/never-made", **secured.http()).status_code == 404


def test_the_read_only_user_cannot_create_connectors_or_write(secured, tmp_path):
    search_user = secured.as_user(security.SEARCH_USER)
    connector = {"name": "intruder", "description": "x", "protocol": "http", "version": 1,
                 "credential": {"api_key": "k"}, "parameters": {},
                 "actions": [{"action_type": "predict", "method": "POST", "url": "http://127.0.0.1:9/x",
                              "request_body": "{}"}]}
    refused = httpx.post(f"{secured.url}/_plugins/_ml/connectors/_create", json=connector,
                         **secured.http(security.SEARCH_USER))
    assert refused.status_code == 403 and "create_connector" in refused.text
    done = lref("opensearch", "install", "--opensearch", secured.url, *search_user)
    one_line_error(done, "no permissions", "HTTP 403")
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(json.dumps({"product_id": "p0", "title": "drill"}) + "\n")
    done = lref("opensearch", "load", str(catalog), "--opensearch", secured.url, "--index", "never-made", *search_user)
    one_line_error(done, "loading into never-made", "HTTP 403")
    assert httpx.head(f"{secured.url}/never-made", **secured.http()).status_code == 404
    # What it may do: read the cluster's state, as `status` does.
    report = json.loads(lref("opensearch", "status", "--opensearch", secured.url, *search_user).stdout)
    assert report["running"] and "opensearch-security" in report["plugins"] and report["user"] == security.SEARCH_USER


class HeaderRecorder(http.server.BaseHTTPRequestHandler):
    """A stand-in reranker /health on a real socket that keeps the headers it was sent."""

    seen: list[dict] = []

    def do_GET(self) -> None:
        HeaderRecorder.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b'{"model": "recorder"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_the_store_reaches_a_secured_cluster_and_keeps_its_password_from_the_reranker(secured):
    recorder = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HeaderRecorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    reranker_url = f"http://127.0.0.1:{recorder.server_address[1]}"
    try:
        for access, version in ((security.access(secured.security_dir, security.SEARCH_USER), secured.version),
                                (Access(ca_cert=secured.security_dir / "ca.pem"), None)):  # no user: 401
            config = StoreConfig(opensearch_url=secured.url, reranker_url=reranker_url, index="never-made",
                                 opensearch_access=access)
            with TestClient(create_store_app(config)) as client:
                info = client.get("/api/info").json()
            assert info["opensearch"] == version and info["model"] == "recorder"
    finally:
        recorder.shutdown()
    assert len(HeaderRecorder.seen) == 2 and not [h for h in HeaderRecorder.seen if "authorization" in h]


@pytest.mark.parametrize("args, message", [
    (["--user", "admin"], "--user admin needs its password"),
    (["--password-file", "/no/such/file"], "cannot read the password file"),
    (["--password-file", "TEXT"], "a password was given but no user"),
    (["--user", "a:b", "--password-file", "TEXT"], "cannot hold ':'"),
    (["--ca-cert", "/no/such/ca.pem"], "--ca-cert /no/such/ca.pem: no such file"),
    (["--ca-cert", "TEXT"], "is not a PEM certificate"),
])
def test_bad_access_options_are_one_line_before_any_connection(args, message, tmp_path):
    text = tmp_path / "text"
    text.write_text("one line\n")
    args = [str(text) if a == "TEXT" else a for a in args]
    one_line_error(lref("opensearch", "status", "--opensearch", "https://127.0.0.1:9", *args), message)


def test_a_password_is_never_sent_in_clear_beyond_loopback(tmp_path):
    password = tmp_path / "pw"
    password.write_text("x\n")
    done = lref("opensearch", "status", "--opensearch", "http://search.example:9200", "--user", "u",
                "--password-file", str(password))
    one_line_error(done, "unencrypted", "use https://")


def test_secure_needs_a_line_with_the_security_plugin_pinned(tmp_path):
    done = lref("opensearch", "up", "--secure", "--version", "3.6.0", "--state", str(tmp_path / "s"), "--port", "9")
    one_line_error(done, "no opensearch-security 3.6.0 is pinned", "--version 2.19.1")
    assert not (tmp_path / "s").exists()
