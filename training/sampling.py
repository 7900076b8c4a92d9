"""Sample answers from the current model for the TaoSR1 stages (pass@N DPO, GRPO's difficulty
filter): N answer-first responses per prompt, each parsed back to its label."""

from __future__ import annotations

import torch
from tqdm import tqdm

from reranker.core import PromptFormat


def sample_answers(model, prompt: PromptFormat, rows: list[dict], n: int, max_new_tokens: int, temperature: float,
                   batch_prompts: int = 8, device: str = "cpu") -> list[list[dict]]:
    """Per row, n samples {ids, label (level name or None)}; ids are the completion tokens."""
    pad = prompt.eos_token_id if prompt.eos_token_id is not None else 0
    out: list[list[dict]] = []
    model.eval()
    for start in tqdm(range(0, len(rows), batch_prompts), desc=f"sampling {n} answers per prompt", unit="batch"):
        chunk = rows[start:start + batch_prompts]
        prompts = [prompt.encode(r["query"], r["product"]).prompt_ids for r in chunk]
        width = max(map(len, prompts))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)  # left padding
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        with torch.no_grad():
            generated = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature,
                                       top_k=0, top_p=1.0, max_new_tokens=max_new_tokens, num_return_sequences=n,
                                       pad_token_id=pad)
        completions = generated[:, width:].tolist()
        for i in range(len(chunk)):
            samples = []
            for seq in completions[i * n:(i + 1) * n]:
                if prompt.eos_token_id in seq:
                    seq = seq[: seq.index(prompt.eos_token_id) + 1]
                level = prompt.label_of_token(seq[0]) if seq else None
                samples.append({"ids": seq, "label": level.name if level else None})
            out.append(samples)
    return out
