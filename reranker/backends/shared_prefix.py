"""Shared-prefix ("cascade") attention: many product rows attend to one unpadded prefix KV.

The KV of a prefix (the constant template head, then head + one query) is kept once, not copied
into every row of a batch. Each attention layer scores a row's queries against the shared prefix
keys and against the row's own causal keys, and merges the two softmax parts; no cache object,
no per-row KV copies, no mask over padded prefixes. Registered as a transformers attention
implementation and switched on only for the duration of a scoring call, so generate(), training
and every other caller of the same model keep their usual attention.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface

NAME = "lref_shared_prefix"

KV = tuple[torch.Tensor, torch.Tensor]  # keys, values: [kv_heads, length, head_dim]


class UnsupportedAttention(RuntimeError):
    """The model's attention needs more than plain causal softmax (sliding window, soft-capping...)."""


@dataclass
class Plan:
    """What one forward pass attends to. Rows [start, end) share prefix `prefixes[i][layer]`."""

    prefixes: list[list[KV]] = field(default_factory=list)
    slices: list[tuple[int, int, int]] = field(default_factory=list)
    capture: list[KV] | None = None  # when set, each layer appends the rows' own keys and values


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, lref_plan: Plan | None = None,
               **kwargs):
    if lref_plan is None:
        raise UnsupportedAttention("shared-prefix attention called without a plan")
    if kwargs.get("sliding_window") or kwargs.get("softcap") or getattr(module, "sinks", None) is not None:
        raise UnsupportedAttention("sliding-window, soft-capped or sink attention")
    if lref_plan.capture is not None:
        lref_plan.capture.append((key, value))
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if query.device.type == "cpu" and query.dtype in FUSED_CPU_DTYPES and _CPU_FLASH is not None:
        out = _flash_parts(module, query, key, value, scale, lref_plan)
    else:
        out = _explicit_parts(module, query, key, value, scale, lref_plan)
    return out.transpose(1, 2).contiguous(), None


# PyTorch's fused CPU attention kernel, in the variant that also returns each query's logsumexp,
# which is what merging two softmax parts needs. A private op: without it the explicit path runs.
_CPU_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
# ... used in fp32 only: in bf16 its per-block overhead dominates these short rows, and the
# matmuls below ran 2-5x faster per layer on an AVX512-BF16 CPU (docs/benchmarks.md).
FUSED_CPU_DTYPES: tuple[torch.dtype, ...] = (torch.float32,)


def _flash_parts(module, query, key, value, scale: float, plan: Plan) -> torch.Tensor:
    """Both parts with the fused kernel, merged by their logsumexps. [rows, heads, length, dim]."""
    rows, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    # The row's own keys are few (one product): repeating them per query head costs little.
    own_k = key.repeat_interleave(group, dim=1) if group > 1 else key
    own_v = value.repeat_interleave(group, dim=1) if group > 1 else value
    out, lse = _CPU_FLASH(query, own_k, own_v, 0.0, True, scale=scale)
    for start, end, index in plan.slices:
        keys, values = plan.prefixes[index][module.layer_idx]
        n = end - start
        # Rows and the query heads of one KV head folded into one long query: the prefix is read once.
        folded = query[start:end].reshape(n, kv_heads, group * length, dim).transpose(0, 1).reshape(1, kv_heads, -1, dim)
        part, part_lse = _CPU_FLASH(folded, keys[None], values[None], 0.0, False, scale=scale)
        part = part.reshape(kv_heads, n, group * length, dim).transpose(0, 1).reshape(n, heads, length, dim)
        part_lse = part_lse.reshape(kv_heads, n, group * length).transpose(0, 1).reshape(n, heads, length)
        total = torch.logaddexp(lse[start:end], part_lse)
        out[start:end] = (out[start:end] * (lse[start:end] - total).exp().unsqueeze(-1)
                          + part * (part_lse - total).exp().unsqueeze(-1)).to(out.dtype)
    return out


@functools.lru_cache(maxsize=64)
def _future(length: int, device: torch.device) -> torch.Tensor:
    """[length, length] True above the diagonal: the keys a causal query must not see. Built once per
    length: every layer of every batch asks for it, and building it cost ~3% of a bf16 CPU request."""
    with torch.inference_mode(False):  # a plain tensor, usable whether or not the caller records grads
        return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


def _explicit_parts(module, query, key, value, scale: float, lref_plan: Plan) -> torch.Tensor:
    """The same attention written out in matmuls, for devices without the fused CPU kernel."""
    rows, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    # [rows, kv_heads, group*length, dim]: the query heads that read one KV head, stacked.
    q = (query * scale).reshape(rows, kv_heads, group * length, dim)

    own = torch.matmul(q, key.transpose(-1, -2)).float()  # [rows, kv_heads, group*length, length]
    own = own.view(rows, kv_heads, group, length, length).masked_fill_(_future(length, query.device), float("-inf"))
    own = own.view(rows, kv_heads, group * length, length)
    top = own.amax(-1, keepdim=True)

    shared = []
    for start, end, index in lref_plan.slices:
        keys, values = lref_plan.prefixes[index][module.layer_idx]
        n = end - start
        # Fold the rows into the matrix dimension so one bmm per KV head reads the prefix once.
        folded = q[start:end].transpose(0, 1).reshape(kv_heads, n * group * length, dim)
        scores = torch.bmm(folded, keys.transpose(-1, -2)).float()  # [kv_heads, n*group*length, prefix]
        scores = scores.view(kv_heads, n, group * length, -1).transpose(0, 1)
        top[start:end] = torch.maximum(top[start:end], scores.amax(-1, keepdim=True))
        shared.append((start, end, scores, values))

    own = own.sub_(top).exp_()
    total = own.sum(-1, keepdim=True)
    out = torch.matmul(own.to(value.dtype), value).float()  # [rows, kv_heads, group*length, dim]
    for start, end, scores, values in shared:
        weights = scores.sub_(top[start:end]).exp_()
        total[start:end] += weights.sum(-1, keepdim=True)
        n = end - start
        folded = weights.transpose(0, 1).reshape(kv_heads, n * group * length, -1).to(values.dtype)
        out[start:end] += torch.bmm(folded, values).view(kv_heads, n, group * length, dim).transpose(0, 1)
    return (out / total).to(query.dtype).view(rows, heads, length, dim)


AttentionInterface.register(NAME, _attention)


@contextlib.contextmanager
def switched_on(model):
    """Use the shared-prefix attention for the calls inside the block, then restore the model's own."""
    config = model.config
    previous = config._attn_implementation
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
