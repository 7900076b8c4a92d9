"""What every trained stage (SFT, both DPOs, GRPO) shares: the run's one `lora:` section turned into
PEFT's config, and the precision picked by the hardware (bf16 where the GPU or the CPU has it)."""

from __future__ import annotations

from pathlib import Path

import torch

from reranker.models.loading import pick_dtype

from .config import LoraConfig

ARGS = "trainer_args.json"


def precision(dtype: str, device: str, lora: LoraConfig) -> tuple[torch.dtype, bool]:
    """-> (the dtype to load the base weights in, whether the trainer autocasts to bf16). LoRA trains
    fp32 adapters over frozen base weights, which may then be bf16; full fine-tuning keeps fp32
    master weights and autocasts the matmuls instead."""
    fast = pick_dtype(dtype, device) == torch.bfloat16
    return (torch.bfloat16 if fast and lora.enabled else torch.float32), fast and not lora.enabled


def peft_config(model, lora: LoraConfig):
    """PEFT's LoraConfig for `model` (None when LoRA is off). `top_layers` adapts only the top N
    decoder layers; PEFT takes a layer subset only with module names, so all-linear is spelt out."""
    from peft import LoraConfig as PeftLoraConfig

    if not lora.enabled:
        return None
    layers = model.config.get_text_config().num_hidden_layers
    top = range(layers - min(lora.top_layers, layers), layers) if lora.top_layers else None
    targets = lora.target_modules
    if top and targets == "all-linear":
        targets = sorted({name.rsplit(".", 1)[-1] for name, module in model.get_decoder().layers[-1].named_modules()
                          if isinstance(module, torch.nn.Linear)})
    return PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                          layers_to_transform=list(top) if top else None, task_type="CAUSAL_LM")


def record_args(trainer, out: Path) -> None:
    """The TRL config the stage trained with, whole (its own fields, `trl:` pass-throughs and the
    precision picked here), beside its checkpoints: what a run can be compared or replayed by."""
    out.mkdir(parents=True, exist_ok=True)
    (out / ARGS).write_text(trainer.args.to_json_string())


def save_model(trainer, base: str | Path, tokenizer, out: Path) -> Path:
    """The stage's model as a plain HF dir at out/model: an adapter is saved (out/adapter) and merged
    into the fp32 base as serving merges it, whatever dtype it trained in; a full model as it is."""
    from peft import PeftModel

    from .sft import merge_and_save, save_merged

    record_args(trainer, out)
    if not isinstance(trainer.model, PeftModel):
        return merge_and_save(trainer.model, tokenizer, out / "model")
    trainer.model.save_pretrained(out / "adapter")
    return save_merged(str(base), out / "adapter", out / "model")
