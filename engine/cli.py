"""`lref opensearch up|down|status|install|load|lock|plugin`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from engine.install import DEFAULT_READ_TIMEOUT_S
from reranker.console import api_key_from, check_port, fail
from reranker.core import DEFAULT_MIN_TIER

from . import artifacts, security
from .access import NO_ACCESS, access_from, ca_cert_option, password_file_option, user_option
from .node import NodeSettings, default_base, default_heap, heap_problem

opensearch_app = typer.Typer(help="A local OpenSearch node and the lref connector/pipelines in it.", no_args_is_help=True)
out = Console()

DEFAULT_URL = "http://127.0.0.1:9200"


def _settings(port: int, transport_port: int, heap: Optional[str], version: str, state: Optional[Path],
              secure: Optional[bool] = None) -> NodeSettings:
    return NodeSettings(version=version, http_port=port, transport_port=transport_port,
                        heap=heap or default_heap(), state=state, secure=secure)


def _access(user: Optional[str], password_file: Optional[Path], ca_cert: Optional[Path]):
    return access_from(user, password_file, ca_cert)


def check_version(version: str) -> None:
    if not re.fullmatch(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", version):  # it becomes part of Maven URLs and paths
        fail(f"version must look like 3.6.0, got {version!r}")


_port = typer.Option(9200, help="HTTP port on 127.0.0.1")
_tport = typer.Option(9300, help="transport port on 127.0.0.1")
_version = typer.Option(artifacts.DEFAULT_VERSION, help="OpenSearch version (all artefacts from Maven Central)")
_state = typer.Option(None, help="directory for this node's config, data and logs")


@opensearch_app.command()
def up(
    port: int = _port, transport_port: int = _tport, state: Optional[Path] = _state,
    version: Optional[str] = typer.Option(None, help=f"OpenSearch version, all artefacts from Maven Central "
                                                     f"(default {artifacts.DEFAULT_VERSION}; {security.SECURE_VERSION} with --secure)"),
    heap: Optional[str] = typer.Option(None, help="JVM heap, e.g. 2g (default: a quarter of RAM, 1g to 4g)"),
    timeout: float = typer.Option(240, help="seconds to wait for a healthy cluster"),
    secure: bool = typer.Option(False, help="the security plugin: TLS with a CA made for this state dir, an admin "
                                            "and a read-only user with generated passwords (files under STATE/security)"),
    nodes: int = typer.Option(1, help="nodes of one cluster, on ports PORT.. and TRANSPORT_PORT.. counting up "
                                      "(default heap then: a quarter of RAM shared, at least 1g each)"),
) -> None:
    """Fetch, assemble (plugins + our tier filter), start and wait until healthy."""

    from . import cluster
    from .node import start

    if not 1 <= nodes <= cluster.MAX_NODES:
        fail(f"--nodes must be between 1 and {cluster.MAX_NODES}, got {nodes}")
    check_port("--port", port)
    check_port("--transport-port", transport_port)
    for option, first in (("--port", port), ("--transport-port", transport_port)):
        if first + nodes - 1 > 65535:
            fail(f"{option} {first} with --nodes {nodes} runs past port 65535")
    if not 0 < timeout < float("inf"):  # nan fails this too
        fail(f"--timeout must be a positive number of seconds, got {timeout}")
    if heap is not None and (problem := heap_problem(heap)):
        fail(f"--heap: {problem}")
    if version is None:  # not `or`: an empty --version is refused below, not read as the default
        version = security.SECURE_VERSION if secure else artifacts.DEFAULT_VERSION
    check_version(version)
    settings = _settings(port, transport_port, heap or default_heap(nodes), version, state, secure)
    if nodes == 1:
        health = start(settings, timeout_s=timeout, log=out.print)
    else:
        health = cluster.start(settings, nodes, timeout_s=timeout, log=out.print)
    if nodes == 1:
        out.print(f"OpenSearch {version} is {health['status']} at {settings.url}")
    else:
        out.print(f"OpenSearch {version}, {health['number_of_nodes']} nodes, is {health['status']} at "
                  + ", ".join(m.url for m in cluster.members(settings, nodes)))
    if secure:
        keys = settings.security_dir
        out.print(f"  CA certificate: {keys / 'ca.pem'} (pass it as --ca-cert)\n"
                  f"  admin: --user {security.ADMIN_USER} --password-file {security.password_file(keys, security.ADMIN_USER)}\n"
                  f"  read-only: --user {security.SEARCH_USER} --password-file {security.password_file(keys, security.SEARCH_USER)}",
                  highlight=False, soft_wrap=True)


@opensearch_app.command()
def down(port: int = _port, state: Optional[Path] = _state,
         force: bool = typer.Option(False, help="stop it even while a running `lref demo` uses it")) -> None:
    """Stop the node (or every node of the cluster) started by `up`."""
    from . import cluster
    from .node import down as stop, read_pid, users

    check_port("--port", port)
    settings = _settings(port, 9300, "1g", artifacts.DEFAULT_VERSION, state)
    members = cluster.recorded(settings)
    if members is not None:
        out.print("stopped" if cluster.down(members) else f"no cluster started by lref is running on port {port}")
        return
    using = users(settings) if read_pid(settings) is not None else []
    if using and not force:
        fail(f"the node on port {port} is in use by " + ", ".join(f"{what} (pid {pid})" for pid, what in using)
             + ": stop that first, or pass --force")
    out.print("stopped" if stop(settings) else f"no node started by lref is running on port {port}")


@opensearch_app.command()
def status(
    port: int = _port, state: Optional[Path] = _state,
    opensearch: Optional[str] = typer.Option(None, help="report on the cluster at this URL instead of the local node"),
    user: Optional[str] = user_option, password_file: Optional[Path] = password_file_option,
    ca_cert: Optional[Path] = ca_cert_option,
) -> None:
    """Print whether the node runs, its health and plugins (JSON). A local node started with
    --secure is reached as its admin; another cluster with --opensearch and its user."""
    from .node import status as node_status

    check_port("--port", port)
    access = _access(user, password_file, ca_cert)
    if opensearch is None and access != NO_ACCESS:
        fail("--user, --password-file and --ca-cert go with --opensearch URL (a local node started with "
             "--secure is reached as its admin without them)")
    if opensearch is None:
        from . import cluster

        settings = _settings(port, 9300, "1g", artifacts.DEFAULT_VERSION, state)
        members = cluster.recorded(settings)
        report = node_status(settings) if members is None else cluster.status(members)
    else:
        report = _cluster_status(opensearch, access)
    out.print_json(json.dumps(report))
    if not report["running"]:
        raise typer.Exit(1)


def _cluster_status(url: str, access) -> dict:
    from engine.client import call, connect

    client = connect(url, access)
    info = client.info()
    health = call(client, "GET", "/_cluster/health", what="cluster health")
    plugins = call(client, "GET", "/_cat/plugins?format=json", what="listing plugins")
    return {"url": url, "running": True, "version": info["version"]["number"], "health": health.get("status"),
            "plugins": sorted({p["component"] for p in plugins}), "user": access.user}


@opensearch_app.command()
def lock(
    version: str = typer.Argument(..., help="OpenSearch version to pin, e.g. 3.6.0"),
    lock_file: Optional[Path] = typer.Option(None, help="lock to write or merge into (default: the packaged one, "
                                                        "or env LREF_ARTIFACTS_LOCK)"),
    plugin: list[str] = typer.Option([], help="another plugin to pin besides the four `up` installs (repeatable)"),
) -> None:
    """Download every artefact VERSION needs and pin its SHA-256 in the lock (cross-checked
    against Maven's .sha1 where it publishes one)."""
    check_version(version)
    path = lock_file or artifacts.lock_path()
    pins = artifacts.lock_version(version, default_base() / "downloads", artifacts.read_lock(path), tuple(plugin))
    artifacts.write_lock(pins, path)
    table = Table(title=f"OpenSearch {version} artefacts pinned in {path}")
    for column, justify in (("file", "left"), ("size", "right"), ("sha256", "left"), ("Maven .sha1", "left")):
        table.add_column(column, justify=justify, no_wrap=True)
    for entry in pins.values():
        table.add_row(entry["file"], f"{entry['size']:,}", entry["sha256"], entry["maven_sha1"])
    # Hashes are for copying: never fold them, even when stdout is not a terminal (80 columns).
    (out if out.is_terminal else Console(width=200)).print(table)


@opensearch_app.command("plugin")
def plugin_zip(
    version: str = _version,
    out_dir: Path = typer.Option(Path("."), "--out", help="directory the zip is written to"),
) -> None:
    """Build our tier-filter plugin zip for VERSION, to install into a cluster of your own:
    `bin/opensearch-plugin install file:///path/to/zip` on every node, then restart it."""
    import hashlib
    import shutil

    from engine.build import build_tier_filter

    check_version(version)
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir} is not a directory")
    built = build_tier_filter(default_base() / "downloads", version, log=out.print)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"lref-tier-filter-{version}.zip"
    shutil.copyfile(built, target)
    typer.echo(f"{target.resolve()}  sha256 {hashlib.sha256(target.read_bytes()).hexdigest()}")  # unfolded: for copying


