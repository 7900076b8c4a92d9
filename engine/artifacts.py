"""OpenSearch artefacts on Maven Central: which version, where, and a verified download.

Every download is checked before it lands in the cache:
- against its SHA-256 pin in the lock (`opensearch/artifacts.lock.json`, or the file named by
  `LREF_ARTIFACTS_LOCK`), which covers everything the default version needs;
- only for a file the lock does not cover, against the `.sha1` Maven publishes next to it
  (Maven Central stopped serving that for some plugin zips, hence the lock);
- with neither, `fetch` refuses and says how to pin it: `lref opensearch lock VERSION`.
A cached file is checked against its pin too; a `<file>.sha256` marker written after a check
(valid while the file's size and mtime are unchanged) spares rehashing on every start.
`LREF_MAVEN_URL` replaces Maven Central (a mirror with the same layout).
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from engine import DEFINITIONS
from reranker.errors import LrefError

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
LOCK_FILE = DEFINITIONS / "artifacts.lock.json"
# Newest 3.x whose distribution and all four plugins are on Maven Central (checked 2026-11:
# 3.7/3.8 have the distribution but no ML Commons or neural-search yet).
DEFAULT_VERSION = "3.6.0"
# Installed in this order: ML Commons needs job-scheduler; neural-search needs ML Commons and k-NN.
PLUGINS = ("opensearch-job-scheduler", "opensearch-ml-plugin", "opensearch-knn", "neural-search")

warn = Console(stderr=True)


class ArtifactError(LrefError, RuntimeError):
    pass


def maven_url() -> str:
    return os.environ.get("LREF_MAVEN_URL", MAVEN_CENTRAL).rstrip("/")


def lock_path() -> Path:
    return Path(os.environ.get("LREF_ARTIFACTS_LOCK") or LOCK_FILE)


@dataclass(frozen=True)
class Artifact:
    group: str
    name: str
    version: str
    ext: str
    release: str = field(default="", compare=False)  # the OpenSearch version it belongs to

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.{self.ext}"

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.name}:{self.version}:{self.ext}"

    @property
    def url(self) -> str:
        return f"{maven_url()}/{self.group.replace('.', '/')}/{self.name}/{self.version}/{self.filename}"


def distribution(version: str) -> Artifact:
    return Artifact("org.opensearch.distribution.integ-test-zip", "opensearch", version, "zip", release=version)


def plugin(name: str, version: str) -> Artifact:
    return Artifact("org.opensearch.plugin", name, f"{version}.0", "zip", release=version)


@dataclass(frozen=True)
class ModuleFacts:
    """What a module assembled from Maven jars needs in its descriptor."""

    package: str
    classes: tuple[str, ...]  # the plugin class, newest name first (3.x renamed them "*ModulePlugin")
    description: str
    extends: str = ""
    policy: str = ""


# Modules the node needs (k-NN extends lang-painless; the catalog's analyzer uses analysis-common's
# filters) that 3.x integ-test zips ship and 2.x ones do not; for 2.x they come from Maven as jars
# (pinned by `lock`, assembled by node.ensure_module).
MAVEN_MODULES = {
    "lang-painless": ModuleFacts(
        "org.opensearch.painless", ("PainlessModulePlugin", "PainlessPlugin"), "Painless scripting",
        policy='grant {\n  permission java.lang.RuntimePermission "createClassLoader";\n'
               '  permission java.lang.RuntimePermission "getClassLoader";\n};\n'),
    "analysis-common": ModuleFacts(
        "org.opensearch.analysis.common", ("CommonAnalysisModulePlugin", "CommonAnalysisPlugin"),
        "Adds built-in analyzers", extends="lang-painless"),
}


def module_pom(name: str, version: str) -> Artifact:
    return Artifact("org.opensearch.plugin", name, version, "pom", release=version)


def module_jars(name: str, version: str, downloads: Path, lock: dict | None = None) -> list[Artifact]:
    """A module as Maven jars, for integ-test zips that do not ship it (2.x): the module's jar plus
    the runtime dependencies its published POM names."""
    pom = ElementTree.parse(fetch(module_pom(name, version), downloads, lock))
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    jars = [Artifact("org.opensearch.plugin", name, version, "jar", release=version)]
    for dep in pom.getroot().iterfind("m:dependencies/m:dependency", ns):
        scope = dep.findtext("m:scope", "compile", ns)
        if scope in ("compile", "runtime"):
            jars.append(Artifact(dep.findtext("m:groupId", namespaces=ns), dep.findtext("m:artifactId", namespaces=ns),
                                 dep.findtext("m:version", namespaces=ns), "jar", release=version))
    return jars


def ships_module(dist_zip: Path, name: str, version: str) -> bool:
    try:
        with zipfile.ZipFile(dist_zip) as z:
            return f"opensearch-{version}/modules/{name}/plugin-descriptor.properties" in z.namelist()
    except zipfile.BadZipFile as exc:
        raise ArtifactError(f"{dist_zip}: not a zip ({exc})") from exc


# ---- the lock ---------------------------------------------------------------------------------

def read_lock(path: Path | None = None) -> dict[str, dict]:
    """Pins by Maven coordinates (group:name:version:ext): {"file", "size", "sha256"}."""
    path = path or lock_path()
    try:
        return json.loads(path.read_text())["artifacts"]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"cannot read the artefact lock {path}: {exc}") from exc


def pinned(artifact: Artifact) -> bool:
    return artifact.coordinates in read_lock()


def write_lock(pins: dict[str, dict], path: Path | None = None) -> None:
    """Merges `pins` into the lock file (sorted, so a new version is a readable diff)."""
    path = path or lock_path()
    merged = {**read_lock(path), **pins}
    doc = {"comment": "SHA-256 of Maven artefacts, written by `lref opensearch lock VERSION`",
           "artifacts": dict(sorted(merged.items()))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


# ---- downloading and checking -----------------------------------------------------------------

def _get(url: str) -> urllib.request.addinfourl:
    try:
        return urllib.request.urlopen(url, timeout=60)
    except OSError as exc:
        raise ArtifactError(f"cannot download {url}: {exc}") from exc


def published_sha1(artifact: Artifact) -> str | None:
    """Maven's `.sha1` for the file, or None where it publishes none (HTTP 404)."""
    try:
        with urllib.request.urlopen(artifact.url + ".sha1", timeout=60) as response:
            return response.read().decode().split()[0].strip().lower()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise ArtifactError(f"cannot download {artifact.url}.sha1: {exc}") from exc
    except (OSError, IndexError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"cannot download {artifact.url}.sha1: {exc}") from exc


