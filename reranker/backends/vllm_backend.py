"""vLLM backend (GPU): the same prompt token ids and label tokens as the transformers backend.

vLLM is an optional extra (`pip install lref[vllm]`), imported only when this backend is chosen.
Prefix caching shares the instruction + query prefix across a query's products. Each prompt asks
for one token restricted to the label tokens, with logprobs taken after that restriction
(logprobs_mode="processed_logits"), so the returned values are the label logits themselves.

Not run on the project's CPU machines (vLLM needs a GPU); its test is skipped where vllm is
not importable.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..core import LabelScheme, Level, PromptFormat
from .base import Product, ScoreJob


class VLLMBackend:
    name = "vllm"
    dtype = "auto"  # vLLM's choice for the model (bf16 where the GPU has it)

    def __init__(self, llm, prompt: PromptFormat) -> None:
        from vllm import SamplingParams

        self.llm = llm
        self.prompt = prompt
        labels = prompt.label_token_ids
        self._score_params = SamplingParams(
            max_tokens=1, temperature=0.0, logprobs=len(labels), allowed_token_ids=list(labels)
        )

    @classmethod
    def from_config(cls, config, scheme: LabelScheme) -> "VLLMBackend":
        from ..models.loading import ModelLoadError, resolve_model_path

        try:
            from vllm import LLM
        except ImportError as exc:
            raise ModelLoadError(f"--backend vllm needs the vllm package (pip install vllm, on a GPU machine): {exc}") from exc

        if config.adapter:
            raise ModelLoadError("the vLLM backend serves merged models: run `lref train --stage export` first")
        path = resolve_model_path(config.model)
        llm = LLM(
            model=path,
            dtype="auto" if config.dtype == "auto" else config.dtype,
            enable_prefix_caching=True,
            logprobs_mode="processed_logits",
        )
        return cls(llm, config.prompt_spec.build(llm.get_tokenizer(), scheme))

    def _prompts(self, pairs: Sequence[tuple[str, Product]]):
        from vllm.inputs import TokensPrompt

        return [TokensPrompt(prompt_token_ids=self.prompt.encode(q, p).prompt_ids) for q, p in pairs]

    def label_probs(self, jobs: Sequence[ScoreJob]) -> list[torch.Tensor]:
        pairs = [(job.query, p) for job in jobs for p in job.products]
        outputs = self.llm.generate(self._prompts(pairs), self._score_params, use_tqdm=False)
        labels = self.prompt.label_token_ids
        rows = []
        for out in outputs:
            returned = out.outputs[0].logprobs[0]  # token id -> Logprob, for the first generated position
            logits = [returned[t].logprob if t in returned else -math.inf for t in labels]
            rows.append(torch.softmax(torch.tensor(logits, dtype=torch.float32), dim=-1))
        result, start = [], 0
        for job in jobs:
            n = len(job.products)
            result.append(torch.stack(rows[start : start + n]) if n else torch.empty(0, len(labels)))
            start += n
        return result

    def reasoning(self, query: str, product: Product, level: Level, max_new_tokens: int = 48) -> str:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ids = self.prompt.encode(query, product).prompt_ids
        ids.append(self.prompt.label_token_ids[self.prompt.scheme.levels.index(level)])
        params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0)
        out = self.llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
        return out[0].outputs[0].text.strip()
