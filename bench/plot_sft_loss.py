"""Plot the SFT loss of one or more `lref train` runs (TRL's trainer_state.json) against rows seen.

    python bench/plot_sft_loss.py runs/homedepot-judge runs/homedepot --out docs/results/homedepot-sft-loss.png

Rows seen = step x batch size, so runs with different batch sizes share one axis. The horizontal
line is the loss of a judge at chance on balanced labels with a two-token answer (ln 4 / 2); a dotted
line marks where a later pass (`sft.more_passes`) starts."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.sft import last_checkpoint, phase_dirs  # noqa: E402


def curve(run: Path) -> tuple[list[int], list[float], str, list[int]]:
    """Loss against rows seen over every SFT phase of a run, in order (a later pass continues the
    adapter, so its rows are counted after the earlier ones'); also where each later phase starts."""
    rows, losses, starts, offset, batch = [], [], [], 0, 8
    for phase in phase_dirs(run / "sft"):
        checkpoint = last_checkpoint(phase)
        if checkpoint is None:
            continue
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        batch = state.get("train_batch_size") or 8
        if rows:
            starts.append(offset)
        for h in state["log_history"]:
            if "loss" in h:
                rows.append(offset + h["step"] * batch)
                losses.append(h["loss"])
        offset += state["global_step"] * batch
    if not rows:
        raise SystemExit(f"error: no sft checkpoint with a trainer_state.json under {run}")
    return rows, losses, f"{run.name} (batch {batch})", starts


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
        rows, losses, label, starts = curve(run)
        k = max(1, args.smooth)
        smoothed = [sum(losses[max(0, i - k + 1):i + 1]) / len(losses[max(0, i - k + 1):i + 1]) for i in range(len(losses))]
        line, = ax.plot(rows, smoothed, label=label)
        for start in starts:  # a later pass (sft.more_passes) begins here, with its own warm-up
            ax.axvline(start, color=line.get_color(), linestyle=":", alpha=0.7)
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
