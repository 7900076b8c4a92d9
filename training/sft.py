"""Stage `sft`: TRL's SFTTrainer on answer-first rows, loss on the completion only, LoRA or full,
with the Multi-CoT curriculum EE -> RA -> DR as consecutive phases. Each phase checkpoints; a
killed run resumes inside the phase it was in and skips the phases already finished."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import torch

from reranker.core import LabelHead, PromptFormat
from reranker.models.loading import pick_dtype

from .config import SftConfig
from .rows import sft_row

DONE = "phase.done"
STATS = "speed.json"  # rows/s and tokens/s of the phase (bench/train_speed.py reads it)


def phases(rows: list[dict], curriculum: list[str], balance: bool = False, seed: int = 0,
           per_class: int | None = None) -> list[tuple[str, list[dict]]]:
    """Rows grouped into curriculum phases; rows without a rationale style form one 'label' phase."""
    plain = [r for r in rows if not r.get("style")]
    groups = [("label", plain)] if plain else [(style, [r for r in rows if r["style"] == style]) for style in curriculum
                                               if any(r["style"] == style for r in rows)]
    return [(style, balanced(group, seed, per_class) if balance else group) for style, group in groups]


def balanced(rows: list[dict], seed: int, per_class: int | None = None, seen: frozenset[int] = frozenset()) -> list[dict]:
    """Every label brought to the same count (seeded): the largest label's, or `per_class` — a
    larger label is then sampled down without replacement, a smaller one up with it. Rows whose
    id() is in `seen` (trained on by an earlier pass) are taken only when the others run out."""
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    target = per_class or max(map(len, by_label.values()))
    rng = random.Random(seed)
    out = []
    for label in sorted(by_label):
        group = by_label[label]
        fresh = [r for r in group if id(r) not in seen]  # all of the group when nothing was seen
        if len(fresh) >= target:
            out += rng.sample(fresh, target)
        elif len(group) >= target:
            out += fresh + rng.sample([r for r in group if id(r) in seen], target - len(fresh))
        else:
            out += group + rng.choices(group, k=target - len(group))
    rng.shuffle(out)
    return out


def plan(rows: list[dict], cfg: SftConfig, seed: int) -> list[tuple[str, list[dict], float]]:
    """(name, rows, learning rate) of every phase: the curriculum's phases, then those of each of
    `cfg.more_passes` over a fresh balanced sample (seed + pass number) that prefers unseen rows."""
    first = phases(rows, cfg.curriculum, cfg.balance_classes, seed, cfg.rows_per_class)
    out = [(style, group, cfg.learning_rate) for style, group in first]
    seen = {id(r) for _, group in first for r in group}
    styles = phases(rows, cfg.curriculum)  # the rows of each curriculum phase, unbalanced: each pass samples them
    for number, extra in enumerate(cfg.more_passes, start=2):
        for style, group in styles:
            sample = balanced(group, seed + number - 1, extra.rows_per_class, frozenset(seen))
            seen |= {id(r) for r in sample}
            out.append((f"{style}@pass{number}", sample, extra.learning_rate))
    return out


def label_targets(rows: list[dict], names: list[str], loss: str, sigma: float) -> list[list[float]] | None:
    """Each row's target distribution over the scheme's labels (scheme order) for label_loss
    'labels' (one-hot) and 'rating' (soft, from the raters' mean); None for 'token'."""
    if loss == "token":
        return None
    centres = {}
    if loss == "rating":
        for name in names:
            ratings = [r["rating"] for r in rows if r["label"] == name and "rating" in r]
            if ratings:
                centres[name] = sum(ratings) / len(ratings)
    out = []
    for r in rows:
        if "rating" in r and centres:
            weights = [math.exp(-(r["rating"] - centres[n]) ** 2 / (2 * sigma ** 2)) if n in centres else 0.0 for n in names]
        else:  # 'labels', or a row without a rating
            weights = [float(n == r["label"]) for n in names]
        total = sum(weights)
        out.append([w / total for w in weights])
    return out


def _dataset(rows: list[dict], prompt: PromptFormat, max_length: int, targets: list[list[float]] | None = None):
    from datasets import Dataset

    items = []
    for i, r in enumerate(rows):
        row = sft_row(prompt, r["query"], r["product"], r["label"], r.get("reasoning"))
        if len(row["input_ids"]) > max_length:  # keep the answer: cut the rationale, never the prompt
            cut = max(row["prompt_len"] + 2, max_length)
            row["input_ids"], row["completion_mask"] = row["input_ids"][:cut], row["completion_mask"][:cut]
        items.append({"input_ids": row["input_ids"], "completion_mask": row["completion_mask"]}
                     | ({"target": targets[i]} if targets else {}))
    return Dataset.from_list(items)


def completion_loss(model, inputs: dict, num_items: int | torch.Tensor | None = None,
                    label_ids: list[int] | None = None) -> torch.Tensor:
    """Mean cross-entropy over the completion tokens, with the LM head run on those positions only.
    (TRL's fused head scores every position where Triton is missing, CPUs included: for an
    answer-first label that is ~40x the head work and most of a CPU step.) With `inputs["target"]`
    (label_loss labels/rating), the answer position's term is the cross-entropy between that
    target and the softmax over `label_ids` alone, which is what serving reads."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers live in it
    kwargs = {k: inputs[k] for k in ("attention_mask", "position_ids") if k in inputs}
    hidden = base.get_decoder()(input_ids=inputs["input_ids"], use_cache=False, **kwargs).last_hidden_state
    targets = inputs["labels"][:, 1:]
    scored = targets != -100
    count = torch.as_tensor(num_items if num_items is not None else scored.sum()).clamp(min=1)
    if "target" in inputs:
        answer = torch.zeros_like(scored)  # the first completion position of each row holds the label
        answer[torch.arange(len(scored)), scored.int().argmax(dim=1)] = True
        answer &= scored
        label_logits = LabelHead(base, label_ids).logits(hidden[:, :-1][answer])  # serving's own head
        total = -(inputs["target"][answer.any(dim=1)].float() * label_logits.log_softmax(-1)).sum()
        scored = scored & ~answer
    else:
        total = torch.zeros((), device=hidden.device)
    if scored.any():
        logits = base.get_output_embeddings()(hidden[:, :-1][scored]).float()
        total = total + torch.nn.functional.cross_entropy(logits, targets[scored], reduction="sum")
    return total / count


class _WithTargets:
    """TRL's collator, plus the rows' label targets as one tensor (TRL's ignores extra columns)."""

    def __init__(self, collate) -> None:
        self.collate = collate

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.collate(examples)
        if "target" in examples[0]:
            batch["target"] = torch.tensor([e["target"] for e in examples])
        return batch


def _trainer_class(label_ids: list[int]):
    from trl import SFTTrainer

    class CompletionSFTTrainer(SFTTrainer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.data_collator = _WithTargets(self.data_collator)

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if "target" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "target"]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = completion_loss(model, inputs, num_items_in_batch, label_ids)
            return (loss, None) if return_outputs else loss

    return CompletionSFTTrainer


def phase_dirs(out: Path) -> list[Path]:
    """The phase folders `train` wrote under `out` (phase0-label, phase1-label, ...), in training order."""
    return sorted(out.glob("phase*"), key=lambda p: int(p.name[5:].split("-")[0]))


def last_checkpoint(path: Path) -> str | None:
    """The newest complete checkpoint: a run killed while saving leaves one without its
    trainer_state.json (written last), which must not be resumed from."""
    points = sorted((p for p in path.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
                    key=lambda p: int(p.name.split("-")[1]))
    return str(points[-1]) if points else None


def train(base: str, rows: list[dict], prompt: PromptFormat, cfg: SftConfig, out: Path, seed: int,
          device: str, log=print) -> tuple[Path, dict[str, int]]:
    """-> a full model directory (LoRA merged in), which later stages start from and serve loads,
    and the rows each curriculum phase trained on (after class balancing)."""
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    # LoRA trains fp32 adapters over frozen base weights, which may then be bf16; full fine-tuning
    # keeps fp32 master weights and autocasts the matmuls instead.
    fast = pick_dtype(cfg.dtype, device) == torch.bfloat16
    weights = torch.bfloat16 if fast and cfg.lora.enabled else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=weights)
    layers = model.config.get_text_config().num_hidden_layers
    top = range(layers - min(cfg.lora.top_layers, layers), layers) if cfg.lora.top_layers else None
    targets = cfg.lora.target_modules
    if top and targets == "all-linear":  # PEFT takes a layer subset only with module names
        targets = sorted({name.rsplit(".", 1)[-1] for name, module in model.get_decoder().layers[-1].named_modules()
                          if isinstance(module, torch.nn.Linear)})
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=targets, layers_to_transform=list(top) if top else None,
                      task_type="CAUSAL_LM") if cfg.lora.enabled else None
    trained = plan(rows, cfg, seed)
    counts = {style: len(phase_rows) for style, phase_rows, _ in trained}
    for index, (style, phase_rows, learning_rate) in enumerate(trained):
        phase_dir = out / f"phase{index}-{style.split('@')[0]}"
        final = phase_dir / "final"
        if (phase_dir / DONE).exists():
            log(f"sft phase {style}: done earlier, loading it")
            model = (PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=weights), final,
                                               is_trainable=True) if lora else AutoModelForCausalLM.from_pretrained(final))
            continue
        log(f"sft phase {style}: {len(phase_rows)} rows")
        args = SFTConfig(
            output_dir=str(phase_dir), num_train_epochs=cfg.epochs, learning_rate=learning_rate,
            per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
            max_length=cfg.max_length, completion_only_loss=True, seed=seed, data_seed=seed,
            gradient_checkpointing=False,  # TRL's default trades ~30% more compute for memory a 135M model does not need
            save_steps=cfg.save_steps, save_total_limit=1, logging_steps=10, report_to=[],
            use_cpu=device == "cpu", bf16=fast and not cfg.lora.enabled, fp16=False,
            lr_scheduler_type="cosine", warmup_steps=0.05,  # a float below 1 is a ratio
            train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        )
        targets = label_targets(phase_rows, prompt.scheme.names, cfg.label_loss, cfg.rating_sigma)
        trainer = _trainer_class(prompt.label_token_ids)(
                             model=model, args=args, train_dataset=_dataset(phase_rows, prompt, cfg.max_length, targets),
                             processing_class=prompt.tokenizer,
                             peft_config=lora if lora and not isinstance(model, PeftModel) else None)
        result = trainer.train(resume_from_checkpoint=last_checkpoint(phase_dir))
        model = trainer.model
        tokens = sum(len(r["input_ids"]) for r in trainer.train_dataset)  # what the rows hold, padding not counted
        (phase_dir / STATS).write_text(json.dumps({
            "rows": len(phase_rows), "epochs": cfg.epochs, "steps": trainer.state.global_step, "dtype": str(weights),
            "seconds": round(result.metrics["train_runtime"], 2),
            "rows_per_s": round(cfg.epochs * len(phase_rows) / result.metrics["train_runtime"], 3),
            "tokens_per_s": round(cfg.epochs * tokens / result.metrics["train_runtime"], 1)}))
        model.save_pretrained(final)
        prompt.tokenizer.save_pretrained(final)
        (phase_dir / DONE).write_text(str(trainer.state.global_step))
    if lora:
        return save_merged(base, final, out / "model"), counts
    return merge_and_save(model, prompt.tokenizer, out / "model"), counts


def save_merged(base: str, adapter: Path, target: Path) -> Path:
    """The adapter merged into the fp32 base exactly as serving merges it at load (whatever dtype
    it trained in), saved as a plain HF model dir: the next stage's reference model, and what
    eval judges."""
    from reranker.models.loading import ModelSpec, load_model

    model, tokenizer, _ = load_model(ModelSpec(model=base, adapter=str(adapter), dtype="float32", device="cpu"))
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def merge_and_save(model, tokenizer, target: Path) -> Path:
    """Merge a trained model's LoRA adapter (if any) and save a plain HF model dir."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
