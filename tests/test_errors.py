"""The one error contract: every error a user can cause is an LrefError, and the root of `lref`
turns one raised in any room (training, the engine, the audit) into one line and exit code 2. And
the relevance core imports without torch, so the commands that load no model do not wait for it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

from conftest import free_port
from reranker.errors import LrefError

PACKAGES = ("reranker", "training", "engine", "apps", "lref")
# Errors that never reach a user as such: the service turns ApiError into its JSON 4xx, and the rest
# are caught where they are raised (a client that hung up, an attention kind shared-prefix scoring
# cannot use, the demo store's upstream failures shown in its page).
INTERNAL = {"ApiError", "ClientGone", "UnsupportedAttention", "UpstreamError"}


def lref(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lref", *args], capture_output=True, text=True, timeout=120)


def project_exceptions() -> dict[str, type]:
    found = {}
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if ".gpu" in info.name or info.name.endswith((".vllm_backend", "__main__")):
                continue  # GPU kit scripts and the optional vLLM backend import what only a GPU host has
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == module.__name__:
                    found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_error_a_user_can_cause_is_an_lref_error():
    found = project_exceptions()
    assert len(found) >= 18, sorted(found)  # the walk found the rooms' errors, not an empty package
    outside = sorted(name for name, cls in found.items()
                     if not issubclass(cls, LrefError) and name.rsplit(".", 1)[1] not in INTERNAL)
    assert outside == []


@pytest.mark.parametrize("room, args, fragment", [
    ("engine", ["opensearch", "status", "--opensearch", "http://127.0.0.1:{port}"], "cannot reach OpenSearch"),
    ("audit", ["audit", "{missing}", "--opensearch", "http://127.0.0.1:{port}"], "cannot read"),
    ("training", ["train", "--config", "{config}"], "is neither 'default', a local dir"),
])
def test_an_error_from_any_room_is_one_line_and_exit_2(room, args, fragment, tmp_path):
    config = tmp_path / "bad-model.yaml"
    (tmp_path / "rows.jsonl").write_text('{"query": "drill", "product_id": 1, "title": "cordless drill", "level": 4}\n')
    config.write_text("run_dir: run\nmodel: /nonexistent/model\ndata: {train: rows.jsonl, eval: rows.jsonl}\n")
    values = {"port": free_port(), "missing": tmp_path / "missing.jsonl", "config": config}
    result = lref(*(a.format(**values) for a in args))
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # refused before any stage wrote anything


def test_the_core_and_the_commands_import_without_torch():
    probe = ("import sys, reranker.core, lref.cli, engine.install, engine.catalog; "
             "print('torch' in sys.modules); from reranker.core import LabelHead; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "True"], result.stderr  # scoring still comes from the core, on first use
