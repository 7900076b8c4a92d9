"""Request and response bodies. /v1/rerank follows Cohere's v1 rerank API, which ML Commons'
built-in connector.pre_process.cohere.rerank / post_process.cohere.rerank functions speak."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

Document = Union[StrictStr, dict[StrictStr, StrictStr]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RerankRequest(_Strict):
    query: StrictStr
    documents: list[Document]
    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False
    # Cohere fields that a Cohere client or the ML Commons blueprint may send:
    model: StrictStr | None = Field(default=None, description="Accepted for Cohere compatibility; the server has one model")
    rank_fields: list[StrictStr] | None = Field(default=None, description="Object fields to judge (default: all known)")
    max_chunks_per_doc: StrictInt | None = Field(default=None, description="Accepted for Cohere compatibility; ignored")


class RerankResult(BaseModel):
    index: int
    relevance_score: float = Field(description="Tier in the integer part (Good=2, Mid=1, Bad=0), order within tier in the fraction")
    tier: str
    level: float
    label: str
    keep: bool
    document: dict[str, str] | None = None


class RerankResponse(BaseModel):
    id: str
    results: list[RerankResult]
    meta: dict


class ClassifyRequest(_Strict):
    query: StrictStr
    documents: list[Document]
    reasoning: StrictBool = False
    max_reasoning_tokens: StrictInt = Field(default=48, ge=1, le=256)
    beta: float | None = Field(default=None, gt=0.0, le=1.0, description="Override the CumPT threshold for this request")
    min_tier: Literal["Good", "Mid", "Bad"] | None = None
    rank_fields: list[StrictStr] | None = None


class ClassifyResult(BaseModel):
    index: int
    probabilities: dict[str, float]
    level: float
    label: str
    tier: str
    keep: bool
    expected_relevance: float
    score: float
    reasoning: str | None = None


class ClassifyResponse(BaseModel):
    scheme: str
    beta: float
    min_tier: str
    results: list[ClassifyResult]


class ErrorResponse(BaseModel):
    error: str
    details: list | None = None
