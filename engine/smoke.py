"""The installer's last step, as ML Commons' blueprint tutorials end: one `_predict` through the
model it just registered (connector -> reranker -> post-processing), whose score must decode to one
of our tiers. A connector the engine cannot use (the reranker's URL not reachable from the node,
an API key it refuses, a post-process that loses the score) is then caught at install, not at the
first search, which would quietly fall back to the original order."""

from __future__ import annotations

from opensearchpy import OpenSearch

from engine.client import EngineError, call
from reranker.core import decode_score

QUERY, DOCUMENT = "cordless drill", "cordless drill"


def predict_check(client: OpenSearch, model_id: str) -> str:
    """A line for the install log: the tier the reranker gave one document, read back through the
    engine; raises EngineError with the reason when that path is broken."""
    answer = call(client, "POST", f"/_plugins/_ml/models/{model_id}/_predict",
                  {"parameters": {"query": QUERY, "documents": [DOCUMENT], "top_n": 1}},
                  what="predict through the connector")
    try:
        score = float(answer["inference_results"][0]["output"][0]["data"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        raise EngineError(f"predict through the connector gave no score: {str(answer)[:300]}") from None
    decoded = decode_score(score)
    if decoded is None:
        raise EngineError(f"predict through the connector gave {score}, which is not one of the reranker's tier-encoded "
                          "scores: is the connector's URL an lref reranker?")
    return f"one document judged through the engine: tier {decoded[0]} (score {score:.5f})"
