"""`lref opensearch up --nodes N`: N nodes of one cluster on 127.0.0.1, from the same assembled
distribution. Member i listens on HTTP port P+i and transport port T+i, keeps its config, data and
logs in STATE/node-i, finds the others through discovery.seed_hosts, and every member is cluster
manager eligible and a data node. STATE/cluster.json records the members, so that `down` and
`status` with the same --port/--state find them all, and a later `up` starts only the members that
are not running (a node that was killed rejoins)."""

from __future__ import annotations

import json
from dataclasses import replace

from .node import (NodeError, NodeSettings, assemble, check_ports, down as stop_node, http_json, launch, read_pid,
                   stop_started, wait_healthy, with_tier_filter)

CLUSTER_FILE = "cluster.json"
MAX_NODES = 9


def members(settings: NodeSettings, nodes: int) -> list[NodeSettings]:
    if not 2 <= nodes <= MAX_NODES:
        raise NodeError(f"a local cluster has 2 to {MAX_NODES} nodes, got {nodes}")
    peers = tuple((settings.http_port + i, settings.transport_port + i) for i in range(nodes))
    return [replace(settings, http_port=h, transport_port=t, state=settings.node_dir / f"node-{i}", peers=peers)
            for i, (h, t) in enumerate(peers)]


def recorded(settings: NodeSettings) -> list[NodeSettings] | None:
    """The members `up --nodes` recorded under this --port/--state, or None for a single node."""
    try:
        record = json.loads((settings.node_dir / CLUSTER_FILE).read_text())
        base = replace(settings, version=record["version"], http_port=record["http_port"],
                       transport_port=record["transport_port"], heap=record["heap"])
        return members(base, record["nodes"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NodeError(f"{settings.node_dir / CLUSTER_FILE} is unreadable ({exc}): remove it and start again") from exc


def start(settings: NodeSettings, nodes: int, timeout_s: float = 240, log=print) -> dict:
    if settings.secure:
        raise NodeError("--secure with --nodes is not built yet: one secured node, or an unsecured cluster")
    cluster = members(settings, nodes)
    before = recorded(settings)
    if before is not None and [(m.http_port, m.transport_port) for m in before] != list(cluster[0].peers):
        raise NodeError(f"{settings.node_dir} holds a cluster of {len(before)} nodes on other ports: start it as it "
                        "was, or choose another --state")
    with_tier_filter(cluster[0], log)
    for member in cluster:
        member.extra_plugins = cluster[0].extra_plugins
    todo = [m for m in cluster if read_pid(m) is None]
    for member in todo:
        check_ports(member)
    if todo:
        assemble(cluster[0], log)
    settings.node_dir.mkdir(parents=True, exist_ok=True)
    (settings.node_dir / CLUSTER_FILE).write_text(json.dumps({
        "version": settings.version, "nodes": nodes, "http_port": settings.http_port,
        "transport_port": settings.transport_port, "heap": settings.heap}) + "\n")
    try:
        for member in todo:
            launch(member, log)
        return wait_healthy(cluster[0], timeout_s, cluster)
    except BaseException:  # never leave some JVMs of a cluster that did not form behind
        for member in todo:
            stop_started(member)
        raise


def down(cluster: list[NodeSettings]) -> bool:
    stopped = [stop_node(member) for member in cluster]
    return any(stopped)


def status(cluster: list[NodeSettings]) -> dict:
    first = next((m for m in cluster if read_pid(m) is not None), cluster[0])
    root = http_json(first.url, access=first.access) or {}
    health = http_json(f"{first.url}/_cluster/health", access=first.access) or {}
    plugins = http_json(f"{first.url}/_cat/plugins?format=json", access=first.access) or []
    joined = http_json(f"{first.url}/_cat/nodes?format=json&h=name,cluster_manager", access=first.access) or []
    manager = next((n["name"] for n in joined if n.get("cluster_manager") == "*"), None)
    return {
        "url": first.url,
        "running": any(read_pid(m) is not None for m in cluster),
        "version": root.get("version", {}).get("number"),
        "health": health.get("status"),
        "plugins": sorted({p["component"] for p in plugins}),
        "number_of_nodes": health.get("number_of_nodes"),
        "cluster_manager": manager,
        "nodes": [{"url": m.url, "name": f"lref-{m.http_port}", "pid": read_pid(m), "state": str(m.node_dir)}
                  for m in cluster],
        "state": str(cluster[0].node_dir.parent),
    }
