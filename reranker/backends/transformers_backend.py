"""Transformers backend (CPU or GPU): one prefill per batch, label-token probabilities, prefix KV reuse.

The constant template head (instruction) is prefilled once per backend and its KV kept; each
distinct query then prefills only its own tokens on top of it, and every product of that query
attends to that one shared prefix through the shared-prefix attention (no per-row KV copies).
Models whose attention that cannot express (sliding windows, soft-capping) prefill every pair
whole instead. Products are sorted by length and packed into batches under a token budget.
Padding goes to the right of each product, where causal attention means no real token ever sees
it, and only the hidden state before the answer is projected, onto the label rows of the output
layer alone.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from ..core import LabelHead, Level, PromptFormat
from .base import Product, ScoreJob, default_batch_tokens
from .shared_prefix import KV, Plan, UnsupportedAttention, switched_on

log = logging.getLogger(__name__)


@dataclass
class _Pair:
    job: int
    doc: int
    query: int  # index into the distinct queries
    doc_ids: list[int]


def _length_batches(pairs: list[_Pair], extra: int, max_batch_tokens: int, max_batch_size: int) -> Iterator[list[_Pair]]:
    """Sort by length and cut into batches whose padded size (with `extra` prefix tokens) fits the budget."""
    batch: list[_Pair] = []
    for pair in sorted(pairs, key=lambda p: len(p.doc_ids)):
        width = len(pair.doc_ids) + extra
        if batch and ((len(batch) + 1) * width > max_batch_tokens or len(batch) >= max_batch_size):
            yield batch
            batch = []
        batch.append(pair)
    if batch:
        yield batch


class TransformersBackend:
    name = "transformers"

    def __init__(
        self,
        model,
        prompt: PromptFormat,
        device: str = "cpu",
        max_batch_tokens: int | None = None,  # None: the device's default
        max_batch_size: int = 256,
        prefix_reuse: bool = True,
    ) -> None:
        self.model = model
        self.prompt = prompt
        self.device = device
        self.dtype = str(model.dtype).removeprefix("torch.")  # what /health reports
        self.decoder = model.get_decoder()
        self.head = LabelHead(model, prompt.label_token_ids)
        self.max_batch_tokens = max_batch_tokens or default_batch_tokens(device, model.dtype)
        self.max_batch_size = max_batch_size
        self.prefix_reuse = prefix_reuse
        self.pad_id = prompt.eos_token_id if prompt.eos_token_id is not None else 0
        self.tokens_processed = 0  # real (unpadded) tokens run through the model, for FLOP accounting
        self.shared_attention: bool | None = None  # decided on first use: can the model run shared_prefix?
        self._head_kv: list[KV] | None = None

    # -- public ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def label_probs(self, jobs: Sequence[ScoreJob]) -> list[torch.Tensor]:
        queries: dict[str, int] = {}
        pairs: list[_Pair] = []
        for j, job in enumerate(jobs):
            q = queries.setdefault(job.query, len(queries))
            pairs += [_Pair(j, d, q, self.prompt.doc_ids(p)) for d, p in enumerate(job.products)]
        out = [torch.empty(len(job.products), len(self.prompt.label_token_ids)) for job in jobs]
        scorer = self._score_full
        if self.prefix_reuse:
            scorer = self._score_shared if self._shared_attention_works() else self._score_full
        for batch, probs in scorer(list(queries), pairs):
            for pair, row in zip(batch, probs):
                out[pair.job][pair.doc] = row
        return out

    @torch.inference_mode()
    def reasoning(self, query: str, product: Product, level: Level, max_new_tokens: int = 48) -> str:
        ids = self.prompt.encode(query, product).prompt_ids
        ids.append(self.prompt.label_token_ids[self.prompt.scheme.levels.index(level)])
        inputs = torch.tensor([ids], device=self.device)
        generated = self.model.generate(
            inputs,
            attention_mask=torch.ones_like(inputs),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.pad_id,
        )
        text = self.prompt.tokenizer.decode(generated[0, len(ids):], skip_special_tokens=True)
        return text.strip()

    # -- scoring paths ---------------------------------------------------------------------------
    def _right_padded(self, seqs: list[list[int]]) -> torch.Tensor:
        width = max(len(s) for s in seqs)
        padded = [s + [self.pad_id] * (width - len(s)) for s in seqs]
        return torch.tensor(padded, device=self.device)

    def _last_real(self, hidden: torch.Tensor, seqs: list[list[int]]) -> torch.Tensor:
        """Per right-padded row, the hidden state of its last real token (where the answer starts)."""
        rows = torch.arange(len(seqs), device=self.device)
        return hidden[rows, torch.tensor([len(s) for s in seqs], device=self.device) - 1]

    def _shared_attention_works(self) -> bool:
        if self.shared_attention is None:
            try:
                self._head()
                self.shared_attention = True
            except UnsupportedAttention as exc:
                log.warning("shared-prefix attention off (%s): every pair is prefilled whole", exc)
                self.shared_attention = False
        return self.shared_attention

    def _run_shared(self, ids: list[list[int]], start: list[int], plan: Plan) -> torch.Tensor:
        """One forward pass of right-padded rows at positions start[i]..; the last real hidden state per row."""
        padded = self._right_padded(ids)
        positions = torch.tensor(start, device=self.device)[:, None] + torch.arange(padded.shape[1], device=self.device)
        with switched_on(self.model):
            hidden = self.decoder(input_ids=padded, position_ids=positions, use_cache=False, lref_plan=plan).last_hidden_state
        self.tokens_processed += sum(len(row) for row in ids)
        return self._last_real(hidden, ids)

    def _head(self) -> list[KV]:
        """KV of the constant template head, computed once: every request's prefix starts with it."""
        if self._head_kv is None:
            head = self.prompt.head_ids
            plan = Plan(capture=[])
            if head:
                self._run_shared([head], [0], plan)
            if len(plan.capture) != self.model.config.get_text_config().num_hidden_layers and head:
                raise UnsupportedAttention("the model's attention layers do not use transformers' attention interface")
            self._head_kv = [(k[0], v[0]) for k, v in plan.capture]
        return self._head_kv

    def _query_prefixes(self, queries: list[str]) -> tuple[list[list[KV]], list[int]]:
        """Per query: head + query KV for every layer (unpadded) and its length."""
        head, head_len = self._head(), len(self.prompt.head_ids)
        rest = [self.prompt.query_rest_ids(q) for q in queries]
        plan = Plan(prefixes=[head] if head else [], slices=[(0, len(rest), 0)] if head else [], capture=[])
        self._run_shared(rest, [head_len] * len(rest), plan)
        prefixes = []
        for j, ids in enumerate(rest):
            own = [(k[j, :, : len(ids)], v[j, :, : len(ids)]) for k, v in plan.capture]
            prefixes.append([(torch.cat([hk, k], 1), torch.cat([hv, v], 1)) for (hk, hv), (k, v) in zip(head, own)]
                            if head else own)
        return prefixes, [head_len + len(ids) for ids in rest]

    def _score_shared(self, queries: list[str], pairs: list[_Pair]):
        prefixes, prefix_len = self._query_prefixes(queries)
        for batch in _length_batches(pairs, 0, self.max_batch_tokens, self.max_batch_size):
            batch = sorted(batch, key=lambda p: p.query)  # rows of one query side by side: one slice each
            slices, start = [], 0
            for query, rows in itertools.groupby(batch, key=lambda p: p.query):
                end = start + sum(1 for _ in rows)
                slices.append((start, end, query))
                start = end
            hidden = self._run_shared([p.doc_ids for p in batch], [prefix_len[p.query] for p in batch],
                                      Plan(prefixes=prefixes, slices=slices))
            yield batch, self.head.probs(hidden).cpu()

    def _score_full(self, queries: list[str], pairs: list[_Pair]):
        """No prefix reuse: every pair is prefilled whole (the fallback, a benchmark baseline and a reference)."""
        query_ids = [self.prompt.query_ids(q) for q in queries]
        longest_prefix = max(len(q) for q in query_ids)
        for batch in _length_batches(pairs, longest_prefix, self.max_batch_tokens, self.max_batch_size):
            seqs = [query_ids[p.query] + p.doc_ids for p in batch]
            hidden = self.decoder(input_ids=self._right_padded(seqs), use_cache=False).last_hidden_state
            self.tokens_processed += sum(len(seq) for seq in seqs)
            hidden = self._last_real(hidden, seqs)
            yield batch, self.head.probs(hidden).cpu()
