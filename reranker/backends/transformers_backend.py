"""Transformers backend (CPU or GPU): one prefill per batch, label-token probabilities, prefix KV reuse.

For each distinct query the instruction + query prefix is prefilled once; its KV cache rows are
then shared by every product of that query. Products are sorted by length and packed into
batches under a token budget. Padding goes to the right of each product, where causal attention
means no real token ever sees it, and only the hidden state before the answer is projected, onto
the label rows of the output layer alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from transformers import DynamicCache

from ..core import LabelHead, Level, PromptFormat
from .base import DEFAULT_MAX_BATCH_TOKENS, Product, ScoreJob


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
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_batch_size: int = 256,
        prefix_reuse: bool = True,
    ) -> None:
        self.model = model
        self.prompt = prompt
        self.device = device
        self.decoder = model.get_decoder()
        self.head = LabelHead(model, prompt.label_token_ids)
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.prefix_reuse = prefix_reuse
        self.pad_id = prompt.eos_token_id if prompt.eos_token_id is not None else 0
        self.tokens_processed = 0  # real (unpadded) tokens run through the model, for FLOP accounting

    # -- public ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def label_probs(self, jobs: Sequence[ScoreJob]) -> list[torch.Tensor]:
        queries: dict[str, int] = {}
        pairs: list[_Pair] = []
        for j, job in enumerate(jobs):
            q = queries.setdefault(job.query, len(queries))
            pairs += [_Pair(j, d, q, self.prompt.doc_ids(p)) for d, p in enumerate(job.products)]
        query_ids = [self.prompt.query_ids(q) for q in queries]
        out = [torch.empty(len(job.products), len(self.prompt.label_token_ids)) for job in jobs]
        scorer = self._score_with_prefix if self.prefix_reuse else self._score_full
        for batch, probs in scorer(query_ids, pairs):
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
    def _last_hidden(self, input_ids, lengths, **kwargs) -> torch.Tensor:
        hidden = self.decoder(input_ids=input_ids, **kwargs).last_hidden_state
        rows = torch.arange(len(lengths), device=self.device)
        return hidden[rows, torch.tensor(lengths, device=self.device) - 1]

    def _right_padded(self, seqs: list[list[int]]) -> torch.Tensor:
        width = max(len(s) for s in seqs)
        padded = [s + [self.pad_id] * (width - len(s)) for s in seqs]
        return torch.tensor(padded, device=self.device)

    def _prefill(self, query_ids: list[list[int]]):
        """Prefill every distinct prefix once (left-padded) -> cache, mask, real lengths."""
        width = max(len(q) for q in query_ids)
        ids = torch.tensor([[self.pad_id] * (width - len(q)) + q for q in query_ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(q)) + [1] * len(q) for q in query_ids], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        self.decoder(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
        self.tokens_processed += sum(len(q) for q in query_ids)
        return cache, mask, torch.tensor([len(q) for q in query_ids], device=self.device)

    def _score_with_prefix(self, query_ids: list[list[int]], pairs: list[_Pair]):
        cache, prefix_mask, prefix_len = self._prefill(query_ids)
        width = prefix_mask.shape[1]
        for batch in _length_batches(pairs, width, self.max_batch_tokens, self.max_batch_size):
            rows = torch.tensor([p.query for p in batch], device=self.device)
            shared = DynamicCache(
                ((layer.keys.index_select(0, rows), layer.values.index_select(0, rows)) for layer in cache.layers),
                config=self.model.config,
            )
            ids = self._right_padded([p.doc_ids for p in batch])
            mask = torch.cat([prefix_mask.index_select(0, rows), torch.ones_like(ids)], dim=1)
            positions = prefix_len.index_select(0, rows)[:, None] + torch.arange(ids.shape[1], device=self.device)
            lengths = [len(p.doc_ids) for p in batch]
            hidden = self._last_hidden(
                ids, lengths, attention_mask=mask, position_ids=positions, past_key_values=shared, use_cache=True
            )
            self.tokens_processed += sum(lengths)
            yield batch, self.head.probs(hidden).cpu()

    def _score_full(self, query_ids: list[list[int]], pairs: list[_Pair]):
        """No prefix reuse: every pair is prefilled whole (kept for benchmarks and as a reference)."""
        longest_prefix = max(len(q) for q in query_ids)
        for batch in _length_batches(pairs, longest_prefix, self.max_batch_tokens, self.max_batch_size):
            seqs = [query_ids[p.query] + p.doc_ids for p in batch]
            lengths = [len(s) for s in seqs]
            hidden = self._last_hidden(self._right_padded(seqs), lengths, use_cache=False)
            self.tokens_processed += sum(lengths)
            yield batch, self.head.probs(hidden).cpu()
