"""Verified downloads: pins in the lock, Maven's .sha1 only where unpinned, refusal otherwise.

A real HTTP server on 127.0.0.1 plays Maven Central (LREF_MAVEN_URL) with small fake artefacts."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import subprocess
import sys
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine import artifacts
from engine.artifacts import Artifact, ArtifactError, fetch

LREF = Path(sys.executable).parent / "lref"


class FakeMaven:
    def __init__(self, root: Path) -> None:
        self.root, self.requests = root, []
        requests = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                requests.append(self.path)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/maven2"

    def path(self, a: Artifact) -> Path:
        return self.root / "maven2" / a.group.replace(".", "/") / a.name / a.version / a.filename

    def publish(self, a: Artifact, data: bytes, sha1: bool | str = True) -> None:
        """sha1: True publishes the right .sha1, a string publishes that, False none."""
        target = self.path(a)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if sha1:
            Path(f"{target}.sha1").write_text(hashlib.sha1(data).hexdigest() if sha1 is True else sha1)

    def fetched(self, a: Artifact) -> int:
        return sum(p.endswith("/" + a.filename) for p in self.requests)


@pytest.fixture
def maven(tmp_path, monkeypatch):
    server = FakeMaven(tmp_path / "maven")
    monkeypatch.setenv("LREF_MAVEN_URL", server.url)
    yield server
    server.httpd.shutdown()


def pin_of(data: bytes, a: Artifact) -> dict:
    return {a.coordinates: {"file": a.filename, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}


KNN = artifacts.plugin("opensearch-knn", "9.9.9")
DATA = b"a plugin zip\n" * 100


def test_cold_cache_downloads_and_verifies_against_the_pin(maven, tmp_path):
    maven.publish(KNN, DATA, sha1=False)  # like the 3.6.0 plugin zips: no .sha1 on Maven
    path = fetch(KNN, tmp_path / "downloads", pin_of(DATA, KNN))
    assert path == tmp_path / "downloads" / KNN.filename and path.read_bytes() == DATA
    assert not any(p.endswith(".sha1") for p in maven.requests)  # a pin needs no .sha1
    # Cached and marked as verified: a second fetch downloads nothing.
    assert fetch(KNN, tmp_path / "downloads", pin_of(DATA, KNN)) == path
    assert maven.fetched(KNN) == 1


def test_a_pinned_file_with_other_bytes_is_refused_and_not_cached(maven, tmp_path):
    maven.publish(KNN, DATA.replace(b"zip", b"zap"), sha1=True)  # even a matching .sha1 does not help
    with pytest.raises(ArtifactError, match=r"opensearch-knn-9\.9\.9\.0\.zip: SHA-256 \w+ .* does not match its pin"):
        fetch(KNN, tmp_path / "downloads", pin_of(DATA, KNN))
    assert list((tmp_path / "downloads").iterdir()) == []


def test_an_unpinned_file_is_checked_against_the_published_sha1(maven, tmp_path):
    maven.publish(KNN, DATA, sha1=True)
    assert fetch(KNN, tmp_path / "ok", {}).read_bytes() == DATA
    maven.publish(KNN, DATA, sha1=hashlib.sha1(b"other").hexdigest())
    with pytest.raises(ArtifactError, match="SHA-1 mismatch"):
        fetch(KNN, tmp_path / "bad", {})
    assert list((tmp_path / "bad").iterdir()) == []


def test_an_unpinned_file_without_sha1_is_refused_with_how_to_pin_it(maven, tmp_path):
    maven.publish(KNN, DATA, sha1=False)
    with pytest.raises(ArtifactError) as refused:
        fetch(KNN, tmp_path / "downloads", {})
    message = str(refused.value)
    assert "not pinned" in message and "`lref opensearch lock 9.9.9`" in message and "\n" not in message
    assert maven.fetched(KNN) == 0  # refused before the download, not after
    assert not (tmp_path / "downloads" / KNN.filename).exists()


def test_a_corrupted_cached_file_is_detected(maven, tmp_path, capfd):
    downloads, pins = tmp_path / "downloads", pin_of(DATA, KNN)
    maven.publish(KNN, DATA, sha1=False)
    cached = fetch(KNN, downloads, pins)
    cached.write_bytes(DATA.replace(b"plugin", b"pluGin"))  # same size, new mtime
    assert fetch(KNN, downloads, pins).read_bytes() == DATA  # noticed and downloaded again
    assert maven.fetched(KNN) == 2
    assert "is corrupt or stale" in capfd.readouterr().err
    # Corrupt in the cache and on the server: refused, nothing left.
    cached.write_bytes(b"truncated")
    maven.publish(KNN, b"truncated", sha1=False)
    with pytest.raises(ArtifactError, match="does not match its pin"):
        fetch(KNN, downloads, pins)
    assert not cached.exists()
    # A good cached file without a marker (a cache from before the lock) is hashed and kept.
    maven.publish(KNN, DATA, sha1=False)
    cached.write_bytes(DATA)
    assert fetch(KNN, downloads, pins).read_bytes() == DATA
    assert maven.fetched(KNN) == 3 and (downloads / (KNN.filename + ".sha256")).exists()


def test_the_committed_lock_covers_the_default_version():
    pins = artifacts.read_lock(artifacts.LOCK_FILE)
    version = artifacts.DEFAULT_VERSION
    needed = [artifacts.distribution(version)] + [artifacts.plugin(p, version) for p in artifacts.PLUGINS]
    for a in needed:
        entry = pins[a.coordinates]
        assert entry["file"] == a.filename and entry["size"] > 0 and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
    assert artifacts.LOCK_FILE.suffix == ".json"  # packaged with lref_opensearch's *.json


def _dist_zip(version: str, modules: bool) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"opensearch-{version}/bin/opensearch", "#!/bin/sh\n")
        for name in artifacts.MAVEN_MODULES if modules else ():
            z.writestr(f"opensearch-{version}/modules/{name}/plugin-descriptor.properties", f"name={name}\n")
    return buf.getvalue()


def _lock_cli(maven: FakeMaven, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LREF_MAVEN_URL": maven.url, "LREF_OPENSEARCH_HOME": str(tmp_path / "home")}
    env.pop("LREF_ARTIFACTS_LOCK", None)
    return subprocess.run([str(LREF), "opensearch", "lock", *args], capture_output=True, text=True, env=env, timeout=120)


def test_lock_command_pins_what_it_downloaded(maven, tmp_path):
    published: dict[Artifact, bytes] = {}

    def publish(a: Artifact, data: bytes, sha1: bool | str = True) -> None:
        maven.publish(a, data, sha1)
        published[a] = data

    # 9.9.9 ships lang-painless and analysis-common; 8.8.8 does not, so their POMs and the jars the POMs
    # list are pinned too.
    publish(artifacts.distribution("9.9.9"), _dist_zip("9.9.9", modules=True))
    for i, name in enumerate(artifacts.PLUGINS):
        publish(artifacts.plugin(name, "9.9.9"), f"{name} 9.9.9\n".encode(), sha1=i % 2 == 0)
    publish(artifacts.distribution("8.8.8"), _dist_zip("8.8.8", modules=False))
    for name in (*artifacts.PLUGINS, "opensearch-security"):
        publish(artifacts.plugin(name, "8.8.8"), f"{name} 8.8.8\n".encode(), sha1=False)
    publish(artifacts.module_pom("analysis-common", "8.8.8"), b"""<project xmlns="http://maven.apache.org/POM/4.0.0"/>""")
    publish(Artifact("org.opensearch.plugin", "analysis-common", "8.8.8", "jar"), b"analysis-common jar")
    publish(artifacts.module_pom("lang-painless", "8.8.8"), b"""<project xmlns="http://maven.apache.org/POM/4.0.0"><dependencies>
      <dependency><groupId>org.antlr</groupId><artifactId>antlr4-runtime</artifactId><version>4.13.1</version></dependency>
      <dependency><groupId>org.example</groupId><artifactId>test-only</artifactId><version>1</version><scope>test</scope></dependency>
    </dependencies></project>""")
    publish(Artifact("org.opensearch.plugin", "lang-painless", "8.8.8", "jar"), b"painless jar")
    publish(Artifact("org.antlr", "antlr4-runtime", "4.13.1", "jar"), b"antlr jar", sha1=False)

    lock_file = tmp_path / "lock.json"
    first = _lock_cli(maven, tmp_path, "9.9.9", "--lock-file", str(lock_file))
    assert first.returncode == 0, first.stderr
    second = _lock_cli(maven, tmp_path, "8.8.8", "--plugin", "opensearch-security", "--lock-file", str(lock_file))
    assert second.returncode == 0, second.stderr

    pins = artifacts.read_lock(lock_file)
    assert set(pins) == {a.coordinates for a in published}  # merged; nothing test-scoped
    for a, data in published.items():
        assert pins[a.coordinates]["sha256"] == hashlib.sha256(data).hexdigest()
        assert pins[a.coordinates]["size"] == len(data)
        assert pins[a.coordinates]["sha256"] in first.stdout + second.stdout  # the table shows it whole
        assert (tmp_path / "home" / "downloads" / a.filename).read_bytes() == data
    # What was pinned is then fetched without Maven's .sha1.
    maven.publish(artifacts.plugin("opensearch-knn", "9.9.9"), b"tampered", sha1=True)
    with pytest.raises(ArtifactError, match="does not match its pin"):
        fetch(artifacts.plugin("opensearch-knn", "9.9.9"), tmp_path / "fresh", pins)


def test_lock_refuses_a_download_that_disagrees_with_maven_sha1(maven, tmp_path):
    maven.publish(artifacts.distribution("9.9.9"), _dist_zip("9.9.9", modules=True), sha1="0" * 40)
    lock_file = tmp_path / "lock.json"
    result = _lock_cli(maven, tmp_path, "9.9.9", "--lock-file", str(lock_file))
    assert result.returncode == 2
    assert "opensearch-9.9.9.zip" in result.stderr and "differs from Maven's .sha1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not lock_file.exists()


def test_lock_of_a_version_maven_does_not_have_is_one_line_exit_2(maven, tmp_path):
    result = _lock_cli(maven, tmp_path, "0.0.1", "--lock-file", str(tmp_path / "lock.json"))
    assert result.returncode == 2
    assert "cannot download" in result.stderr and "404" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