def _expected_sha1(artifact: Artifact) -> str:
    sha1 = published_sha1(artifact)
    if sha1 is None:
        raise ArtifactError(
            f"{artifact.filename} is not pinned in {lock_path()} and Maven publishes no .sha1 for it, so it cannot be "
            f"verified; pin it with `lref opensearch lock {artifact.release or 'VERSION'}`")
    return sha1


def _download(artifact: Artifact, partial: Path) -> tuple[int, str, str]:
    """Streams the file to `partial`; returns size, SHA-256, SHA-1."""
    sha256, sha1, size = hashlib.sha256(), hashlib.sha1(), 0
    with _get(artifact.url) as response, partial.open("wb") as out, Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=warn, transient=True, disable=not warn.is_terminal,  # no blank lines in logs
    ) as progress:
        task = progress.add_task(artifact.filename, total=int(response.headers.get("Content-Length") or 0) or None)
        while chunk := response.read(1 << 20):
            out.write(chunk)
            sha256.update(chunk)
            sha1.update(chunk)
            size += len(chunk)
            progress.advance(task, len(chunk))
    return size, sha256.hexdigest(), sha1.hexdigest()


def _hash_file(path: Path) -> tuple[str, str]:
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _mark(target: Path, sha256: str) -> None:
    st = target.stat()
    _marker(target).write_text(json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))


def _marked_sha256(target: Path) -> str | None:
    """The SHA-256 recorded when the file was verified, while size and mtime are unchanged."""
    try:
        mark, st = json.loads(_marker(target).read_text()), target.stat()
        return mark["sha256"] if (mark["size"], mark["mtime_ns"]) == (st.st_size, st.st_mtime_ns) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pin_problem(artifact: Artifact, pin: dict, size: int, sha256: str) -> str | None:
    if (size, sha256) == (pin["size"], pin["sha256"]):
        return None
    return (f"{artifact.filename}: SHA-256 {sha256} ({size} bytes) does not match its pin in {lock_path()} "
            f"({pin['sha256']}, {pin['size']} bytes)")


