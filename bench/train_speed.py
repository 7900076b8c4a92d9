"""SFT speed on this machine: rows/s and tokens/s of the real training code (training/sft.py:
TRL's SFTTrainer, LoRA r=16 on all linear layers, AdamW), for the default and the compact
instruction, fp32 / bf16 weights, LoRA on the top N layers, compiled or eager layers, and what one
epoch over all 59,010 Home Depot train rows would take at that rate (compile time included).

Run: .venv/bin/python bench/train_speed.py [--rows 384] [--batch-size 32] [--variants fp32:default,fp32:compact,bf16:compact]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from reranker.core import PromptSpec, load_scheme  # noqa: E402
from reranker.models.loading import cpu_facts, cpu_summary, pick_device, pick_dtype, resolve_model_path  # noqa: E402
from training import sft  # noqa: E402
from training.config import LoraConfig, SftConfig  # noqa: E402

EPOCH_ROWS = 59_010  # all of Home Depot's train.jsonl
LEVEL_NAMES = {4: "Excellent", 3: "Related", 2: "Mismatch", 1: "Irrelevant"}


def rows_from(data: Path, n: int, seed: int) -> list[dict]:
    """n rows of whole queries drawn at random, in a shuffled order: a query keeps all its rows, as
    in a training pass over most of train.jsonl (sft.query_pack shares a query's prefix)."""
    by_query: dict[str, list[dict]] = {}
    for r in map(json.loads, (data / "train.jsonl").read_text().splitlines()):
        by_query.setdefault(r["query"], []).append({"query": r["query"], "product": r["title"], "label": LEVEL_NAMES[r["level"]]})
    rng = random.Random(seed)
    queries, rows = sorted(by_query), []
    rng.shuffle(queries)
    for query in queries:
        if len(rows) >= n:
            break
        rows += by_query[query]
    rows = rows[:n]
    rng.shuffle(rows)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "homedepot")
    ap.add_argument("--rows", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--variants", default="fp32:default,fp32:compact,bf16:compact",
                    help="comma-separated DTYPE:INSTRUCTION[:OPTION...], DTYPE in fp32|bf16|auto, INSTRUCTION in "
                         "default|compact; options: N or topN (LoRA on the top N layers only; default all), compile "
                         "(sft.compile; default eager, as the code ran before it), packN (sft.query_pack N), bN (batch "
                         "size N: sequences a step, so rows with packs)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--lora-dropout", type=float, default=0.0)
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args()

    device = pick_device(args.device)
    facts = {**cpu_facts(), "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
             "dtype_auto": str(pick_dtype("auto", device)), "torch": torch.__version__, "command": " ".join(sys.argv)}
    console = Console()
    console.print(facts)
    base = resolve_model_path(args.model)
    from transformers import AutoTokenizer

    tokenizer, scheme = AutoTokenizer.from_pretrained(base), load_scheme()
    rows = rows_from(args.data, args.rows, seed=0)
    results = []
    for variant in args.variants.split(","):
        dtype, instruction, *options = variant.split(":")
        top = next((int(o.removeprefix("top")) for o in options if o.removeprefix("top").isdigit()), None)
        pack = next((int(o[4:]) for o in options if o.startswith("pack")), 1)
        batch = next((int(o[1:]) for o in options if o.startswith("b") and o[1:].isdigit()), args.batch_size)
        lora = LoraConfig(r=16, alpha=32, dropout=args.lora_dropout, top_layers=top)
        cfg = SftConfig(epochs=1, batch_size=batch, learning_rate=2e-4, max_length=256, save_steps=10**6,
                        dtype={"fp32": "float32", "bf16": "bfloat16"}.get(dtype, dtype), compile="compile" in options,
                        query_pack=pack)
        prompt = PromptSpec(instruction=instruction, product_fields=()).build(tokenizer, scheme)
        with tempfile.TemporaryDirectory() as out:
            sft.train(base, rows, prompt, cfg, lora, Path(out), seed=0, device=device, log=console.print)
            speed = json.loads(next(Path(out).glob(f"phase*/{sft.STATS}")).read_text())
        speed.update(variant=variant, tokens_per_row=round(speed["tokens_per_s"] / speed["rows_per_s"], 1),
                     epoch_minutes=round(EPOCH_ROWS / speed["rows_per_s"] / 60, 1))
        results.append(speed)
        console.print(speed)
    table = Table(title=f"SFT speed, {args.rows} Home Depot rows (whole queries), batch {args.batch_size} unless the variant "
                        f"says bN, LoRA r=16 on the linear layers — "
                        f"{facts['device']} ({cpu_summary()})")
    for column in ("variant", "weights", "tokens/row", "rows/s", "tokens/s", "steps", "s/step", "epoch of 59,010 rows"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for r in results:
        table.add_row(r["variant"], r["dtype"].replace("torch.", ""), f"{r['tokens_per_row']}", f"{r['rows_per_s']:.2f}",
                      f"{r['tokens_per_s']:.0f}", f"{r['steps']}", f"{r['seconds'] / max(1, r['steps']):.2f}", f"{r['epoch_minutes']:.0f} min")
    console.print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": facts, "results": results}, indent=1))


if __name__ == "__main__":
    main()
