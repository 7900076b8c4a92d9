"""`lref demo`: OpenSearch (started, or reused when one already answers), the reranker with the
configured judge, a catalog, the connector and pipelines, and the demo store on localhost.
Ctrl-C (or SIGTERM) stops exactly what this command started and leaves what it reused running."""

from __future__ import annotations

import contextlib
import hashlib
import signal
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Optional

import httpx
import typer
from rich.console import Console

from engine.access import NO_ACCESS, access_from, ca_cert_option, password_file_option, user_option
from engine.install import DEFAULT_READ_TIMEOUT_S
from reranker.console import bind_problem, fail, stop_process
from reranker.errors import LrefError

from .app import StoreConfig, create_store_app, model_name

out = Console(soft_wrap=True)  # log lines stay whole lines, whatever the terminal's width

SAMPLE = "sample"
HOME_DEPOT = Path("..") / "shared" / "data" / "homedepot" / "products.jsonl"  # relative to the repo; never committed
REPO = Path(__file__).resolve().parents[2]


class DemoError(LrefError, RuntimeError):
    pass


# ---- inputs ----------------------------------------------------------------------------------

def sample_catalog() -> Path:
    return Path(str(resources.files("apps.store").joinpath("sample_catalog.jsonl")))


def choose_catalog(catalog: str | None) -> tuple[Path, str]:
    """(path, name shown on the page): --catalog PATH, --catalog sample, else Home Depot's products
    when ../shared/data is there (next to the repo or the working dir), else the sample catalog."""
    if catalog == SAMPLE:
        return sample_catalog(), "lref sample catalog"
    if catalog:
        return Path(catalog), Path(catalog).name
    for base in (REPO, Path.cwd()):
        if (base / HOME_DEPOT).is_file():
            return (base / HOME_DEPOT).resolve(), "Home Depot products"
    return sample_catalog(), "lref sample catalog"


def judge_args(judge: dict) -> list[str]:
    """The judge options back as `lref serve` arguments (options left at None are left out)."""
    args: list[str] = []
    for name, value in judge.items():
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def catalog_fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ---- the parts it starts -----------------------------------------------------------------------

class Reranker:
    """`lref serve` as a child process in its own session, so a Ctrl-C in the terminal reaches only
    the demo, which then stops the reranker itself, after the store."""

    def __init__(self, port: int, judge: dict) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = Path(tempfile.gettempdir()) / f"lref-demo-reranker-{port}.log"
        cmd = [sys.executable, "-m", "lref", "serve", "--host", "127.0.0.1", "--port", str(port), *judge_args(judge)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def wait_ready(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DemoError(f"the reranker exited with code {self.proc.returncode}: {self.last_error()} (log: {self.log_path})")
            try:
                health = httpx.get(self.url + "/health", timeout=2)
                if health.status_code == 200:
                    return health.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise DemoError(f"the reranker was not ready after {timeout_s:.0f}s (log: {self.log_path})")

    def last_error(self) -> str:
        """`lref serve` ends with its own one-line "error: ..." when it fails; uvicorn's lines come before."""
        lines = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        return (errors or lines or ["no output"])[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            out.print(f"stopping the reranker at {self.url}")
        stop_process(self.proc)


def node_up_or_reused(settings, started: contextlib.ExitStack, timeout_s: float) -> str:
    """Reuse whatever answers at the node's URL (ours or not); otherwise start one and register
    its stop. Returns the node's URL."""
    from engine.node import add_user, down, http_json, read_pid, start, wait_healthy

    if read_pid(settings) is not None:
        wait_healthy(settings, timeout_s)
        out.print(f"reusing OpenSearch at {settings.url} (left running on exit)")
        started.callback(add_user(settings, "lref demo").unlink, missing_ok=True)
    elif http_json(settings.url) is not None:
        out.print(f"reusing OpenSearch at {settings.url} (left running on exit)")
    else:
        def stop_node() -> None:
            out.print(f"stopping OpenSearch at {settings.url}")
            down(settings)

        started.callback(stop_node)
        start(settings, timeout_s=timeout_s, log=out.print)
        started.callback(add_user(settings, "lref demo").unlink, missing_ok=True)  # runs before stop_node
        out.print(f"OpenSearch is up at {settings.url}")
    return settings.url


def load_once(client, path: Path, index: str) -> tuple[int, bool]:
    """Index the catalog unless this index already holds exactly this file (a fingerprint in the
    index mapping's _meta). Returns (product count, loaded now)."""
    from engine.catalog import load

    fingerprint = catalog_fingerprint(path)
    if client.indices.exists(index=index):
        meta = client.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {})
        if meta.get("lref_catalog") == fingerprint:
            return client.count(index=index)["count"], False
    count = load(client, path, index=index, recreate=True)
    client.indices.put_mapping(index=index, body={"_meta": {"lref_catalog": fingerprint, "source": path.name}})
    return count, True


class _StoreServer:
    """uvicorn, announcing the URL once it listens."""

    def __init__(self, app, host: str, port: int) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            async def startup(self, sockets=None) -> None:
                await super().startup(sockets)
                if self.started:
                    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
                    out.print(f"\n[bold]lref demo store: http://{shown}:{port}/[/]   (Ctrl-C stops what `lref demo` started)\n")

        self.server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))

    def run(self) -> None:
        self.server.run()


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


# ---- the command ---------------------------------------------------------------------------------

