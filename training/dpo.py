"""Stages `dpo_debias` (LREF) and `dpo_passn` (TaoSR1): preference pairs on our own prompt tokens,
trained with TRL's DPOTrainer (LoRA on the previous stage's merged model, which is also the
reference model), then merged.

dpo_debias: the model's ranked label candidates on training rows; where its top-1 over-grades the
  gold label (the optimistic bias), chosen = the gold label, rejected = that top-1.
dpo_passn: N sampled answers per row; chosen = a correct sample, rejected = a wrong one; when no
  sample is correct, chosen = the rule generator's (or teacher's) answer for the gold label.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from reranker.core import LabelScheme, PromptFormat

from .config import DpoConfig, LoraConfig
from .cot import rule_rationale, wrong_decision


def debias_pairs(rows: list[dict], probs, prompt: PromptFormat, scheme: LabelScheme) -> tuple[list[dict], dict]:
    pairs, errors, optimistic = [], 0, 0
    for row, p in zip(rows, probs):
        gold = scheme.names.index(row["label"])
        top = int(p.argmax())
        if top == gold:
            continue
        errors += 1
        if top < gold:  # levels are best first: a smaller index is a higher grade
            optimistic += 1
            pairs.append({"prompt_ids": prompt.encode(row["query"], row["product"]).prompt_ids,
                          "chosen_ids": prompt.target_ids(row["label"]),
                          "rejected_ids": prompt.target_ids(scheme.levels[top])})
    return pairs, {"train_errors": errors, "train_optimistic_errors": optimistic, "pairs": len(pairs)}


def passn_pairs(rows: list[dict], samples: list[list[dict]], prompt: PromptFormat, scheme: LabelScheme,
                seed: int) -> tuple[list[dict], dict]:
    rng = random.Random(seed)
    pairs, from_generator, all_right = [], 0, 0
    for row, answers in zip(rows, samples):
        right = [a for a in answers if a["label"] == row["label"]]
        wrong = [a for a in answers if a["label"] != row["label"]]
        if not wrong:
            all_right += 1
            continue
        if right:
            chosen = rng.choice(right)["ids"]
        else:  # none correct: the rule generator's answer for the gold label (answer-first)
            level = scheme.level(row["label"])
            reason = rule_rationale("EE", row["query"], row["product"], level, scheme, wrong_decision(scheme, level, None))
            chosen = prompt.target_ids(level, reason)
            from_generator += 1
        pairs.append({"prompt_ids": prompt.encode(row["query"], row["product"]).prompt_ids,
                      "chosen_ids": chosen, "rejected_ids": rng.choice(wrong)["ids"]})
    correct_any = sum(any(a["label"] == r["label"] for a in s) for r, s in zip(rows, samples))
    return pairs, {"rows": len(rows), "pairs": len(pairs), "chosen_from_generator": from_generator,
                   "all_samples_right": all_right, "pass_at_n": round(correct_any / max(len(rows), 1), 4)}


def train(base: Path, pairs: list[dict], tokenizer, cfg: DpoConfig, lora_cfg: LoraConfig, out: Path, seed: int,
          device: str, log=print) -> Path:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from .adapter import peft_config, precision, save_model
    from .sft import last_checkpoint, merge_and_save

    class TokenDPOTrainer(DPOTrainer):
        """Our rows are already token ids from the relevance core; TRL's text preparation would
        re-tokenize them, so pre-tokenized datasets pass through to its collator untouched."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "prompt_ids" in dataset.column_names:
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    weights, autocast = precision(cfg.dtype, device, lora_cfg)
    if not pairs:
        log("no preference pairs: the model is passed on unchanged")
        return merge_and_save(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), tokenizer, out / "model")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=weights)
    args = DPOConfig(**dict(
        output_dir=str(out), num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate, beta=cfg.beta,
        per_device_train_batch_size=cfg.batch_size, max_length=cfg.max_length, seed=seed, data_seed=seed,
        save_steps=cfg.save_steps, save_total_limit=1, logging_steps=10, report_to=[],
        use_cpu=device == "cpu", bf16=autocast, fp16=False,
    ) | cfg.trl)
    trainer = TokenDPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs),
                              processing_class=tokenizer, peft_config=peft_config(model, lora_cfg))
    trainer.train(resume_from_checkpoint=last_checkpoint(out))
    return save_model(trainer, base, tokenizer, out)