def _cached_ok(artifact: Artifact, target: Path, pin: dict | None) -> bool:
    marked = _marked_sha256(target)
    if marked is not None and (pin is None or not _pin_problem(artifact, pin, target.stat().st_size, marked)):
        return True  # a marker is written only after a check passed
    sha256, sha1 = _hash_file(target)
    if pin is not None:
        problem = _pin_problem(artifact, pin, target.stat().st_size, sha256)
    else:
        problem = None if sha1 == _expected_sha1(artifact) else f"{artifact.filename}: SHA-1 differs from Maven's .sha1"
    if problem:
        warn.print(f"cached {target} is corrupt or stale ({problem}); downloading it again",
                   style="yellow", markup=False, highlight=False)
        return False
    _mark(target, sha256)
    return True


def fetch(artifact: Artifact, into: Path, lock: dict | None = None) -> Path:
    """The file in `into`, downloaded once; verified against its pin in `lock` (default: the
    lock file), else against Maven's published .sha1, else refused."""
    pin = (read_lock() if lock is None else lock).get(artifact.coordinates)
    target = into / artifact.filename
    if target.exists():
        if _cached_ok(artifact, target, pin):
            return target
        target.unlink()
        _marker(target).unlink(missing_ok=True)
    into.mkdir(parents=True, exist_ok=True)
    expected_sha1 = None if pin else _expected_sha1(artifact)  # refuse before a long download
    partial = target.with_name(target.name + ".part")
    try:
        size, sha256, sha1 = _download(artifact, partial)
        if pin:
            problem = _pin_problem(artifact, pin, size, sha256)
        else:
            problem = None if sha1 == expected_sha1 else (
                f"{artifact.filename}: SHA-1 mismatch (got {sha1}, Maven says {expected_sha1})")
        if problem:
            raise ArtifactError(problem)
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    _mark(target, sha256)
    return target


def pin(artifact: Artifact, into: Path, lock: dict) -> dict:
    """Downloads the file afresh (the cache is not trusted to create a pin) and returns its pin.
    Refuses when Maven's .sha1, where published, or an existing pin in `lock` disagrees."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / artifact.filename
    partial = target.with_name(target.name + ".part")
    try:
        size, sha256, sha1 = _download(artifact, partial)
        published = published_sha1(artifact)
        if published is not None and published != sha1:
            raise ArtifactError(f"{artifact.filename}: SHA-1 {sha1} differs from Maven's .sha1 {published}")
        entry = {"file": artifact.filename, "size": size, "sha256": sha256,
                 "maven_sha1": "agreed" if published else "not published"}
        old = lock.get(artifact.coordinates)
        if old and (old["size"], old["sha256"]) != (size, sha256):  # Maven releases never change
            raise ArtifactError(f"{artifact.filename}: Maven now serves SHA-256 {sha256} ({size} bytes) but the lock "
                                f"pins {old['sha256']} ({old['size']} bytes); remove that entry to pin it again")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    _mark(target, sha256)
    return entry


def lock_version(version: str, into: Path, lock: dict, extra_plugins: tuple[str, ...] = ()) -> dict[str, dict]:
    """Pins for everything `version` needs: the distribution, the plugins and, where the
    distribution does not ship one of MAVEN_MODULES, that module's POM and jars."""
    pins: dict[str, dict] = {}
    dist = distribution(version)
    for artifact in [dist] + [plugin(p, version) for p in (*PLUGINS, *extra_plugins)]:
        pins[artifact.coordinates] = pin(artifact, into, lock)
    for name in MAVEN_MODULES:
        if not ships_module(into / dist.filename, name, version):
            pom = module_pom(name, version)
            pins[pom.coordinates] = pin(pom, into, lock)
            for jar in module_jars(name, version, into, {**lock, **pins}):
                pins[jar.coordinates] = pin(jar, into, lock)
    return pins
