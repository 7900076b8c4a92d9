"""One single-node OpenSearch on 127.0.0.1, assembled from Maven Central artefacts.

Layout under the base dir (LREF_OPENSEARCH_HOME; /var/lib/lref/opensearch as root, else
~/.cache/lref/opensearch):
    downloads/                 checked Maven artefacts and built plugin zips
    opensearch-<version>/      the distribution with the plugins installed (shared by all nodes)
    nodes/<http port>/         one node's config, data, logs and pid file (or --state DIR)
The node refuses to run as root, so as root it runs as the system user `lref`.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from reranker.errors import LrefError

from . import artifacts, security
from .access import NO_ACCESS, Access
from .java import find_java_home

SERVICE_USER = "lref"
LOOPBACK = "127.0.0.1"  # the node never listens beyond loopback
ASSEMBLED_MARK = ".lref-assembled"


class NodeError(LrefError, RuntimeError):
    pass


def default_base() -> Path:
    if os.environ.get("LREF_OPENSEARCH_HOME"):
        return Path(os.environ["LREF_OPENSEARCH_HOME"])
    if os.geteuid() == 0:  # /root is private, so the service user could not read a cache there
        return Path("/var/lib/lref/opensearch")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lref" / "opensearch"


def default_heap(nodes: int = 1) -> str:
    """A quarter of RAM shared by the nodes, each between 1 and 4 GiB: leaves room for the
    reranker's model on a 24 GiB box."""
    total_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{int(min(4, max(1, total_gib // 4 // nodes)))}g"


def heap_problem(heap: str) -> str | None:
    """Why the JVM would refuse `heap` as -Xms/-Xmx (or OpenSearch could not run in it), or None."""
    import re

    match = re.fullmatch(r"([0-9]{1,7})([kmgKMG]?)", heap)
    if not match:
        return f"heap {heap!r} must look like 512m or 2g"
    size = int(match[1]) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match[2].lower()]
    if size < 256 * 2**20:
        return f"heap {heap!r} is below the 256m an OpenSearch node needs"
    return None


@dataclass
class NodeSettings:
    version: str = artifacts.DEFAULT_VERSION
    http_port: int = 9200
    transport_port: int = 9300
    heap: str = field(default_factory=default_heap)
    base: Path = field(default_factory=default_base)
    state: Path | None = None  # config/data/logs of this node; default base/nodes/<http_port>
    extra_plugins: tuple[Path, ...] = ()  # plugin zips of our own (the tier filter)
    secure: bool | None = None  # `up --secure`; None (status, down): as the state dir says
    peers: tuple[tuple[int, int], ...] = ()  # (http, transport) ports of every member of a local cluster

    @property
    def security_dir(self) -> Path:
        return self.node_dir / "security"

    @property
    def secured(self) -> bool:
        if self.secure is not None:
            return self.secure
        return security.password_file(self.security_dir, security.ADMIN_USER).exists()

    @property
    def access(self) -> Access:
        """How our commands reach this node: as its admin when it is secured."""
        return security.access(self.security_dir) if self.secured else NO_ACCESS

    @property
    def dist(self) -> Path:
        # The security plugin refuses to start without its config: a secured node gets a dist of its own.
        return self.base / f"opensearch-{self.version}{'-secure' if self.secured else ''}"

    @property
    def node_dir(self) -> Path:
        return self.state or self.base / "nodes" / str(self.http_port)

    @property
    def pid_file(self) -> Path:
        return self.node_dir / "opensearch.pid"

    @property
    def url(self) -> str:
        return f"{'https' if self.secured else 'http'}://{LOOPBACK}:{self.http_port}"

    @property
    def plugins(self) -> tuple[str, ...]:
        return (*artifacts.PLUGINS, security.PLUGIN) if self.secured else artifacts.PLUGINS


# ---- assembling the distribution -------------------------------------------------------------

def _run(cmd: list[str], env: dict | None = None) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise NodeError(f"{' '.join(cmd[:3])} failed: {' | '.join(tail)}")


def _java_env(settings: NodeSettings) -> dict:
    env = dict(os.environ)
    env["OPENSEARCH_JAVA_HOME"] = str(find_java_home(settings.version))
    env.pop("JAVA_HOME", None)  # the scripts prefer OPENSEARCH_JAVA_HOME; a stale JAVA_HOME only confuses
    return env


def ensure_module(dist: Path, name: str, version: str, downloads: Path) -> bool:
    """A module of artifacts.MAVEN_MODULES that the distribution lacks (2.x integ-test zips ship
    neither lang-painless, which k-NN extends, nor analysis-common, whose filters the catalog's
    analyzer uses), assembled from its Maven jars. Returns True when it was added."""
    module, facts = dist / "modules" / name, artifacts.MAVEN_MODULES[name]
    if (module / "plugin-descriptor.properties").exists():
        return False
    module.mkdir(parents=True, exist_ok=True)
    for jar in artifacts.module_jars(name, version, downloads):
        shutil.copy2(artifacts.fetch(jar, downloads), module / jar.filename)
    java = "21" if int(version.split(".")[0]) >= 3 else "11"
    (module / "plugin-descriptor.properties").write_text(
        f"description={facts.description} (assembled from Maven Central by lref)\n"
        f"version={version}\nname={name}\nclassname={_module_class(module / f'{name}-{version}.jar', facts)}\n"
        f"java.version={java}\nopensearch.version={version}\nextended.plugins={facts.extends}\n"
        "has.native.controller=false\n"
    )
    if facts.policy:
        (module / "plugin-security.policy").write_text(facts.policy)
    return True


def _module_class(jar: Path, facts: artifacts.ModuleFacts) -> str:
    with zipfile.ZipFile(jar) as z:
        names = set(z.namelist())
    for name in facts.classes:
        if f"{facts.package.replace('.', '/')}/{name}.class" in names:
            return f"{facts.package}.{name}"
    raise NodeError(f"{jar}: none of the plugin classes {', '.join(facts.classes)} is in it")


def _plugin_name(zip_path: Path) -> str:
    with zipfile.ZipFile(zip_path) as z:
        for line in z.read("plugin-descriptor.properties").decode().splitlines():
            if line.startswith("name="):
                return line.split("=", 1)[1].strip()
    raise NodeError(f"{zip_path}: no name in plugin-descriptor.properties")


def _install_plugin(settings: NodeSettings, zip_path: Path, env: dict) -> None:
    name = _plugin_name(zip_path)
    tool = str(settings.dist / "bin" / "opensearch-plugin")
    installed = [p.name for p in (settings.dist / "plugins").iterdir()] if (settings.dist / "plugins").exists() else []
    if any(n in (name, f"opensearch-{name}") for n in installed):
        _run([tool, "remove", name], env)
    _run([tool, "install", "--batch", zip_path.resolve().as_uri()], env)


def assemble(settings: NodeSettings, log=print) -> Path:
    """Unpack the distribution and install the plugins once; re-install only our own plugins when
    their zip changed. Safe to call on every `up`."""
    downloads = settings.base / "downloads"
    env = _java_env(settings)
    mark = settings.dist / ASSEMBLED_MARK
    if not mark.exists():
        zip_path = artifacts.fetch(artifacts.distribution(settings.version), downloads)
        plugin_zips = [artifacts.fetch(artifacts.plugin(p, settings.version), downloads) for p in settings.plugins]
        log(f"assembling OpenSearch {settings.version} in {settings.dist}")
        shutil.rmtree(settings.dist, ignore_errors=True)
        staging = settings.base / f".unpack-{settings.version}"
        shutil.rmtree(staging, ignore_errors=True)
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(staging)
        (staging / f"opensearch-{settings.version}").rename(settings.dist)
        staging.rmdir()
        for path in (settings.dist / "bin").iterdir():  # zipfile drops the executable bits
            path.chmod(0o755)
        for name in artifacts.MAVEN_MODULES:
            if ensure_module(settings.dist, name, settings.version, downloads):
                log(f"{name} assembled from Maven jars")
        for plugin_zip in plugin_zips:
            _install_plugin(settings, plugin_zip, env)
        mark.write_text(json.dumps({"version": settings.version, "ours": {}}))
    state = json.loads(mark.read_text())
    for extra in settings.extra_plugins:
        fingerprint = f"{extra.name}:{extra.stat().st_size}:{extra.stat().st_mtime_ns}"
        if state["ours"].get(extra.name) != fingerprint:
            log(f"installing {extra.name}")
            _install_plugin(settings, extra, env)
            state["ours"][extra.name] = fingerprint
            mark.write_text(json.dumps(state))
    return settings.dist


# ---- running it -------------------------------------------------------------------------------

def _service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        _run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER])
    return SERVICE_USER


def _chown_tree(path: Path, user: str) -> None:
    _run(["chown", "-R", f"{user}:{user}", str(path)])


def _write_config(settings: NodeSettings) -> Path:
    conf = settings.node_dir / "config"
    shutil.rmtree(conf, ignore_errors=True)
    shutil.copytree(settings.dist / "config", conf)
    lines = {
        "cluster.name": f"lref-cluster-{settings.peers[0][0]}" if settings.peers else "lref",
        "node.name": f"lref-{settings.http_port}",
        "network.host": LOOPBACK,
        "http.port": settings.http_port,
        "transport.port": settings.transport_port,
        **({"discovery.seed_hosts": json.dumps([f"{LOOPBACK}:{t}" for _, t in settings.peers]),
            # Read on the cluster's first start only; every member is cluster-manager eligible.
            "cluster.initial_cluster_manager_nodes": json.dumps([f"lref-{h}" for h, _ in settings.peers])}
           if settings.peers else {"discovery.type": "single-node"}),
        "path.data": str(settings.node_dir / "data"),
        "path.logs": str(settings.node_dir / "logs"),
        # A dev/CI box may be nearly full; a single node should not go read-only because of it.
        "cluster.routing.allocation.disk.threshold_enabled": "false",
    }
    if settings.secured:
        security.ensure_identity(settings.security_dir)
        lines.update(security.write_node_config(conf, settings.security_dir))
    (conf / "opensearch.yml").write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return conf


def read_pid(settings: NodeSettings) -> int | None:
    try:
        pid = int(settings.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def http_json(url: str, timeout: float = 2.0, access: Access = NO_ACCESS) -> dict | None:
    request = urllib.request.Request(url, headers=access.headers())
    try:
        context = access.ssl_context() if url.startswith("https:") else None
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def log_tail(settings: NodeSettings, lines: int = 5) -> str:
    logs = sorted((settings.node_dir / "logs").glob("*.log")) + [settings.node_dir / "stdout.log"]
    text = []
    for path in logs:
        if path.exists():
            text += [line for line in path.read_text(errors="replace").splitlines() if "ERROR" in line or "Exception" in line]
    return " | ".join(text[-lines:])


def up(settings: NodeSettings, timeout_s: float = 240, log=print) -> dict:
    """Start the node (or find it running) and wait until the cluster is at least yellow."""
    if read_pid(settings) is not None:
        health = wait_healthy(settings, timeout_s)
        log(f"OpenSearch already running at {settings.url}")
        return health
    check_ports(settings)
    assemble(settings, log)
    try:
        launch(settings, log)
        return wait_healthy(settings, timeout_s)
    except BaseException:  # not healthy in time, or interrupted: never leave a JVM behind
        stop_started(settings)
        raise


def check_ports(settings: NodeSettings) -> None:
    if http_json(settings.url) is not None:
        raise NodeError(f"port {settings.http_port} already answers HTTP and is not a node started by lref")
    for port in (settings.http_port, settings.transport_port):
        if not port_free(port):
            raise NodeError(f"port {port} on 127.0.0.1 is in use: choose another with --port / --transport-port")


def launch(settings: NodeSettings, log=print) -> None:
    """Write the node's config and start its JVM in the background (assembled dist needed)."""
    settings.node_dir.mkdir(parents=True, exist_ok=True)
    # A pid file left by a node that died would read as "exited while starting" until the new JVM rewrites it.
    settings.pid_file.unlink(missing_ok=True)
    conf = _write_config(settings)
    env = _java_env(settings)
    env["OPENSEARCH_PATH_CONF"] = str(conf)
    env["OPENSEARCH_JAVA_OPTS"] = f"-Xms{settings.heap} -Xmx{settings.heap}"
    cmd = [str(settings.dist / "bin" / "opensearch"), "-d", "-p", str(settings.pid_file)]
    user = _service_user()
    if user:
        _chown_tree(settings.dist, user)
        _chown_tree(settings.node_dir, user)
        if settings.security_dir.exists():  # the CA key and the passwords stay the invoking user's
            _run(["chown", "-R", f"{os.getuid()}:{os.getgid()}", str(settings.security_dir)])
        cmd = ["runuser", "-u", user, "--", *cmd]
    log(f"starting OpenSearch {settings.version} on {settings.url} (heap {settings.heap})")
    with open(settings.node_dir / "stdout.log", "ab") as out:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=settings.node_dir)
    if done.returncode != 0:
        raise NodeError(f"OpenSearch did not start (exit {done.returncode}): {log_tail(settings)}")


def _check_security(settings: NodeSettings) -> None:
    was_secured = security.password_file(settings.security_dir, security.ADMIN_USER).exists()
    if settings.secure is False and was_secured:
        raise NodeError(f"{settings.node_dir} holds a secured node (its data has the security index): "
                        "pass --secure, or choose another --state")
    if settings.secured and not artifacts.pinned(artifacts.plugin(security.PLUGIN, settings.version)):
        raise NodeError(f"no {security.PLUGIN} {settings.version} is pinned in the artefact lock: pass --version "
                        f"2.19.1 (Maven Central serves it for 2.19.1, not 3.6.0), or pin it first with "
                        f"`lref opensearch lock {settings.version} --plugin {security.PLUGIN}`")


def pids_naming(path: Path) -> list[int]:
    """Processes whose command line names `path` (the JVM gets `-p STATE/opensearch.pid`)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(path).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except (OSError, ValueError):
            continue
    return found


def stop_started(settings: NodeSettings, timeout_s: float = 30) -> None:
    """Stop a node this process started, also before its pid file exists (a start cut short)."""
    down(settings, timeout_s)
    leftovers = [pid for pid in pids_naming(settings.pid_file) if pid != os.getpid()]
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + timeout_s
    while leftovers and time.monotonic() < deadline:
        leftovers = [pid for pid in leftovers if _alive(pid)]
        time.sleep(0.2)
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now."""
    from reranker.console import bind_problem

    return bind_problem("127.0.0.1", port) is None


def with_tier_filter(settings: NodeSettings, log=print) -> NodeSettings:
    """The settings with our tier-filter plugin built (once per source) to be installed."""
    from engine.build import build_tier_filter

    _check_security(settings)
    settings.extra_plugins = (build_tier_filter(settings.base / "downloads", settings.version, log=log),)
    return settings


def start(settings: NodeSettings, timeout_s: float = 240, log=print) -> dict:
    """`up` with our tier filter: what `lref opensearch up` and `lref demo` start."""
    return up(with_tier_filter(settings, log), timeout_s, log)


def wait_healthy(settings: NodeSettings, timeout_s: float, members: list[NodeSettings] | None = None) -> dict:
    """Yellow or green, with every member of `members` (default: this node alone) joined."""
    members = members or [settings]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = http_json(f"{settings.url}/_cluster/health", access=settings.access)
        if health and health.get("status") in ("green", "yellow") and health.get("number_of_nodes", 0) >= len(members):
            return health
        for member in members:
            # Gone: a pid file naming a dead process, or none and no JVM naming it (died in bootstrap).
            if read_pid(member) is None and (member.pid_file.exists() or not pids_naming(member.pid_file)):
                raise NodeError(f"OpenSearch at {member.url} exited while starting: {log_tail(member)}")
        time.sleep(1)
    raise NodeError(f"OpenSearch not healthy after {timeout_s:.0f}s at {settings.url}: {log_tail(settings)}")


def add_user(settings: NodeSettings, what: str) -> Path:
    """Mark the node as in use by this process (e.g. a running `lref demo`), so that `down` from
    another shell does not pull it away silently. The caller removes the mark when it is done."""
    mark = settings.node_dir / "users" / str(os.getpid())
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(what)
    return mark


def users(settings: NodeSettings) -> list[tuple[int, str]]:
    """(pid, what) of the live processes other than this one using the node; marks left by dead
    ones are removed."""
    found = []
    for mark in sorted((settings.node_dir / "users").glob("*")):
        pid = int(mark.name) if mark.name.isdigit() else -1
        if pid == os.getpid():
            continue
        if pid > 0 and _alive(pid):
            found.append((pid, mark.read_text().strip()))
        else:
            mark.unlink(missing_ok=True)
    return found


def down(settings: NodeSettings, timeout_s: float = 60) -> bool:
    """Stop the node; False when it was not running."""
    pid = read_pid(settings)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):  # the process itself, not its pid file, which goes first
            break
        time.sleep(0.5)
    else:
        os.kill(pid, signal.SIGKILL)
    settings.pid_file.unlink(missing_ok=True)
    return True


def status(settings: NodeSettings) -> dict:
    pid = read_pid(settings)
    root = http_json(settings.url, access=settings.access) or {}
    health = http_json(f"{settings.url}/_cluster/health", access=settings.access) or {}
    plugins = http_json(f"{settings.url}/_cat/plugins?format=json", access=settings.access) or []
    version = root.get("version", {}).get("number")
    return {
        "url": settings.url,
        "running": pid is not None,
        "pid": pid,
        "version": version,
        "health": health.get("status"),
        "plugins": sorted({p["component"] for p in plugins}),
        "dist": str((replace(settings, version=version) if version else settings).dist),
        "state": str(settings.node_dir),
        **({"security": str(settings.security_dir)} if settings.secured else {}),
    }
