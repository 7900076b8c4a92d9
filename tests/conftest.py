from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from engine import artifacts  # noqa: E402
from reranker.console import stop_process  # noqa: E402
from tiny import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-judge"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports that are free on 127.0.0.1 now (a cluster's members)."""
    from reranker.console import bind_problem

    for _ in range(200):
        first = free_port()
        if first + count <= 65535 and all(bind_problem("127.0.0.1", first + i) is None for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def post(server, path, body=None, **kw) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60, **kw)


def assert_json_error(resp: httpx.Response, status: int) -> str:
    """The response is a JSON error with this status and a message (returned); no traceback."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in resp.text
    return body["error"]


def listening_addresses(pid: int) -> set[str]:
    """The IP addresses a process listens on (TCP), as the kernel reports them; an IPv4-mapped
    IPv6 address (a JVM's ::ffff:127.0.0.1) as the IPv4 address it stands for."""
    import ipaddress

    import psutil

    listening = {ipaddress.ip_address(c.laddr.ip) for c in psutil.Process(pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN}
    return {str(getattr(ip, "ipv4_mapped", None) or ip) for ip in listening}


def metric(url: str, sample: str) -> float:
    """One sample of a Prometheus /metrics page, e.g. 'lref_requests_total{endpoint="/v1/rerank",status="401"}'."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", httpx.get(f"{url}/metrics", timeout=10).text, re.M)
    return float(match.group(1)) if match else 0.0


class Server:
    """A real `lref serve` process on loopback (or `lref balance`, which answers /health the same way)."""

    def __init__(self, args: list[str], env: dict | None = None, port: int | None = None,
                 command: str = "serve") -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "lref", command, "--port", str(self.port), *args]
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"lref-{command}-{self.port}.log", "w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(self.output())

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=20)
        self.log.close()


@pytest.fixture(scope="session")
def server(tiny_model_dir):
    srv = Server(["--model", str(tiny_model_dir), "--max-wait-ms", "30"])  # default limits (1000 documents)
    srv.wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def keyed_server(tiny_model_dir, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("key") / "key"
    key_file.write_text("s3cret-key\n")
    srv = Server(["--model", str(tiny_model_dir), "--api-key-file", str(key_file)])
    srv.wait_ready()
    yield srv
    srv.stop()


def _node(version: str, secure: bool = False, nodes: int = 1):
    from stack import TestNode

    node = TestNode(free_ports(nodes), free_ports(nodes), version, secure, nodes)
    started = node.up()
    if started.returncode != 0:
        node.down()
        pytest.fail(f"lref opensearch up {node.version} failed:\n{started.stdout}\n{started.stderr}")
    return node


@pytest.fixture(scope="session")
def opensearch_node():
    """A real OpenSearch (ML Commons, k-NN, neural-search, our tier filter) on 127.0.0.1, started
    once per session through `lref opensearch up`."""
    node = _node(artifacts.DEFAULT_VERSION)
    yield node
    node.down()


# The 2.x line many production clusters still run: the same plugins and tier filter, built from the
# same sources for 2.19.1 (the newest 2.x with all four plugins and opensearch-security on Maven).
SECOND_LINE = "2.19.1"


@pytest.fixture(scope="session")
def opensearch_node_2x():
    node = _node(SECOND_LINE)
    yield node
    node.down()


@pytest.fixture(scope="session")
def opensearch_cluster():
    """Three 3.6.0 nodes of one cluster (`up --nodes 3`, 1 GiB heap each)."""
    node = _node(artifacts.DEFAULT_VERSION, nodes=3)
    yield node
    node.down()


@pytest.fixture(scope="session")
def opensearch_node_secure():
    """2.19.1 with the security plugin (`up --secure`): TLS, an admin and a read-only search user."""
    node = _node(SECOND_LINE, secure=True)
    yield node
    node.down()
