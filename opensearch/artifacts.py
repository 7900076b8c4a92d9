"""OpenSearch artefacts on Maven Central: which version, where, and a checked download."""

from __future__ import annotations

import hashlib
import urllib.request
from xml.etree import ElementTree
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

MAVEN = "https://repo1.maven.org/maven2"
# Newest 3.x whose distribution and all four plugins are on Maven Central (checked 2026-11:
# 3.7/3.8 have the distribution but no ML Commons or neural-search yet).
DEFAULT_VERSION = "3.6.0"
# Installed in this order: ML Commons needs job-scheduler; neural-search needs ML Commons and k-NN.
PLUGINS = ("opensearch-job-scheduler", "opensearch-ml-plugin", "opensearch-knn", "neural-search")


class ArtifactError(RuntimeError):
    pass


@dataclass(frozen=True)
class Artifact:
    group: str
    name: str
    version: str
    ext: str

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.{self.ext}"

    @property
    def url(self) -> str:
        return f"{MAVEN}/{self.group.replace('.', '/')}/{self.name}/{self.version}/{self.filename}"


def distribution(version: str) -> Artifact:
    return Artifact("org.opensearch.distribution.integ-test-zip", "opensearch", version, "zip")


def plugin(name: str, version: str) -> Artifact:
    return Artifact("org.opensearch.plugin", name, f"{version}.0", "zip")


def painless_jars(version: str, downloads: Path) -> list[Artifact]:
    """lang-painless as Maven jars, for integ-test zips that do not ship the module (2.x): the
    module's jar plus the runtime dependencies its published POM names."""
    module = Artifact("org.opensearch.plugin", "lang-painless", version, "jar")
    pom = ElementTree.parse(fetch(Artifact(module.group, module.name, version, "pom"), downloads))
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    jars = [module]
    for dep in pom.getroot().iterfind("m:dependencies/m:dependency", ns):
        scope = dep.findtext("m:scope", "compile", ns)
        if scope in ("compile", "runtime"):
            jars.append(Artifact(dep.findtext("m:groupId", namespaces=ns), dep.findtext("m:artifactId", namespaces=ns),
                                 dep.findtext("m:version", namespaces=ns), "jar"))
    return jars


def _get(url: str) -> urllib.request.addinfourl:
    try:
        return urllib.request.urlopen(url, timeout=60)
    except OSError as exc:
        raise ArtifactError(f"cannot download {url}: {exc}") from exc


def fetch(artifact: Artifact, into: Path) -> Path:
    """Download once into `into`, checked against Maven Central's published SHA-1."""
    target = into / artifact.filename
    if target.exists():
        return target
    into.mkdir(parents=True, exist_ok=True)
    expected = _get(artifact.url + ".sha1").read().decode().split()[0].strip()
    partial = target.with_suffix(target.suffix + ".part")
    digest = hashlib.sha1()
    with _get(artifact.url) as response, partial.open("wb") as out, Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True
    ) as progress:
        task = progress.add_task(artifact.filename, total=int(response.headers.get("Content-Length") or 0) or None)
        while chunk := response.read(1 << 20):
            out.write(chunk)
            digest.update(chunk)
            progress.advance(task, len(chunk))
    if digest.hexdigest() != expected:
        partial.unlink()
        raise ArtifactError(f"{artifact.filename}: SHA-1 mismatch (got {digest.hexdigest()}, Maven says {expected})")
    partial.rename(target)
    return target
