"""Stage `sft`: TRL's SFTTrainer on answer-first rows, loss on the completion only, LoRA or full,
with the Multi-CoT curriculum EE -> RA -> DR as consecutive phases. Each phase checkpoints; a
killed run resumes inside the phase it was in and skips the phases already finished."""

from __future__ import annotations

import functools
import json
import math
import random
import time
from pathlib import Path
from typing import NamedTuple

import torch

from reranker.core import LabelHead, PromptFormat
from .adapter import peft_config, precision, record_args
from .config import LoraConfig, SftConfig
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


class Phase(NamedTuple):
    """One SFT phase as planned: its name, rows, rate, teacher weight and the step it ends at (0: its end)."""

    name: str
    rows: list[dict]
    learning_rate: float
    teacher_weight: float
    stop_after_steps: int


def plan(rows: list[dict], cfg: SftConfig, seed: int) -> list[Phase]:
    """Every phase: the curriculum's phases, then those of each of `cfg.more_passes` over a fresh
    balanced sample (seed + pass number) that prefers unseen rows."""
    first = phases(rows, cfg.curriculum, cfg.balance_classes, seed, cfg.rows_per_class)
    out = [Phase(style, group, cfg.learning_rate, cfg.teacher_weight, cfg.stop_after_steps) for style, group in first]
    seen = {id(r) for _, group in first for r in group}
    styles = phases(rows, cfg.curriculum)  # the rows of each curriculum phase, unbalanced: each pass samples them
    for number, extra in enumerate(cfg.more_passes, start=2):
        for style, group in styles:
            sample = balanced(group, seed + number - 1, extra.rows_per_class, frozenset(seen))
            seen |= {id(r) for r in sample}
            out.append(Phase(f"{style}@pass{number}", sample, extra.learning_rate, extra.teacher_weight,
                             extra.stop_after_steps))
    return out


def label_targets(rows: list[dict], names: list[str], loss: str, sigma: float,
                  teacher_weight: float = 0.0) -> list[list[float]] | None:
    """Each row's target distribution over the scheme's labels (scheme order) for label_loss
    'labels' (one-hot) and 'rating' (soft, from the raters' mean); None for 'token'. A row with a
    `teacher` distribution gets (1 - teacher_weight) x that target + teacher_weight x the teacher's."""
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
        target = [w / total for w in weights]
        if teacher_weight and r.get("teacher"):
            target = [(1 - teacher_weight) * t + teacher_weight * p for t, p in zip(target, r["teacher"])]
        out.append(target)
    return out


def _dataset(rows: list[dict], prompt: PromptFormat, max_length: int, targets: list[list[float]] | None = None,
             pack: int = 1):
    """One training sequence per row, or with `pack` > 1 per query pack (`query_packs`). Each
    sequence carries `segments` (0 the shared prefix, k its k-th product and answer) and, with a
    label loss, one target per answer in sequence order."""
    from datasets import Dataset

    items = []
    for group in query_packs(rows, prompt, max_length, pack):
        prefix = prompt.query_ids(rows[group[0]]["query"])
        ids, mask, segments = list(prefix), [0] * len(prefix), [0] * len(prefix)
        for k, i in enumerate(group, start=1):
            r = rows[i]
            row = sft_row(prompt, r["query"], r["product"], r["label"], r.get("reasoning"))
            if len(row["input_ids"]) > max_length:  # keep the answer: cut the rationale, never the prompt
                cut = max(row["prompt_len"] + 2, max_length)
                row["input_ids"], row["completion_mask"] = row["input_ids"][:cut], row["completion_mask"][:cut]
            ids += row["input_ids"][len(prefix):]
            mask += row["completion_mask"][len(prefix):]
            segments += [k] * (len(row["input_ids"]) - len(prefix))
        items.append({"input_ids": ids, "completion_mask": mask, "segments": segments}
                     | ({"target": [targets[i] for i in group]} if targets else {}))
    return Dataset.from_list(items)


