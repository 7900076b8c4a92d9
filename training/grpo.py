"""Stage `grpo` (TaoSR1): TRL's GRPOTrainer with a correct-label reward (+ a small format reward),
on prompts chosen by difficulty-based dynamic sampling: N rollouts per prompt first, keep a prompt
only if 0 < #correct < γ (too easy and hopeless prompts carry no group advantage), then
class-balanced downsampling so every gold label gets the same number of prompts."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import torch

from reranker.core import LabelScheme, PromptFormat

from .config import GrpoConfig, LoraConfig


def dynamic_sample(rows: list[dict], samples: list[list[dict]], cfg: GrpoConfig, seed: int) -> tuple[list[dict], dict]:
    gamma = cfg.gamma or cfg.num_generations
    correct = [sum(a["label"] == r["label"] for a in s) for r, s in zip(rows, samples)]
    informative = [r for r, c in zip(rows, correct) if 0 < c < gamma]
    by_label: dict[str, list[dict]] = defaultdict(list)
    for row in informative:
        by_label[row["label"]].append(row)
    rng = random.Random(seed)
    per_class = min((len(v) for v in by_label.values()), default=0)
    per_class = min(per_class, cfg.max_prompts // max(len(by_label), 1)) if cfg.max_prompts else per_class
    kept = [row for label in sorted(by_label) for row in rng.sample(by_label[label], per_class)]
    rng.shuffle(kept)
    return kept, {"rows": len(rows), "all_wrong": correct.count(0),
                  "all_right_or_above_gamma": sum(c >= gamma for c in correct),
                  "informative": len(informative), "kept_balanced": len(kept), "per_class": per_class}


def rewards(prompt: PromptFormat, scheme: LabelScheme):
    tokens = {lv.token: lv.name for lv in scheme.levels}

    def correct_label(completions, gold, **_) -> list[float]:
        return [1.0 if tokens.get(c.lstrip()[:1]) == g else 0.0 for c, g in zip(completions, gold)]

    def answer_first(completions, **_) -> list[float]:
        # The label token must come first, alone on its line (what serving reads).
        return [0.1 if c[:1] in tokens and (len(c) == 1 or c[1] in "\n") else 0.0 for c in completions]

    return [correct_label, answer_first]


def prompt_texts(rows: list[dict], prompt: PromptFormat) -> list[tuple[str, list[int]]]:
    """Per row its decoded prompt text and our prompt ids. Re-tokenizing the text would merge
    tokens across the query/product boundaries our prompt is encoded in, so GRPO is handed the ids
    (looked up by text) instead."""
    out = []
    for row in rows:
        ids = prompt.encode(row["query"], row["product"]).prompt_ids
        out.append((prompt.tokenizer.decode(ids), ids))
    return out


def train(base: Path, rows: list[dict], prompt: PromptFormat, cfg: GrpoConfig, lora_cfg: LoraConfig, out: Path,
          seed: int, device: str, log=print) -> Path:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from .adapter import peft_config, precision, save_model
    from .sft import last_checkpoint, merge_and_save

    class TokenGRPOTrainer(GRPOTrainer):
        """Generates from the relevance core's prompt ids, not from a re-tokenization of their text."""

        def _tokenize_prompts(self, prompts: list):
            return [ids_by_text[text] for text in prompts], None, {}

    weights, autocast = precision(cfg.dtype, device, lora_cfg)
    if not rows:
        log("dynamic sampling kept no prompts: the model is passed on unchanged")
        return merge_and_save(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), prompt.tokenizer,
                              out / "model")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=weights)
    texts = prompt_texts(rows, prompt)
    ids_by_text = dict(texts)
    dataset = Dataset.from_list([{"prompt": text, "gold": row["label"]} for (text, _), row in zip(texts, rows)])
    args = GRPOConfig(**dict(
        output_dir=str(out), num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate, seed=seed, data_seed=seed,
        num_generations=cfg.num_generations, per_device_train_batch_size=cfg.num_generations * cfg.prompts_per_step,
        max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature, save_steps=cfg.save_steps,
        save_total_limit=1, logging_steps=5, report_to=[], use_cpu=device == "cpu", bf16=autocast, fp16=False,
    ) | cfg.trl)
    trainer = TokenGRPOTrainer(model=model, reward_funcs=rewards(prompt, prompt.scheme), args=args, train_dataset=dataset,
                               processing_class=prompt.tokenizer, peft_config=peft_config(model, lora_cfg))
    trainer.train(resume_from_checkpoint=last_checkpoint(out))
    return save_model(trainer, base, prompt.tokenizer, out)
