"""Stage `sft`: TRL's SFTTrainer on answer-first rows, loss on the completion only, LoRA or full,
with the Multi-CoT curriculum EE -> RA -> DR as consecutive phases. Each phase checkpoints; a
killed run resumes inside the phase it was in and skips the phases already finished."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from reranker.core import PromptFormat

from .config import SftConfig
from .rows import sft_row

DONE = "phase.done"


def phases(rows: list[dict], curriculum: list[str], balance: bool = False, seed: int = 0) -> list[tuple[str, list[dict]]]:
    """Rows grouped into curriculum phases; rows without a rationale style form one 'label' phase."""
    plain = [r for r in rows if not r.get("style")]
    groups = [("label", plain)] if plain else [(style, [r for r in rows if r["style"] == style]) for style in curriculum
                                               if any(r["style"] == style for r in rows)]
    return [(style, balanced(group, seed) if balance else group) for style, group in groups]


def balanced(rows: list[dict], seed: int) -> list[dict]:
    """Every label upsampled (with replacement, seeded) to the largest label's count."""
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    target = max(map(len, by_label.values()))
    rng = random.Random(seed)
    out = [row for label in sorted(by_label) for row in by_label[label] + rng.choices(by_label[label], k=target - len(by_label[label]))]
    rng.shuffle(out)
    return out


def _dataset(rows: list[dict], prompt: PromptFormat, max_length: int):
    from datasets import Dataset

    items = []
    for r in rows:
        row = sft_row(prompt, r["query"], r["product"], r["label"], r.get("reasoning"))
        if len(row["input_ids"]) > max_length:  # keep the answer: cut the rationale, never the prompt
            cut = max(row["prompt_len"] + 2, max_length)
            row["input_ids"], row["completion_mask"] = row["input_ids"][:cut], row["completion_mask"][:cut]
        items.append({"input_ids": row["input_ids"], "completion_mask": row["completion_mask"]})
    return Dataset.from_list(items)


def last_checkpoint(path: Path) -> str | None:
    """The newest complete checkpoint: a run killed while saving leaves one without its
    trainer_state.json (written last), which must not be resumed from."""
    points = sorted((p for p in path.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
                    key=lambda p: int(p.name.split("-")[1]))
    return str(points[-1]) if points else None


def train(base: str, rows: list[dict], prompt: PromptFormat, cfg: SftConfig, out: Path, seed: int,
          device: str, log=print) -> Path:
    """-> a full model directory (LoRA merged in), which later stages start from and serve loads."""
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM") if cfg.lora.enabled else None
    for index, (style, phase_rows) in enumerate(phases(rows, cfg.curriculum, cfg.balance_classes, seed)):
        phase_dir = out / f"phase{index}-{style}"
        final = phase_dir / "final"
        if (phase_dir / DONE).exists():
            log(f"sft phase {style}: done earlier, loading it")
            model = (PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), final,
                                               is_trainable=True) if lora else AutoModelForCausalLM.from_pretrained(final))
            continue
        log(f"sft phase {style}: {len(phase_rows)} rows")
        args = SFTConfig(
            output_dir=str(phase_dir), num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
            per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
            max_length=cfg.max_length, completion_only_loss=True, seed=seed, data_seed=seed,
            save_steps=cfg.save_steps, save_total_limit=1, logging_steps=10, report_to=[],
            use_cpu=device == "cpu", bf16=False, fp16=False, lr_scheduler_type="cosine", warmup_steps=0.05,  # a float below 1 is a ratio
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=_dataset(phase_rows, prompt, cfg.max_length),
                             processing_class=prompt.tokenizer,
                             peft_config=lora if lora and not isinstance(model, PeftModel) else None)
        trainer.train(resume_from_checkpoint=last_checkpoint(phase_dir))
        model = trainer.model
        model.save_pretrained(final)
        prompt.tokenizer.save_pretrained(final)
        (phase_dir / DONE).write_text(str(trainer.state.global_step))
    return save_merged(model, prompt.tokenizer, out / "model")


def save_merged(model, tokenizer, target: Path) -> Path:
    """Merge a LoRA adapter (if any) and save a plain HF model dir: the next stage's reference
    model and what `lref serve --model` loads as is."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
