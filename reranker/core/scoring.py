"""Label-token scoring: softmax over the label tokens' logits at the first answer position.

Only the label rows of the output projection are applied, and only to the one hidden state
that precedes the answer, so a judgement costs no vocabulary-sized matmul and no decoding.
"""

from __future__ import annotations

from typing import Sequence

import torch


class LabelHead:
    """The output projection restricted to the label tokens of one scheme."""

    def __init__(self, model, label_token_ids: Sequence[int]) -> None:
        head = model.get_output_embeddings()
        ids = torch.tensor(list(label_token_ids), device=head.weight.device)
        # Kept and applied in fp32 whatever the model's dtype: bf16 logits are rounded to steps of
        # 0.125 at |logit| 16-32, which alone moved bf16 probabilities by up to ~0.03 (docs/benchmarks.md).
        self.weight = head.weight.detach().index_select(0, ids).float()  # [labels, hidden]
        bias = getattr(head, "bias", None)
        self.bias = None if bias is None else bias.detach().index_select(0, ids).float()
        # Some families (Gemma 2/3) soft-cap final logits; apply it so probabilities match generate().
        self.softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: [n, hidden] final-norm states before the answer -> [n, labels] float32 logits."""
        out = hidden.float() @ self.weight.T
        if self.bias is not None:
            out = out + self.bias
        if self.softcap:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out

    def probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(hidden), dim=-1)


def label_probs_from_logits(logits: torch.Tensor, label_token_ids: Sequence[int]) -> torch.Tensor:
    """Full-vocabulary logits [n, vocab] (as generate() or a trainer sees them) -> [n, labels] probs."""
    ids = torch.tensor(list(label_token_ids), device=logits.device)
    return torch.softmax(logits.float().index_select(-1, ids), dim=-1)
