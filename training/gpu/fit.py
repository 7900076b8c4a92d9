"""Fits a training config to the seconds a lent machine has left: every SFT pass's rows_per_class
scaled by one factor (at most 1), from the rows/s that bench/train_speed.py measured there just
before. Writes CONFIG's copy beside it (NAME.fit.yaml, so its relative paths still hold) and prints
its path; the factor and the rows go to stderr. Without a speed (the probe failed) the copy is the
config unchanged, and the run's deadline (LREF_SFT_DEADLINE) alone bounds it.

    python3 training/gpu/fit.py CONFIG SPEED_JSON|ROWS_PER_S SECONDS
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import yaml

LABELS = 4  # the four-level scheme: a balanced pass trains rows_per_class rows of each


def fit(raw: dict, rows_per_s: float | None, seconds: float) -> tuple[dict, float]:
    """(the config with its passes scaled, the factor)."""
    sft = raw["sft"]
    passes = [sft] + list(sft.get("more_passes") or [])
    batch = sft.get("batch_size", 8)
    # a pass with stop_after_steps trains that many batches at most
    planned = sum(min(sft.get("epochs", 1) * LABELS * p["rows_per_class"], (p.get("stop_after_steps") or 0) * batch or math.inf)
                  for p in passes)
    factor = 1.0 if not rows_per_s else min(1.0, max(seconds, 0) * rows_per_s / planned)
    for p in passes:  # at least a batch, or the pass as written when it is smaller
        p["rows_per_class"] = max(min(batch, p["rows_per_class"]), math.floor(p["rows_per_class"] * factor))
    return raw, factor


def main() -> None:
    config, speed_file, seconds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    raw = yaml.safe_load(config.read_text())
    if speed_file.name.replace(".", "", 1).isdigit():  # a rate measured before, e.g. by an earlier run's SFT
        speed = float(speed_file.name)
    else:
        speed = json.loads(speed_file.read_text())["results"][0]["rows_per_s"] if speed_file.exists() else None
    fitted, factor = fit(raw, speed, seconds)
    target = config.with_name(f"{config.stem}.fit.yaml")
    target.write_text(f"# {config.name} fitted to {seconds:.0f} s at {speed} rows/s (training/gpu/fit.py): "
                      f"rows x {factor:.3f}\n" + yaml.safe_dump(fitted, sort_keys=False))
    passes = [fitted["sft"]["rows_per_class"]] + [p["rows_per_class"] for p in fitted["sft"].get("more_passes") or []]
    print(f"fit: {speed} rows/s, {seconds:.0f} s for SFT: rows per class {passes} (x {factor:.3f})", file=sys.stderr)
    print(target)


if __name__ == "__main__":
    main()