def demo(
    judge: dict,
    port: int = typer.Option(8080, help="the store's port"),
    host: str = typer.Option("127.0.0.1", help="the store's bind address (loopback by default)"),
    catalog: Optional[str] = typer.Option(None, help="catalog JSONL, or 'sample' (default: ../shared/data/homedepot/products.jsonl when present, else the sample catalog)"),
    index: str = typer.Option("lref-demo", help="index the catalog is loaded into (reloaded only when the file changed)"),
    size: int = typer.Option(20, help="hits per search (the page can change it)"),
    opensearch_port: int = typer.Option(9200, help="port of the local node to reuse or start on 127.0.0.1"),
    transport_port: int = typer.Option(9300, help="transport port of a node it starts"),
    opensearch_state: Optional[Path] = typer.Option(None, help="state dir of the local node (as `lref opensearch up --state`)"),
    heap: Optional[str] = typer.Option(None, help="JVM heap of a node it starts (default: a quarter of RAM, 1g to 4g)"),
    opensearch_url: Optional[str] = typer.Option(None, help="use this OpenSearch instead of a local node"),
    user: Optional[str] = user_option, password_file: Optional[Path] = password_file_option,
    ca_cert: Optional[Path] = ca_cert_option,
    reranker_port: int = typer.Option(8000, help="port for the reranker it starts"),
    reranker_url: Optional[str] = typer.Option(None, help="use this running reranker instead of starting one (judge options then unused)"),
    read_timeout_s: int = typer.Option(DEFAULT_READ_TIMEOUT_S, help="connector read timeout in seconds; past it a search keeps BM25 order"),
    timeout: float = typer.Option(900, help="seconds to wait for the node, and for the reranker to load its model"),
) -> None:
    """Start (or reuse) OpenSearch, start the reranker, load a catalog, install the pipeline and serve
    the demo store (BM25 and LLM-tiered results side by side) on localhost. Ctrl-C stops what it started."""
    from engine.client import connect
    from engine.install import InstallSpec, install
    from opensearchpy.exceptions import OpenSearchException

    from reranker.api import build_config

    from engine.catalog import check_index_name, read_catalog
    from engine.node import NodeSettings, default_heap, heap_problem

    # Everything that can be checked is checked before anything starts.
    for option, value in (("--port", port), ("--opensearch-port", opensearch_port),
                          ("--transport-port", transport_port), ("--reranker-port", reranker_port)):
        if not 1 <= value <= 65535:
            fail(f"{option} must be a port number (1-65535), got {value}")
    if not 1 <= size <= 100:
        fail(f"--size must be between 1 and 100, got {size}")
    if not 0 < timeout < float("inf"):  # nan fails this too
        fail(f"--timeout must be a positive number of seconds, got {timeout}")
    if heap is not None and (problem := heap_problem(heap)):
        fail(f"--heap: {problem}")
    check_index_name(index)
    config = build_config(**judge)
    path, catalog_name = choose_catalog(catalog)
    products = len(read_catalog(path))
    if problem := bind_problem(host, port):
        fail(f"the store cannot listen on {host}:{port}: {problem} (choose another --host / --port)")
    if reranker_url is None and (problem := bind_problem("127.0.0.1", reranker_port)):
        fail(f"the reranker cannot listen on port {reranker_port}: {problem} (choose --reranker-port, or pass "
             "a running reranker with --reranker-url)")
    settings = NodeSettings(http_port=opensearch_port, transport_port=transport_port, heap=heap or default_heap(),
                            state=opensearch_state)
    access = access_from(user, password_file, ca_cert)
    if opensearch_url is None and access != NO_ACCESS:
        fail("--user, --password-file and --ca-cert go with --opensearch-url (a local node started with "
             "--secure is reached as its admin without them)")
    access = access if opensearch_url else settings.access
    spec = InstallSpec(opensearch_url=opensearch_url or settings.url,
                       reranker_url=reranker_url or f"http://127.0.0.1:{reranker_port}",
                       read_timeout_s=read_timeout_s, access=access)  # min tier and scheme: the reranker's /health
    spec.validate()

    serving = False
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM cleans up like Ctrl-C
    try:
        with contextlib.ExitStack() as started:
            try:
                if opensearch_url is None:
                    node_up_or_reused(settings, started, timeout)
                if reranker_url is None:
                    out.print(f"starting the reranker on {spec.reranker_url} (model {model_name(config.judge_dir or config.model)})")
                    reranker = Reranker(reranker_port, judge)
                    started.callback(reranker.stop)
                    reranker.wait_ready(timeout)
                client = connect(spec.opensearch_url, access)
                out.print(f"catalog: {path} ({products} products)")
                count, loaded = load_once(client, path, index)
                out.print(f"{'indexed' if loaded else 'already indexed:'} {count} products in {index}")
                for what, ident, action in install(spec, log=lambda line: out.print(f"  {line}")):
                    out.print(f"  {what} {ident}: {action}")
                store = create_store_app(StoreConfig(
                    opensearch_url=spec.opensearch_url, reranker_url=spec.reranker_url, index=index,
                    catalog_name=catalog_name, default_size=size, timeout_s=read_timeout_s + 30, opensearch_access=access,
                ))
                serving = True
                _StoreServer(store, host, port).run()
            except (LrefError, OpenSearchException) as exc:
                started.close()  # stop what was started first, then the one-line error
                fail(str(exc))
    except KeyboardInterrupt:
        out.print("stopped")
        if not serving:
            raise typer.Exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous_term)
