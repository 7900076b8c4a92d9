"""Stage `export`: the judge dir that `lref serve --judge DIR` loads (reranker/models/judge.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
from pathlib import Path

import torch

from reranker.core import DEFAULT_BETA, DEFAULT_MIN_TIER
from reranker.models.judge import CARD, card_for, write_card

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _sft_adapter(run) -> Path | None:
    """The LoRA adapter of SFT's last phase, when SFT is the last trained stage (later stages train
    adapters of their own over the merged model, which no single adapter expresses)."""
    if run.latest_model() != run.dir("sft") / "model" or not run.config.lora.enabled:
        return None
    from .sft import phase_dirs

    phases = phase_dirs(run.dir("sft"))
    final = phases[-1] / "final" if phases else None
    return final if final and all((final / f).is_file() for f in ADAPTER_FILES) else None


def _metrics(run, stage: str) -> dict:
    path = run.dir(stage) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _hardware(sft_dtype: str) -> dict:
    from reranker.models.loading import cpu_facts, pick_dtype

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {**cpu_facts(), "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "torch": torch.__version__, "sft_dtype": str(pick_dtype(sft_dtype, device)).replace("torch.", "")}


def _training(run) -> dict:
    cfg = run.config
    data = {}
    for role in ("train", "eval"):
        value = getattr(cfg.data, role)
        if value and cfg.path(value).is_file():
            data[role] = {"file": value, "sha256": _sha256(cfg.path(value))}
    stages = {name: _metrics(run, name) for name in ("data", "select", "cot", "sft", "dpo_debias", "dpo_passn", "grpo")}
    settings = "".join(f" --set {shlex.quote(setting)}" for setting in cfg.settings)
    return {"command": f"lref train --config {cfg.config_file or '<config>'}{settings}",
            "config": cfg.config_text, "settings": list(cfg.settings), "data": data, "hardware": _hardware(cfg.sft.dtype),
            "stages": {name: m for name, m in stages.items() if m}}


def _readme(card, serve: str) -> str:
    m = card.metrics
    per_class = ", ".join(f"{name} {c['f1']:.3f}" for name, c in m.get("per_class", {}).items())
    lines = [
        f"# Judge `{card.name}`", "",
        f"A relevance judge for `lref serve --judge DIR`: {'a LoRA adapter over' if card.weights == 'adapter' else 'a full fine-tune of'} "
        f"`{card.base_model}` (weights sha256 `{card.base_sha256[:16]}…`), label scheme `{card.scheme['name']}`.", "",
        "## Serve it", "", "```bash", serve, "```", "",
        "`judge.json` holds everything serving needs to rebuild the training prompt (instruction, product "
        "fields, token limits, a reference pair's token ids) and the tier policy chosen on eval "
        f"(CumPT β = {card.policy['beta']}, tiers {card.policy['tier_map']}, keep from {card.policy['min_tier']}, "
        f"label weights {card.policy.get('label_weights') or 'none'}).", "",
        "## Eval (the training run's own eval rows)", "",
        "| rows | accuracy | macro-F1 | Spearman | per-class F1 |", "| ---: | ---: | ---: | ---: | --- |",
        f"| {m.get('rows', '–')} | {m.get('accuracy', '–')} | {m.get('macro_f1', '–')} | {m.get('spearman', '–')} "
        f"({m.get('spearman_against', '')}) | {per_class} |", "",
        "## How it was made", "", "```bash", card.training.get("command", ""), "```", "",
        f"Hardware: {card.training.get('hardware', {})}.", "",
    ]
    if card.notes:
        lines += ["## Data and terms", "", card.notes.strip(), ""]
    return "\n".join(lines)


def judge_dir(run) -> dict:
    cfg = run.config
    target = cfg.path(cfg.export.judge_dir) if cfg.export.judge_dir else run.dir("export") / "judge"
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    adapter = _sft_adapter(run)
    if adapter:
        (work / "adapter").mkdir(parents=True)
        for name in ADAPTER_FILES:
            shutil.copy2(adapter / name, work / "adapter" / name)
        # The adapter alone does not say which prompt it was trained on: point at the card.
        (work / "adapter" / "README.md").write_text(
            f"# LoRA adapter of the judge `{cfg.export.name or target.name}`\n\nIts card is `../{CARD}` (base model and hash, "
            "label scheme, prompt settings, tier policy). Serve the judge dir, `lref serve --judge ..`; "
            "`lref serve --adapter` on this folder reads that card too. Without it the adapter would be "
            "served under a prompt it was not trained on.\n")
    else:
        shutil.copytree(run.latest_model(), work / "model")
    report = _metrics(run, "eval")
    keep = ("rows", "accuracy", "macro_f1", "spearman", "spearman_against", "per_class", "ece",
            "optimistic_share_of_errors", "chosen_beta", "bad_at_chosen_beta", "prior_sweep")
    policy = {"beta": report.get("chosen_beta", DEFAULT_BETA), "tier_map": run.scheme.tier_map(), "min_tier": DEFAULT_MIN_TIER,
              "label_weights": report.get("label_weights", [])}
    card = card_for(cfg.export.name or target.name, cfg.model, run.base_model, "adapter" if adapter else "model",
                    run.prompt, cfg.prompt, policy, training=_training(run),
                    metrics={k: report[k] for k in keep if k in report}, notes=cfg.export.notes)
    write_card(work, card)
    serve = f"lref serve --judge {os.path.relpath(target)}"  # as seen from where `lref train` ran
    (work / "README.md").write_text(_readme(card, serve))
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    return {"judge": str(target), "weights": card.weights, "bytes": size, "serve": serve}