def query_packs(rows: list[dict], prompt: PromptFormat, max_length: int, pack: int) -> list[list[int]]:
    """Row indices grouped into sequences: with pack 1 each row alone; else up to `pack` rows of
    one query (in the order they come) whose products share that query's prefix, as serving
    shares it, while the sequence stays within max_length: fewer tokens per row."""
    if pack <= 1:
        return [[i] for i in range(len(rows))]
    by_query: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_query.setdefault(r["query"], []).append(i)
    out = []
    for query, indices in by_query.items():
        prefix = len(prompt.query_ids(query))
        current, length = [], prefix
        for i in indices:
            r = rows[i]
            size = len(prompt.doc_ids(r["product"])) + len(prompt.target_ids(r["label"], r.get("reasoning")))
            if current and (len(current) == pack or length + size > max_length):
                out.append(current)
                current, length = [], prefix
            current.append(i)
            length += size
        out.append(current)
    return out


def segment_mask(segments: torch.Tensor) -> torch.Tensor:
    """[B, T] segment ids (0 shared prefix, k > 0 a product, -1 padding) -> a [B, 1, T, T] boolean
    mask: causal, and a product sees the prefix and itself only, as in serving's shared-prefix
    attention. Padding sees padding only: no row is all masked (SDPA would answer NaN there,
    and NaN times a zero gradient is still NaN in the weights' gradients)."""
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    query, key = segments[:, :, None], segments[:, None, :]
    return (causal & ((query == key) | ((key == 0) & (query > 0))))[:, None]


def segment_positions(segments: torch.Tensor) -> torch.Tensor:
    """Position ids that restart after the prefix for every product, as if each row were alone:
    a token's position is the prefix length plus the number of earlier tokens in its segment."""
    length = segments.shape[1]
    earlier = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril(-1)
    offset = ((segments[:, :, None] == segments[:, None, :]) & earlier).sum(-1)
    prefix = (segments == 0).sum(1, keepdim=True)
    return torch.where(segments > 0, prefix + offset, torch.where(segments == 0, offset, 0))


