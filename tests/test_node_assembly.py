"""How the node is assembled from Maven Central, checked against the real distribution."""

from __future__ import annotations

import pytest

from lref_opensearch import artifacts
from lref_opensearch.java import JavaError, find_java_home, java_major
from lref_opensearch.node import NodeSettings, ensure_painless


def test_painless_assembled_from_maven_matches_the_shipped_module(opensearch_node, tmp_path):
    # 3.x integ-test zips ship lang-painless; 2.x ones do not, and k-NN declares it as extended
    # plugin. The fallback must produce the same jars the real module has.
    shipped = NodeSettings().dist / "modules" / "lang-painless"
    dist = tmp_path / "dist"
    (dist / "modules").mkdir(parents=True)
    assert ensure_painless(dist, artifacts.DEFAULT_VERSION, NodeSettings().base / "downloads")
    built = dist / "modules" / "lang-painless"
    assert {p.name for p in built.glob("*.jar")} == {p.name for p in shipped.glob("*.jar")}
    descriptor = dict(line.split("=", 1) for line in (built / "plugin-descriptor.properties").read_text().splitlines())
    real = dict(line.split("=", 1) for line in (shipped / "plugin-descriptor.properties").read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    for key in ("name", "classname", "version", "opensearch.version", "java.version"):
        assert descriptor[key] == real[key]
    assert not ensure_painless(dist, artifacts.DEFAULT_VERSION, NodeSettings().base / "downloads")  # once


def test_java_for_opensearch_3_is_21_or_newer():
    home = find_java_home("3.6.0")
    assert java_major(home) >= 21


def test_missing_java_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("lref_opensearch.java.candidates", lambda: [])
    with pytest.raises(JavaError, match="needs a Java runtime 21"):
        find_java_home("3.6.0")


def test_artifacts_are_the_maven_central_coordinates():
    assert artifacts.distribution("3.6.0").url.endswith(
        "/org/opensearch/distribution/integ-test-zip/opensearch/3.6.0/opensearch-3.6.0.zip")
    assert artifacts.plugin("opensearch-ml-plugin", "3.6.0").filename == "opensearch-ml-plugin-3.6.0.0.zip"
