"""The tier policy the installed pipeline must share with the reranker: its minimum tier and its
scheme's level names. A running `lref serve` reports both on /health (from its judge card, or its
own --min-tier / --scheme), so the installer reads them there instead of trusting two sets of
options to agree. When the reranker cannot be reached (installed before it starts, as in
docker-compose), the installer's own options or the core's defaults are used, and it says so."""

from __future__ import annotations

from dataclasses import replace

import httpx

from engine.client import EngineError
from reranker.core import DEFAULT_MIN_TIER, load_scheme


def served_policy(reranker_url: str, api_key: str | None = None, timeout_s: float = 3.0) -> dict | None:
    """The reranker's {"min_tier", "levels", "scheme", ...} from its /health, or None when it is not
    up and ready (or is an older build that does not report it)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(reranker_url.rstrip("/") + "/health", headers=headers, timeout=timeout_s)
        policy = response.json().get("policy") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    ok = isinstance(policy, dict) and isinstance(policy.get("min_tier"), str) and isinstance(policy.get("levels"), list)
    return policy if ok else None


def agreed(spec, served: dict | None):
    """(the spec with the reranker's min tier and levels, a line saying where they came from). An
    option the user gave that disagrees with the running reranker is an error: the pipeline would
    drop other hits than the reranker reports as dropped."""
    if served is None:
        resolved = replace(spec, min_tier=spec.min_tier or DEFAULT_MIN_TIER, scheme=spec.scheme or "four_level")
        return resolved, (f"not reachable, so min tier {resolved.min_tier} and scheme {resolved.scheme} as given or by "
                          "default (install again once it is up to take its own)")
    if spec.min_tier and spec.min_tier != served["min_tier"]:
        raise EngineError(f"--min-tier {spec.min_tier} disagrees with the reranker at {spec.reranker_url}, which keeps "
                          f"{served['min_tier']} and up (its judge card or `lref serve --min-tier`): give the same or leave it out")
    if spec.scheme and [lv.name for lv in load_scheme(spec.scheme).levels] != served["levels"]:
        raise EngineError(f"--scheme {spec.scheme} disagrees with the reranker at {spec.reranker_url}, whose levels are "
                          f"{', '.join(served['levels'])}: give the same scheme or leave it out")
    resolved = replace(spec, min_tier=served["min_tier"], levels=tuple(served["levels"]),
                       scheme=spec.scheme or served.get("scheme") or "four_level")
    return resolved, f"min tier {resolved.min_tier}, levels {', '.join(resolved.levels)} (read from its /health)"
