"""How the node is assembled from Maven Central, checked against the real distribution."""

from __future__ import annotations

import pytest

from engine import artifacts
from engine.java import JavaError, find_java_home, java_major
from engine.node import NodeSettings, ensure_module


@pytest.mark.parametrize("name", artifacts.MAVEN_MODULES)
def test_a_module_assembled_from_maven_matches_the_shipped_one(opensearch_node, tmp_path, name):
    # 3.x integ-test zips ship these modules; 2.x ones do not (k-NN extends lang-painless, the catalog's
    # analyzer uses analysis-common). The fallback must produce the jars and descriptor the real module has.
    shipped = NodeSettings().dist / "modules" / name
    dist = tmp_path / "dist"
    (dist / "modules").mkdir(parents=True)
    assert ensure_module(dist, name, artifacts.DEFAULT_VERSION, NodeSettings().base / "downloads")
    built = dist / "modules" / name
    assert {p.name for p in built.glob("*.jar")} == {p.name for p in shipped.glob("*.jar")}
    descriptor = dict(line.split("=", 1) for line in (built / "plugin-descriptor.properties").read_text().splitlines())
    real = dict(line.split("=", 1) for line in (shipped / "plugin-descriptor.properties").read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    for key in ("name", "classname", "version", "opensearch.version", "java.version", "extended.plugins"):
        assert descriptor[key] == real[key]
    assert not ensure_module(dist, name, artifacts.DEFAULT_VERSION, NodeSettings().base / "downloads")  # once


def test_java_for_opensearch_3_is_21_or_newer():
    home = find_java_home("3.6.0")
    assert java_major(home) >= 21


def test_java_for_opensearch_2_is_17_to_23(monkeypatch, tmp_path):
    """2.x needs the Java security manager (gone in Java 24): a newer JDK found first is passed over."""
    assert 17 <= java_major(find_java_home("2.19.1", need_compiler=True)) <= 23
    homes = []
    for major in (25, 24, 21):
        home = tmp_path / f"jdk-{major}"
        (home / "bin").mkdir(parents=True)
        (home / "bin" / "java").touch()
        (home / "release").write_text(f'JAVA_VERSION="{major}.0.1"\n')
        homes.append(home)
    monkeypatch.setattr("engine.java.candidates", lambda: homes)
    assert find_java_home("2.19.1") == homes[2]
    assert find_java_home("3.6.0") == homes[0]
    monkeypatch.setattr("engine.java.candidates", lambda: homes[:2])
    with pytest.raises(JavaError, match="needs a Java runtime 17 to 23"):
        find_java_home("2.19.1")


def test_missing_java_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("engine.java.candidates", lambda: [])
    with pytest.raises(JavaError, match="needs a Java runtime 21"):
        find_java_home("3.6.0")


def test_artifacts_are_the_maven_central_coordinates():
    assert artifacts.distribution("3.6.0").url.endswith(
        "/org/opensearch/distribution/integ-test-zip/opensearch/3.6.0/opensearch-3.6.0.zip")
    assert artifacts.plugin("opensearch-ml-plugin", "3.6.0").filename == "opensearch-ml-plugin-3.6.0.0.zip"


@pytest.mark.parametrize("fixture, java", [("opensearch_node", "21"), ("opensearch_node_2x", "17")])
def test_the_plugin_command_builds_the_zip_for_each_engine_line(request, tmp_path, fixture, java):
    """`lref opensearch plugin` gives users the zip to install into their own cluster; it is built from
    the one source for the line's OpenSearch version and Java release (the nodes installed the same)."""
    import hashlib
    import subprocess
    import sys
    import zipfile

    version = request.getfixturevalue(fixture).version
    done = subprocess.run([sys.executable, "-m", "lref", "opensearch", "plugin", "--version", version,
                           "--out", str(tmp_path / "zips")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    path, _, digest = done.stdout.split()
    with zipfile.ZipFile(path) as z:
        descriptor = dict(line.split("=", 1) for line in z.read("plugin-descriptor.properties").decode().splitlines()
                          if "=" in line and not line.startswith("#"))
        assert any(name.endswith(".jar") for name in z.namelist())
    assert (descriptor["name"], descriptor["opensearch.version"], descriptor["java.version"]) == \
        ("lref-tier-filter", version, java)
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest
