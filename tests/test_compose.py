"""docker-compose.yml, validated (never run here: these machines have no Docker engine) with Debian's
docker-compose, which `make setup` installs: `config -q` accepts it, and the resolved config has the
services, health checks, start order, GPU profile and build files we mean."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from engine.artifacts import DEFAULT_VERSION

REPO = Path(__file__).resolve().parents[1]


def compose(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: `make setup` installs Debian's docker-compose"
    return subprocess.run([exe, "-f", str(REPO / "docker-compose.yml"), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env=_clean_env())


def _clean_env() -> dict:
    """No LREF_*/COMPOSE_*/DOCKER_* variables of the caller: the file's own defaults are checked."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("LREF_", "COMPOSE_", "DOCKER_"))}


@pytest.fixture(scope="module")
def config() -> dict:
    done = compose("config")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_config_is_valid():
    done = compose("config", "-q")
    assert done.returncode == 0 and done.stdout == "", done.stderr


def test_services_health_checks_and_start_order(config):
    services = config["services"]
    assert set(services) == {"opensearch", "reranker", "reranker-1", "reranker-2", "reranker-gpu", "store"}
    for name, service in services.items():
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] > 0, name
        assert all(port.startswith("127.0.0.1:") for port in service.get("ports", [])), name  # loopback only
    health_urls = {name: re.search(r"http://127\.0\.0\.1:(\d+)/", " ".join(s["healthcheck"]["test"])).group(1)
                   for name, s in services.items()}
    assert health_urls == {"opensearch": "9200", "reranker": "8000", "reranker-1": "8000", "reranker-2": "8000",
                           "reranker-gpu": "8000", "store": "8080"}
    assert services["store"]["depends_on"] == {"opensearch": {"condition": "service_healthy"},
                                               "reranker": {"condition": "service_healthy"}}
    store = services["store"]["command"]
    assert store[:2] == ["lref", "demo"]
    assert "--opensearch-url=http://opensearch:9200" in store and "--reranker-url=http://reranker:8000" in store
    # The reranker the store and connector reach is the balancer in front of two replicas.
    balancer = services["reranker"]["command"]
    assert balancer[:2] == ["lref", "balance"] and "ports" not in services["reranker-1"]
    assert [balancer[i + 1] for i, a in enumerate(balancer) if a == "--replica"] == \
        ["http://reranker-1:8000", "http://reranker-2:8000"]
    for replica in ("reranker-1", "reranker-2"):
        assert services[replica]["command"][:2] == ["lref", "serve"]
    assert set(services["reranker"]["depends_on"]) == {"reranker-1", "reranker-2"}
    env = services["opensearch"]["environment"]
    assert env["discovery.type"] == "single-node" and env["DISABLE_SECURITY_PLUGIN"] == "true"


def test_gpu_profile_serves_with_vllm_on_an_nvidia_device(config):
    gpu = config["services"]["reranker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert all("profiles" not in s for n, s in config["services"].items() if n != "reranker-gpu")
    command = " ".join(gpu["command"])
    assert "--backend vllm" in command and "--device cuda" in command
    assert gpu["build"]["args"]["EXTRAS"] == "vllm"
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def _copy_sources(dockerfile: Path) -> list[str]:
    """Sources of COPY lines that read the build context (not another stage)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0] == "COPY" and not any(w.startswith("--from=") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def test_build_contexts_and_dockerfiles_exist(config):
    dockerfiles = set()
    for name, service in config["services"].items():
        build = service["build"]
        context = Path(build["context"])
        assert context.resolve() == REPO, name
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        dockerfiles.add(dockerfile)
        for source in _copy_sources(dockerfile):
            assert (context / source).exists(), f"{dockerfile.name}: COPY {source} is not in the build context"
    assert {d.name for d in dockerfiles} == {"opensearch.Dockerfile", "reranker.Dockerfile"}
    opensearch = (REPO / "docker" / "opensearch.Dockerfile").read_text()
    assert f"ARG OPENSEARCH_VERSION={DEFAULT_VERSION}" in opensearch  # the version the local node runs
    assert config["services"]["opensearch"]["build"]["args"]["OPENSEARCH_VERSION"] == DEFAULT_VERSION
    assert "FROM opensearchproject/opensearch:${OPENSEARCH_VERSION}" in opensearch
    assert "opensearch-plugin install --batch file:///tmp/lref-tier-filter.zip" in opensearch
    # `pip install .` in the lref image needs the folder of every package pyproject.toml lists.
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {tool["package-dir"].get(p, p).split(".")[0] for p in tool["packages"]}
    copied = {s.rstrip("/") for s in _copy_sources(REPO / "docker" / "reranker.Dockerfile")}
    assert folders <= copied, folders - copied
    # The Maven stage builds the artefact name engine/build.py expects from the same sources.
    from engine.build import ARTIFACT

    assert f"/src/target/{ARTIFACT}" in opensearch and "COPY plugin/tier-filter/ ./" in opensearch
    for setting in ("only_run_on_ml_node: false", "connector.private_ip_enabled: true", "trusted_connector_endpoints_regex"):
        assert setting in opensearch
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "**/target" in ignored
