"""Load a product catalog (JSONL, one product per line) into the products index."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import TransportError
from tqdm import tqdm

from engine.client import EngineError, call, definition, reason
from reranker.core import jsonl_objects
from reranker.errors import LrefError

DEFAULT_INDEX = "products"


class CatalogError(LrefError, ValueError):
    pass


INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')
MAX_ID_BYTES = 512  # OpenSearch's limit on a document _id


def check_index_name(index: str) -> None:
    """OpenSearch's index-name rules, plus no '.'-names: those are system and hidden indices
    (ML Commons' .plugins-ml-config among them), never a place for products."""
    if not index:
        raise CatalogError("index name must not be empty")
    if index.startswith("."):
        raise CatalogError(f"index {index!r}: names starting with '.' are system or hidden indices; choose another")
    if index[0] in "_-+" or index != index.lower() or set(index) & INDEX_FORBIDDEN or len(index.encode()) > 255:
        raise CatalogError(f"index {index!r} is not a valid OpenSearch index name (lowercase, no leading _ - +, "
                           f"none of {''.join(sorted(INDEX_FORBIDDEN))!r}, at most 255 bytes)")


def _value_problem(value, kind: str) -> str | None:
    """Why OpenSearch would reject `value` for a field of mapping type `kind`, or None (its
    coercions allowed: numbers in text fields, numeric strings in a float field; null is no value)."""
    if value is None:
        return None
    if isinstance(value, list):  # a list is several values of the field
        return next(filter(None, (_value_problem(v, kind) for v in value)), None)
    if kind == "float":
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        return None if number is not None and math.isfinite(number) else "is not a number"
    return None if isinstance(value, (str, int, float)) and not isinstance(value, bool) else "is not text"


def read_catalog(path: Path) -> list[dict]:
    """Every line checked before anything is indexed, against the index mapping's field types too,
    so that a bad line is found before the first product goes in."""
    kinds = {name: spec["type"] for name, spec in definition("products_index.json")["mappings"]["properties"].items()}
    fields = set(kinds)
    products, seen = [], set()
    for number, product in jsonl_objects(path, CatalogError):
        pid = product.get("product_id")
        if not isinstance(pid, (str, int)) or isinstance(pid, bool) or not str(pid).strip():
            raise CatalogError(f"{path}:{number}: product_id is missing or empty")
        if len(str(pid).encode()) > MAX_ID_BYTES:
            raise CatalogError(f"{path}:{number}: product_id is longer than {MAX_ID_BYTES} bytes")
        if not isinstance(product.get("title"), str) or not product["title"].strip():
            raise CatalogError(f"{path}:{number}: title is missing or empty")
        unknown = sorted(set(product) - fields)
        if unknown:
            raise CatalogError(f"{path}:{number}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(fields))})")
        for name, value in product.items():
            if name in kinds and (problem := _value_problem(value, kinds[name])):
                raise CatalogError(f"{path}:{number}: {name} {problem} ({kinds[name]} field): {json.dumps(value)[:80]}")
        if str(pid) in seen:
            raise CatalogError(f"{path}:{number}: duplicate product_id {pid}")
        seen.add(str(pid))
        products.append(dict(product, product_id=str(pid)))
    if not products:
        raise CatalogError(f"{path}: no products")
    return products


def ensure_index(client: OpenSearch, index: str, recreate: bool = False) -> bool:
    """Create the index from opensearch/products_index.json; True when created."""
    exists = client.indices.exists(index=index)
    if exists and not recreate:
        return False
    if exists:
        client.indices.delete(index=index)
    call(client, "PUT", f"/{index}", index_body(client), what=f"creating index {index}")
    return True


MAX_PRIMARIES = 3  # a catalog of ~10^5 titles: more shards only add per-shard overhead


def index_body(client: OpenSearch) -> dict:
    """The catalog index: one shard on a single node; on a cluster a primary per data node (at most
    MAX_PRIMARIES) and one replica of each, so that losing a node loses no product."""
    body = definition("products_index.json")
    data_nodes = call(client, "GET", "/_cluster/health", what="reading cluster health").get("number_of_data_nodes", 1)
    if data_nodes > 1:
        body["settings"]["index"].update(number_of_shards=min(data_nodes, MAX_PRIMARIES), number_of_replicas=1)
    return body


def _actions(index: str, products: list[dict]) -> Iterator[dict]:
    for product in products:
        yield {"_index": index, "_id": product["product_id"], "_source": product}


def load(client: OpenSearch, path: Path, index: str = DEFAULT_INDEX, recreate: bool = False,
         chunk_size: int = 2000) -> int:
    check_index_name(index)
    products = read_catalog(path)
    try:
        return _index(client, products, index, recreate, chunk_size)
    except TransportError as exc:  # e.g. a read-only user of a secured cluster: 403
        raise EngineError(f"loading into {index}: {reason(exc)}") from exc


def _index(client: OpenSearch, products: list[dict], index: str, recreate: bool, chunk_size: int) -> int:
    created = ensure_index(client, index, recreate)
    done = 0
    failures = []
    with tqdm(total=len(products), desc=f"indexing into {index}", unit="doc") as bar:
        for ok, item in helpers.streaming_bulk(
            client, _actions(index, products), chunk_size=chunk_size, raise_on_error=False, max_retries=3
        ):
            bar.update(1)
            done += ok
            if not ok:
                failures.append(item)
    client.indices.refresh(index=index)
    if failures:
        first = next(iter(failures[0].values()))
        error = first.get("error")
        why = str(error.get("reason", error) if isinstance(error, dict) else error)
        why = why if len(why) <= 300 else why[:300] + "…"  # Lucene quotes the offending bytes
        if created:  # an index this load made holds nothing but this catalog: leave no half of it
            client.indices.delete(index=index)
            kept = f"index {index} removed again, nothing loaded"
        else:
            kept = f"{done} of {len(products)} products were written into the existing index {index}"
        raise EngineError(f"{len(failures)} product(s) were refused by OpenSearch ({kept}); first: "
                          f"product_id {first.get('_id')}: {why}")
    return done
