"""Stage `select` (LREF): keep the samples that teach the model something and are labelled right.

Three cheap helper models (hashed lexical features of the query/title pair + logistic regression,
so selection is affordable on a CPU; the paper uses LLM helpers):
- IM, the initial model, trained on a random sample: keep x only if IM gets it wrong (x is hard);
- CI, trained on a head/torso/tail-balanced sample: keep x only if CI gets it right (its label is
  learnable, not noise of one query segment);
- MS, the "likely mislabel" model: MS(x) is the label a mislabelling of x would carry; keep x
  only if MS(x) differs from L(x) (a label that looks like the typical mistake is dropped).
With a teacher's labels, MS(x) = L(x) exactly where the teacher disputes the given label. Without
a teacher the proxy simulates annotator mistakes: out-of-fold predictions give, for each gold
label g, its most frequent confusion w(g); MS is trained on every row relabelled w(L(x)), so it
predicts the typical mislabel of x's (mostly correct) class.
"""

from __future__ import annotations

import random
import re
from collections import Counter

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

from reranker.core import product_text

from .config import SelectConfig

WORD = re.compile(r"[a-z0-9]+")


def _features(row: dict) -> list[str]:
    query = set(WORD.findall(row["query"].lower()))
    title = set(WORD.findall(product_text(row["product"]).lower()))
    shared = query & title
    overlap = len(shared) / max(len(query), 1)
    return ([f"q_{w}" for w in query] + [f"t_{w}" for w in title] + [f"m_{w}" for w in shared]
            + [f"miss_{w}" for w in query - title] + [f"overlap_{round(overlap * 4)}", f"qlen_{min(len(query), 6)}"])


class Helper:
    """A multinomial logistic regression over hashed pair features."""

    def __init__(self, seed: int) -> None:
        self.vectorizer = HashingVectorizer(analyzer=_features, n_features=2**18, alternate_sign=False)
        self.model = LogisticRegression(max_iter=300, C=2.0, random_state=seed)
        self.single: str | None = None

    def fit(self, rows: list[dict]) -> "Helper":
        labels = [r["label"] for r in rows]
        if len(set(labels)) == 1:  # nothing to learn; predict that label
            self.single = labels[0]
            return self
        self.model.fit(self.vectorizer.transform(rows), labels)
        return self

    def predict_proba(self, rows: list[dict]) -> tuple[list[str], np.ndarray]:
        if self.single:
            return [self.single], np.ones((len(rows), 1))
        return list(self.model.classes_), self.model.predict_proba(self.vectorizer.transform(rows))

    def predict(self, rows: list[dict]) -> list[str]:
        classes, probs = self.predict_proba(rows)
        return [classes[i] for i in probs.argmax(axis=1)]


def query_segments(rows: list[dict]) -> dict[str, str]:
    """head / torso / tail by query frequency: each segment holds about a third of the rows."""
    counts = Counter(r["query"] for r in rows)
    segment, seen, total = {}, 0, len(rows)
    for query, n in counts.most_common():
        segment[query] = "head" if seen < total / 3 else "torso" if seen < 2 * total / 3 else "tail"
        seen += n
    return segment


def typical_confusions(rows: list[dict], cfg: SelectConfig, seed: int, labels: list[str]) -> dict[str, str]:
    """gold label -> its most frequent wrong out-of-fold prediction (the next label up if none)."""
    queries = sorted({r["query"] for r in rows})
    random.Random(seed).shuffle(queries)
    fold_of = {q: i % cfg.ms_folds for i, q in enumerate(queries)}
    confusions: dict[str, Counter] = {label: Counter() for label in labels}
    for fold in range(cfg.ms_folds):
        held = [r for r in rows if fold_of[r["query"]] == fold]
        rest = [r for r in rows if fold_of[r["query"]] != fold]
        if held and rest:
            for row, guess in zip(held, Helper(seed).fit(rest).predict(held)):
                if guess != row["label"]:
                    confusions[row["label"]][guess] += 1
    fallback = {label: labels[max(i - 1, 0)] if i > 0 else labels[1] for i, label in enumerate(labels)}
    return {g: str(c.most_common(1)[0][0]) if c else fallback[g] for g, c in confusions.items()}


def mislabel_predictions(rows: list[dict], cfg: SelectConfig, seed: int, labels: list[str],
                         teacher: dict | None) -> tuple[list[str | None], dict]:
    if teacher is not None:
        disputed = [teacher.get((r["query"], r["product_id"]), r["label"]) != r["label"] for r in rows]
        return [r["label"] if d else None for r, d in zip(rows, disputed)], {"source": "teacher", "disputed": sum(disputed)}
    confusion = typical_confusions(rows, cfg, seed, labels)
    simulated = [dict(r, label=confusion[r["label"]]) for r in rows]
    return Helper(seed).fit(simulated).predict(rows), {"source": "simulated confusions", "confusions": confusion}


def select(rows: list[dict], cfg: SelectConfig, seed: int, labels: list[str],
           teacher: dict | None = None) -> tuple[list[dict], list[dict], dict]:
    """-> (kept rows, every row's helper votes, metrics); labels: the scheme's names, best first."""
    rng = random.Random(seed)
    im_rows = rng.sample(rows, max(1, int(len(rows) * cfg.im_fraction)))
    segments = query_segments(rows)
    ci_rows = []
    for name in ("head", "torso", "tail"):
        bucket = [r for r in rows if segments[r["query"]] == name]
        ci_rows += rng.sample(bucket, min(len(bucket), cfg.ci_per_bucket))
    im, ci = Helper(seed).fit(im_rows).predict(rows), Helper(seed).fit(ci_rows).predict(rows)
    ms, ms_info = mislabel_predictions(rows, cfg, seed, labels, teacher)
    votes = [{"query": r["query"], "product_id": r["product_id"], "label": r["label"], "im": a, "ci": b, "ms": c,
              "keep": a != r["label"] and b == r["label"] and c != r["label"]} for r, a, b, c in zip(rows, im, ci, ms)]
    kept = [r for r, v in zip(rows, votes) if v["keep"]]
    metrics = {
        "rows": len(rows), "kept": len(kept), "kept_fraction": round(len(kept) / len(rows), 4),
        "im_wrong": sum(a != r["label"] for r, a in zip(rows, im)),
        "ci_right": sum(b == r["label"] for r, b in zip(rows, ci)),
        "ms_flags": sum(c == r["label"] for r, c in zip(rows, ms)),
        "mislabel_model": ms_info,
        "segments": dict(Counter(segments[r["query"]] for r in rows)),
        "kept_class_mix": dict(sorted(Counter(r["label"] for r in kept).items())),
    }
    return kept, votes, metrics
