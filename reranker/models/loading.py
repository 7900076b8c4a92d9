"""Load a judge model: a local HF dir, an HF hub id, a GGUF file or the embedded default; plus an optional LoRA adapter.

torch is imported inside the functions that use it: the `lref` commands that load no model (the
node, the installer, the audit, --help) import this module and would otherwise wait seconds for it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LrefError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"


class ModelLoadError(LrefError, RuntimeError):
    """The model could not be found or loaded; the message says what to fix."""


@dataclass(frozen=True)
class ModelSpec:
    model: str = DEFAULT_MODEL  # "default", a local HF dir, a hub id, or a .gguf file
    adapter: str | None = None  # a PEFT (LoRA) adapter dir, merged into the base at load
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda[:N]


def cache_dir() -> Path:
    return Path(os.environ.get("LREF_CACHE", Path.home() / ".cache" / "lref"))


def pick_device(device: str) -> str:
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:") and device[5:].isdigit():
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r}: no CUDA GPU is available here (use auto or cpu)")
        return device
    raise ModelLoadError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _cpu_flags() -> set[str]:
    return set(next((line.split(":", 1)[1].split() for line in _cpuinfo() if line.startswith("flags")), []))


BF16_FLAGS = {"amx_bf16", "avx512_bf16"}
# bf16 must beat fp32 by this much in the probe: below it, fp32's exactness is worth more.
BF16_MIN_SPEEDUP = 1.25


def _matmul_s(a: torch.Tensor, b: torch.Tensor) -> float:
    start = time.perf_counter()
    a @ b
    return time.perf_counter() - start


@functools.cache
def cpu_bf16_speedup() -> float | None:
    """How much faster a bf16 matmul runs than an fp32 one on this CPU (None without bf16 flags).
    The flags alone mislead: a Xeon listing avx512_bf16 but no AMX ran bf16 at 0.6x fp32, an EPYC with
    the same flag at several times fp32 (docs/benchmarks.md), so `auto` measures (~50 ms). Measured
    once per machine and kept in the cache (LREF_CACHE/cpu-bf16-speedup.json, for this CPU, its flags
    and this torch): replicas started side by side, whose probes would compete for the same cores,
    and restarts all take the same dtype, so they give the same scores."""
    import torch
    if not _cpu_flags() & BF16_FLAGS:
        return None
    import fcntl

    machine = {"cpu": _cpu_name(), "flags": sorted(_cpu_flags() & (BF16_FLAGS | {"amx_tile"})),
               "cores": os.cpu_count(), "torch": torch.__version__}
    path = cache_dir() / "cpu-bf16-speedup.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one probe at a time; the others read its result
            try:
                kept = json.loads(path.read_text())
                if kept.get("machine") == machine:
                    return float(kept["speedup"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
            speedup = _measure_bf16_speedup()
            path.write_text(json.dumps({"machine": machine, "speedup": speedup}) + "\n")
            return speedup
    except OSError:  # a read-only cache: measure in this process only
        return _measure_bf16_speedup()


def _measure_bf16_speedup(n: int = 768, reps: int = 8) -> float:
    """fp32 time / bf16 time, the best of `reps` each, taken in turns so that a burst of other load
    hits both alike (on a busy 2-core box one-sided bursts moved a best-of-4 ratio of 0.6 to 1.24)."""
    import torch
    pairs = {dtype: (torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)) for dtype in (torch.float32, torch.bfloat16)}
    best = {dtype: float("inf") for dtype in pairs}
    for a, b in pairs.values():
        a @ b  # warm-up: oneDNN picks and caches its kernel on the first call
    for _ in range(reps):
        for dtype, (a, b) in pairs.items():
            best[dtype] = min(best[dtype], _matmul_s(a, b))
    return best[torch.float32] / best[torch.bfloat16]


def _cpu_name() -> str:
    return next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "unknown CPU")


def _cpu_has_fast_bf16() -> bool:
    speedup = cpu_bf16_speedup()
    return speedup is not None and speedup >= BF16_MIN_SPEEDUP


def cpu_facts() -> dict:
    """What benchmarks and judge cards print about the CPU: its name, cores, bf16 flags and the measured
    bf16/fp32 matmul speed ratio that decides `--dtype auto`."""
    import torch
    speedup = cpu_bf16_speedup()
    return {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "bf16_flags": sorted(_cpu_flags() & (BF16_FLAGS | {"amx_tile"})) or ["none"],
            "bf16_speedup": None if speedup is None else round(speedup, 2)}


def cpu_summary() -> str:
    """cpu_facts() as the one line benchmarks print."""
    facts = cpu_facts()
    ratio = "" if facts["bf16_speedup"] is None else f", bf16 matmul {facts['bf16_speedup']}x fp32"
    return f"{facts['cpu']}, {facts['cores']} cores, bf16 flags: {', '.join(facts['bf16_flags'])}{ratio}"


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """bf16 where the hardware runs it fast; on a CPU fp32 unless bf16 flags are listed and a bf16 matmul
    measures at least BF16_MIN_SPEEDUP times faster (see docs/benchmarks.md)."""
    import torch
    if dtype != "auto":
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        except KeyError:
            raise ModelLoadError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16") from None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if _cpu_has_fast_bf16() else torch.float32


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF checkpoint once into a normal HF model dir (transformers reads GGUF natively)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out_dir / "config.json").is_file():
        return out_dir
    log.info("converting %s into %s (once)", gguf_path, out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=".convert-"))
    try:
        kw = {"gguf_file": gguf_path.name}
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kw)
            model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kw)
        except Exception as exc:  # a truncated or foreign file fails deep in the GGUF reader, in any of many ways
            raise ModelLoadError(f"{gguf_path}: cannot read this GGUF model ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:200] if str(exc) else 'no detail'})") from exc
        # The weights are dequantized in memory; drop the GGUF quantization marker so the dir loads as plain HF.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        work.rename(out_dir)  # atomic: a half-written dir is never mistaken for a converted one
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


def gguf_cache_dir(gguf_path: Path) -> Path:
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"{gguf_path.stem}-{key}"


def check_model_spec(model: str) -> None:
    """What a model spec names must be there (or be a hub id): checked without fetching or
    converting anything, so a run can refuse a bad spec before its first stage."""
    if model == DEFAULT_MODEL:
        return
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        with path.open("rb") as handle:
            head = handle.read(8)
        if head[:4] != b"GGUF" or int.from_bytes(head[4:8], "little") not in (2, 3):  # what transformers reads
            raise ModelLoadError(f"{path} is not a GGUF file (no GGUF v2/v3 header)")
    elif path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model dir (no config.json)")
    elif model.count("/") != 1 or model.startswith((".", "/")):  # owner/name: a hub id, for users online
        raise ModelLoadError(f"model {model!r} is neither 'default', a local dir, a .gguf file nor a hub id (owner/name)")


def resolve_model_path(model: str) -> str:
    """Turn a model spec into something from_pretrained takes (a dir or a hub id)."""
    check_model_spec(model)
    if model == DEFAULT_MODEL:
        from .default_model import default_model_dir

        return str(default_model_dir())
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        return str(convert_gguf(path, gguf_cache_dir(path)))
    return str(path) if path.exists() else hub_model(model)


@functools.lru_cache(maxsize=None)  # one probe per process and id: a run resolves its base model often
def hub_model(repo: str) -> str:
    """A hub id as from_pretrained should take it. Where the hub cannot be reached, the local
    snapshot of the hub cache, or an error at once, instead of a minute of retries that end in a
    traceback."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if not constants.HF_HUB_OFFLINE:
        endpoint = urlsplit(constants.ENDPOINT)
        try:
            socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=3).close()
            return repo
        except OSError:
            pass
    try:
        return snapshot_download(repo, local_files_only=True)
    except LocalEntryNotFoundError:
        raise ModelLoadError(f"model {repo!r}: the Hugging Face hub ({constants.ENDPOINT}) cannot be reached from "
                             "here and the model is not in the local hub cache; give a local dir or a .gguf file, "
                             "or download it where the hub is reachable") from None


def load_model(spec: ModelSpec):
    """-> (model in eval mode, tokenizer, device). Merges a LoRA adapter when given."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    path = resolve_model_path(spec.model)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        tokenizer_src = path
        if spec.adapter:
            from peft import PeftModel

            if not Path(spec.adapter, "adapter_config.json").is_file():
                raise ModelLoadError(f"adapter dir {spec.adapter} has no adapter_config.json")
            model = PeftModel.from_pretrained(model, spec.adapter).merge_and_unload()
            if Path(spec.adapter, "tokenizer_config.json").is_file():
                tokenizer_src = spec.adapter
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_src)
    except ModelLoadError:
        raise
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load model {spec.model!r}: {exc}") from exc
    model.to(device).eval()
    return model, tokenizer, device