def completion_loss(model, inputs: dict, num_items: int | torch.Tensor | None = None,
                    label_ids: list[int] | None = None) -> torch.Tensor:
    """Mean cross-entropy over the completion tokens, with the LM head run on those positions only.
    (TRL's fused head scores every position where Triton is missing, CPUs included: for an
    answer-first label that is ~40x the head work and most of a CPU step.) With `inputs["target"]`
    (label_loss labels/rating), the answer position's term is the cross-entropy between that
    target and the softmax over `label_ids` alone, which is what serving reads."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers live in it
    kwargs = {k: inputs[k] for k in ("attention_mask", "position_ids") if k in inputs}
    mask = kwargs.get("attention_mask")
    if mask is not None and mask.dim() == 4 and base.config._attn_implementation == "eager":
        dtype = base.get_input_embeddings().weight.dtype  # eager attention adds the mask to its scores
        kwargs["attention_mask"] = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    hidden = base.get_decoder()(input_ids=inputs["input_ids"], use_cache=False, **kwargs).last_hidden_state
    targets = inputs["labels"][:, 1:]
    scored = targets != -100
    count = torch.as_tensor(num_items if num_items is not None else scored.sum()).clamp(min=1)
    if "target" in inputs:
        # the label is the first completion token of each row (of each product in a query pack)
        answer = scored & ~torch.nn.functional.pad(scored[:, :-1], (1, 0), value=False)
        label_logits = LabelHead(base, label_ids).logits(hidden[:, :-1][answer])  # serving's own head
        total = -(inputs["target"].float() * label_logits.log_softmax(-1)).sum()
        scored = scored & ~answer
    else:
        total = torch.zeros((), device=hidden.device)
    if scored.any():
        logits = base.get_output_embeddings()(hidden[:, :-1][scored]).float()
        total = total + torch.nn.functional.cross_entropy(logits, targets[scored], reduction="sum")
    return total / count


class _WithTargets:
    """TRL's collator, plus what it ignores: the label targets as one [answers, labels] tensor in
    sequence order, and for query packs the segment mask and per-product positions."""

    def __init__(self, collate) -> None:
        self.collate = collate

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.collate([{k: v for k, v in e.items() if k not in ("target", "segments")} for e in examples])
        if "target" in examples[0]:
            batch["target"] = torch.tensor([t for e in examples for t in e["target"]])
        if any(max(e["segments"]) > 1 for e in examples):  # a pack: rows alone need no more than TRL's mask
            width = batch["input_ids"].shape[1]
            cut = [e["segments"][: len(e["input_ids"])] for e in examples]  # as TRL truncated the ids
            segments = torch.tensor([c + [-1] * (width - len(c)) for c in cut])
            batch["attention_mask"], batch["position_ids"] = segment_mask(segments), segment_positions(segments)
        return batch


def _stop_callback(deadline: float | None, stop_after_steps: int):
    """Stops training at the first step that ends after `deadline` (a Unix time: a run on a lent
    machine then still has its time for eval and export) or at step `stop_after_steps` (a recipe
    replaying such a run). The phase is kept as it stands."""
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if (deadline is not None and time.time() >= deadline) or 0 < stop_after_steps <= state.global_step:
                control.should_training_stop = True

    return Stop()


def _trainer_class(label_ids: list[int]):
    from trl import SFTTrainer

    class CompletionSFTTrainer(SFTTrainer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.data_collator = _WithTargets(self.data_collator)

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            extra = [c for c in ("target", "segments") if c not in self._signature_columns]
            self._signature_columns = [*self._signature_columns, *extra]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = completion_loss(model, inputs, num_items_in_batch, label_ids)
            return (loss, None) if return_outputs else loss

    return CompletionSFTTrainer


@functools.cache
def _compiler_works(device: str) -> str | None:
    """None when torch.compile builds and runs a small kernel on `device`, else why not (a CPU
    needs a C++ compiler and Python's headers; compile errors surface only at the first call)."""
    try:
        torch.compile(lambda x: torch.nn.functional.silu(x) * x + 1, dynamic=True)(torch.ones(8, device=device))
        return None
    except Exception as exc:  # noqa: BLE001 - the backends fail in many ways; any of them means eager
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'no detail'}"


def use_compile(setting: bool | str, device: str, log=print) -> bool:
    """sft.compile: true / false as given; auto compiles where a probe compile works."""
    if setting is False:
        return False
    failure = _compiler_works(device)
    if failure and setting is True:
        raise RuntimeError(f"sft.compile: true, but torch.compile does not work here ({failure})")
    if failure:
        log(f"sft: training eager, torch.compile does not work here ({failure})")
    return failure is None


