"""Request and response bodies. /v1/rerank follows Cohere's v1 rerank API, which ML Commons'
built-in connector.pre_process.cohere.rerank / post_process.cohere.rerank functions speak."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Discriminator, Field, StrictBool, StrictFloat, StrictInt, StrictStr, Tag,
    WithJsonSchema,
)

from ..core import DEFAULT_PRODUCT_FIELDS, TITLE_FIELDS, text_problem


def _encodable(text: str) -> str:
    # JSON may carry \\ud800-style escapes that decode to lone surrogates: valid JSON, but not
    # text the tokenizer can take. Refused here with a 422, so they never reach the model.
    if problem := text_problem(text):
        raise ValueError(problem)
    return text


Text = Annotated[StrictStr, AfterValidator(_encodable)]
# What the service checks itself (with its own messages), stated in the OpenAPI spec too, so
# clients and the fuzz tests see the real contract: a non-blank query, at least one document, and
# objects of known product fields with a title or text.
Query = Annotated[Text, WithJsonSchema({"type": "string", "minLength": 1, "pattern": r"\S"})]
_PRODUCT_SCHEMA = {
    "type": "object",
    "properties": {name: {"type": "string"} for name in (*TITLE_FIELDS, *DEFAULT_PRODUCT_FIELDS)},
    "additionalProperties": False,
    "anyOf": [{"required": [name]} for name in TITLE_FIELDS],
}
# A title string or an object of fields. The discriminator picks the branch, so an error names
# one place (documents.3.object.title), not every branch of the union.
Document = Annotated[
    Union[Annotated[Text, Tag("string")], Annotated[dict[Text, Text], Tag("object"), WithJsonSchema(_PRODUCT_SCHEMA)]],
    Discriminator(lambda value: "object" if isinstance(value, dict) else "string"),
]
Documents = Annotated[list[Document], Field(json_schema_extra={"minItems": 1})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RerankRequest(_Strict):
    query: Query
    documents: Documents
    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False
    # Cohere fields that a Cohere client or the ML Commons blueprint may send:
    model: StrictStr | None = Field(default=None, description="Accepted for Cohere compatibility; the server has one model")
    rank_fields: list[Text] | None = Field(default=None, description="Object fields to judge (default: all known)")
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
    query: Query
    documents: Documents
    reasoning: StrictBool = False
    max_reasoning_tokens: StrictInt = Field(default=48, ge=1, le=256)
    beta: StrictFloat | None = Field(default=None, gt=0.0, le=1.0, description="Override the CumPT threshold for this request")
    min_tier: Literal["Good", "Mid", "Bad"] | None = None
    rank_fields: list[Text] | None = None


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
