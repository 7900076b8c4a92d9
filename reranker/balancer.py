"""`lref balance`: HAProxy in front of several `lref serve` replicas, so that the connector points
at one address and reranking capacity grows by adding processes. Replicas are stateless; HAProxy
checks each one's /health (503 while its model loads) and sends requests only to ready ones.

A replica that dies takes its in-flight requests with it; HAProxy retries those (and new ones that
find it refusing connections) on another replica before its health checks have marked it down, so
a search in that window is reranked by the survivor; only when no replica can answer in time does
the connector's read timeout cut in and the engine keep the original order.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import LrefError


class BalancerError(LrefError, ValueError):
    pass


@dataclass(frozen=True)
class Balancer:
    replicas: tuple[str, ...]  # host:port of each `lref serve`
    host: str = "127.0.0.1"
    port: int = 8000
    check_interval_ms: int = 1000
    timeout_s: int = 120  # longer than any connector read timeout: the connector decides when to give up


def replica_address(url: str) -> str:
    """host:port of a replica given as http://host:port or host:port."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or not port or parts.path not in ("", "/") or parts.query:
        raise BalancerError(f"--replica must look like http://host:port (an `lref serve`), got {url!r}")
    return f"{parts.hostname}:{port}"


def haproxy_config(balancer: Balancer) -> str:
    if not balancer.replicas:
        raise BalancerError("give at least one --replica")
    servers = "\n".join(f"    server replica-{i} {address} check" for i, address in enumerate(balancer.replicas, 1))
    return f"""# Written by `lref balance`: HAProxy in front of {len(balancer.replicas)} `lref serve` replica(s).
global
    maxconn 1024

defaults
    mode http
    timeout connect 1s
    timeout client {balancer.timeout_s}s
    timeout server {balancer.timeout_s}s
    # A request a dying replica dropped (connection refused or reset before an answer, or 503 while
    # a model loads) is sent again, to another replica: rerank calls change nothing.
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response 503
    option http-buffer-request

frontend rerank
    bind {balancer.host}:{balancer.port}
    default_backend replicas

backend replicas
    balance leastconn
    option httpchk GET /health
    http-check expect status 200
    # A replica whose name does not resolve yet (a container still starting) waits in maintenance.
    default-server inter {balancer.check_interval_ms}ms fall 2 rise 1 init-addr last,libc,none
{servers}
"""


def find_haproxy() -> str:
    found = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)
    if not found:
        raise BalancerError("haproxy is not installed: `make setup` installs it (Debian package haproxy)")
    return found


def check_config(path: Path) -> None:
    done = subprocess.run([find_haproxy(), "-c", "-q", "-f", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise BalancerError(f"haproxy refused {path}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