@opensearch_app.command()
def install(
    opensearch: str = typer.Option(DEFAULT_URL, help="OpenSearch URL"),
    reranker_url: str = typer.Option("http://127.0.0.1:8000", help="where `lref serve` listens"),
    api_key_file: Optional[Path] = typer.Option(None, help="file holding the reranker's API key (or env LREF_API_KEY)"),
    connect_timeout_s: int = typer.Option(2, help="connector connect timeout, whole seconds (ML Commons' unit)"),
    read_timeout_s: int = typer.Option(DEFAULT_READ_TIMEOUT_S, help="connector read timeout in seconds; past it search keeps the original order"),
    fields: str = typer.Option("title", help="comma-separated document fields sent to the reranker"),
    min_tier: Optional[str] = typer.Option(None, help="lowest tier the lref-rerank pipeline keeps: Good | Mid | Bad "
                                           f"(default: the running reranker's, from its /health; {DEFAULT_MIN_TIER} "
                                           "when it cannot be reached; a different one is refused)"),
    scheme: Optional[str] = typer.Option(None, help="label scheme (level names for annotations; default: the running "
                                         "reranker's, else four_level; a different one is refused)"),
    user: Optional[str] = user_option, password_file: Optional[Path] = password_file_option,
    ca_cert: Optional[Path] = ca_cert_option,
) -> None:
    """Create or update ML Commons settings, the connector, the model and the search pipelines
    (on a secured cluster, as a user who may create connectors: its admin)."""
    from engine.install import InstallSpec
    from engine.install import install as run_install

    api_key = api_key_from(api_key_file)
    spec = InstallSpec(
        opensearch_url=opensearch, reranker_url=reranker_url, api_key=api_key,
        connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s,
        document_fields=[f.strip() for f in fields.split(",") if f.strip()], min_tier=min_tier, scheme=scheme,
        access=_access(user, password_file, ca_cert),
    )
    rows = run_install(spec, log=out.print)
    table = Table(title="lref install")
    for column in ("what", "id", "action"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out.print(table)


@opensearch_app.command()
def load(
    catalog: Path = typer.Argument(..., help="JSONL, one product per line: product_id, title, optional fields"),
    opensearch: str = typer.Option(DEFAULT_URL, help="OpenSearch URL"),
    index: str = typer.Option("products", help="index name"),
    recreate: bool = typer.Option(False, help="drop and recreate the index first"),
    user: Optional[str] = user_option, password_file: Optional[Path] = password_file_option,
    ca_cert: Optional[Path] = ca_cert_option,
) -> None:
    """Bulk-index a product catalog (with a progress bar)."""
    from engine.client import connect

    from .catalog import load as load_catalog

    access = _access(user, password_file, ca_cert)
    count = load_catalog(connect(opensearch, access), catalog, index=index, recreate=recreate)
    out.print(f"indexed {count} products into {index}")