def compile_layers(model) -> None:
    """Compile each decoder layer in place (parameter names and checkpoints unchanged): one graph
    with dynamic shapes serves every layer and every batch length."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for layer in base.get_decoder().layers:
        layer.compile(dynamic=True)


def phase_dirs(out: Path) -> list[Path]:
    """The phase folders `train` wrote under `out` (phase0-label, phase1-label, ...), in training order."""
    return sorted(out.glob("phase*"), key=lambda p: int(p.name[5:].split("-")[0]))


def last_checkpoint(path: Path) -> str | None:
    """The newest complete checkpoint: a run killed while saving leaves one without its
    trainer_state.json (written last), which must not be resumed from."""
    points = sorted((p for p in path.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
                    key=lambda p: int(p.name.split("-")[1]))
    return str(points[-1]) if points else None


def train(base: str, rows: list[dict], prompt: PromptFormat, cfg: SftConfig, lora_cfg: LoraConfig, out: Path,
          seed: int, device: str, log=print, deadline: float | None = None) -> tuple[Path, dict[str, int]]:
    """-> a full model directory (LoRA merged in), which later stages start from and serve loads,
    and the rows each curriculum phase trained on (after class balancing). With `deadline` (a Unix
    time) a phase stops at the first step past it and the phases after it are skipped, so that a
    budgeted run ends with a model (the counts then say how far each phase went)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    weights, autocast = precision(cfg.dtype, device, lora_cfg)
    compiled = use_compile(cfg.compile, device, log)
    # Compiled on a CPU, eager attention fuses with the rest of the layer and beats the SDPA
    # kernel on these short rows (a LoRA step of 8 x 80 tokens: 0.43 vs 0.61 s, 2-core AMX CPU).
    load = {"dtype": weights} | ({"attn_implementation": "eager"} if compiled and device == "cpu" else {})
    model = AutoModelForCausalLM.from_pretrained(base, **load)
    lora = peft_config(model, lora_cfg)
    trained = plan(rows, cfg, seed)
    counts = {phase.name: len(phase.rows) for phase in trained}
    for index, (style, phase_rows, learning_rate, teacher_weight, stop_after_steps) in enumerate(trained):
        phase_dir = out / f"phase{index}-{style.split('@')[0]}"
        if (phase_dir / DONE).exists():
            log(f"sft phase {style}: done earlier, loading it")
            final = phase_dir / "final"
            model = (PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, **load), final,
                                               is_trainable=True) if lora else AutoModelForCausalLM.from_pretrained(final, **load))
            continue
        if deadline is not None and index > 0 and time.time() >= deadline:
            log(f"sft phase {style}: skipped, past the deadline")
            counts[style] = 0
            continue  # `final` stays the last phase that trained
        final = phase_dir / "final"
        log(f"sft phase {style}: {len(phase_rows)} rows")
        args = SFTConfig(**dict(
            output_dir=str(phase_dir), num_train_epochs=cfg.epochs, learning_rate=learning_rate,
            per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
            max_length=cfg.max_length, completion_only_loss=True, seed=seed, data_seed=seed,
            gradient_checkpointing=False,  # TRL's default trades ~30% more compute for memory a 135M model does not need
            save_steps=cfg.save_steps, save_total_limit=1, logging_steps=10, report_to=[],
            use_cpu=device == "cpu", bf16=autocast, fp16=False,
            lr_scheduler_type="cosine", warmup_steps=0.05,  # a float below 1 is a ratio
            train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        ) | cfg.trl)
        targets = label_targets(phase_rows, prompt.scheme.names, cfg.label_loss, cfg.rating_sigma, teacher_weight)
        trainer = _trainer_class(prompt.label_token_ids)(
                             model=model, args=args, train_dataset=_dataset(phase_rows, prompt, cfg.max_length, targets, cfg.query_pack),
                             processing_class=prompt.tokenizer,
                             peft_config=lora if lora and not isinstance(model, PeftModel) else None,
                             callbacks=[_stop_callback(deadline, stop_after_steps)])
        if compiled:
            compile_layers(trainer.model)
        result = trainer.train(resume_from_checkpoint=last_checkpoint(phase_dir))
        model = trainer.model
        done = trainer.state.global_step / max(trainer.state.max_steps, 1)  # below 1 when stopped early
        if done < 1:
            why = f"stop_after_steps {stop_after_steps}" if 0 < stop_after_steps <= trainer.state.global_step else "the deadline"
            log(f"sft phase {style}: stopped at {why}, step {trainer.state.global_step} of {trainer.state.max_steps}")
            counts[style] = round(len(phase_rows) * min(1.0, done * cfg.epochs))
        tokens = sum(len(r["input_ids"]) for r in trainer.train_dataset)  # what the rows hold, padding not counted
        (phase_dir / STATS).write_text(json.dumps({
            "rows": len(phase_rows), "epochs": cfg.epochs, "steps": trainer.state.global_step,
            "planned_steps": trainer.state.max_steps, "dtype": str(weights),
            "compiled": compiled, "seconds": round(result.metrics["train_runtime"], 2),
            "rows_per_s": round(done * cfg.epochs * len(phase_rows) / result.metrics["train_runtime"], 3),
            "tokens_per_s": round(done * cfg.epochs * tokens / result.metrics["train_runtime"], 1)}))
        record_args(trainer, phase_dir)
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
