"""Plot the SFT loss of one or more `lref train` runs (TRL's trainer_state.json) against rows seen.

    python bench/plot_sft_loss.py runs/homedepot-38k runs/homedepot --out docs/results/homedepot-sft-loss.png

Rows seen = step x batch size, so runs with different batch sizes share one axis. The horizontal
line is the loss of a judge at chance on balanced labels with a two-token answer (ln 4 / 2)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def curve(run: Path) -> tuple[list[int], list[float], str]:
    states = sorted(run.glob("sft/phase*/checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    if not states:
        raise SystemExit(f"error: no sft checkpoint with a trainer_state.json under {run}")
    state = json.loads(states[-1].read_text())
    batch = state.get("train_batch_size") or 8
    points = [(h["step"] * batch, h["loss"]) for h in state["log_history"] if "loss" in h]
    return [p[0] for p in points], [p[1] for p in points], f"{run.name} (batch {batch})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smooth", type=int, default=10, help="moving average over this many logged points")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for run in args.runs:
        rows, losses, label = curve(run)
        k = max(1, args.smooth)
        smoothed = [sum(losses[max(0, i - k + 1):i + 1]) / len(losses[max(0, i - k + 1):i + 1]) for i in range(len(losses))]
        ax.plot(rows, smoothed, label=label)
    ax.axhline(math.log(4) / 2, color="grey", linestyle="--", label="chance on balanced labels (ln 4 / 2)")
    ax.set_xlabel("training rows seen")
    ax.set_ylabel(f"SFT loss (moving average of {args.smooth} logs)")
    ax.set_ylim(0.4, 1.0)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
