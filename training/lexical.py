"""The lexical relevance model: gradient boosting on ~40 lexical features of (query, title) —
coverage plain / stemmed / fuzzy / IDF-weighted, BM25 of the title, number and unit matches,
the product type, character 3-grams. It is the cheap baseline every judge is measured against
(bench/lexical_anchor.py) and the teacher an SFT pass can distil (`sft.teacher: lexical`): its
out-of-fold probabilities on the train rows."""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache

import numpy as np
from tqdm import tqdm

LEVELS = (1, 2, 3, 4)
NAMES = {4: "Excellent", 3: "Related", 2: "Mismatch", 1: "Irrelevant"}

# Home Depot writes units as "in.", "ft.", "gal."; shoppers type "inch", "feet", "gallon": one
# spelling each so coverage and unit matches see them as the same word.
UNITS = {
    "in": "in", "inch": "in", "inches": "in", "ft": "ft", "foot": "ft", "feet": "ft",
    "gal": "gal", "gallon": "gal", "gallons": "gal", "lb": "lb", "lbs": "lb", "pound": "lb", "pounds": "lb",
    "oz": "oz", "ounce": "oz", "ounces": "oz", "v": "volt", "volt": "volt", "volts": "volt",
    "w": "watt", "watt": "watt", "watts": "watt", "amp": "amp", "amps": "amp", "mm": "mm", "cm": "cm",
    "sq": "sq", "square": "sq", "cu": "cu", "cubic": "cu", "qt": "qt", "quart": "qt", "btu": "btu",
    "gpm": "gpm", "psi": "psi", "gauge": "gauge", "ga": "gauge", "yd": "yd", "yard": "yd",
}
# "in" is dropped as a word too (it is mostly "Faucet in Chrome"); inch matches go through units.
STOP = {"in", "and", "the", "for", "with", "of", "a", "to", "x", "or", "on", "by", "at", "pack", "pc"}


def stem(word: str) -> str:
    """A few English suffixes off (plurals, -ing, -ed): "drills" = "drill", "batteries" = "battery"."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"),
                         ("ing", ""), ("ed", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not (suffix == "s" and word.endswith("ss")):
            return word[: -len(suffix)] + repl
    return word


@dataclass(frozen=True)
class Text:
    plain: tuple[str, ...]  # words, lower case, units canonical, stop words out
    stems: tuple[str, ...]
    numbers: frozenset[str]
    measures: frozenset[tuple[str, str]]  # (number, unit) pairs: "36 in", "2 gal"
    units: frozenset[str]
    head: tuple[str, ...]  # the product type: last stems before " in ", " with ", "(": "trim kit"
    joined: str  # every token glued: "deckover" in the title finds query "deck over"
    trigrams: frozenset[str]


@lru_cache(maxsize=200_000)  # titles repeat across queries
def parse(text: str) -> Text:
    s = text.lower()
    s = re.sub(r'(\d)\s*"', r"\1 in ", s)
    s = re.sub(r"(\d)\s*'", r"\1 ft ", s)
    s = re.sub(r"(\d)([a-z])", r"\1 \2", s)  # "36in", "2x4" -> "36 in", "2 x 4"
    s = re.sub(r"([a-z])(\d)", r"\1 \2", s)
    tokens = [UNITS.get(t, t) for t in re.findall(r"\d+(?:[./]\d+)*|[a-z]+", s)]
    measures = {(a, b) for a, b in zip(tokens, tokens[1:]) if a[0].isdigit() and b in UNITS.values()}
    plain = tuple(t for t in tokens if t not in STOP)
    joined = "".join(tokens)
    padded = f" {' '.join(plain)} "
    front = re.split(r"\s(?:in|with|for)\s|[(,]", text.lower(), maxsplit=1)[0]
    head = tuple(stem(t) for t in re.findall(r"[a-z]+", front) if t not in STOP and t not in UNITS)[-2:]
    return Text(plain, tuple(stem(t) for t in plain), frozenset(t for t in tokens if t[0].isdigit()),
                frozenset(measures), frozenset(u for _, u in measures), head, joined,
                frozenset(padded[i:i + 3] for i in range(len(padded) - 2)))


def near(a: str, b: str) -> bool:
    """Edit distance at most 1 (words of 4+ letters), or one a prefix of the other ("refrig")."""
    if a == b:
        return True
    if min(len(a), len(b)) < 4:
        return False
    if a.startswith(b) or b.startswith(a):
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i + (len(a) == len(b)):] == b[i + 1:]


@dataclass
class Stats:
    """Document frequencies of title stems over the catalog (products.jsonl), for IDF and BM25."""

    df: dict[str, int]
    n_docs: int
    avgdl: float

    def idf(self, term: str) -> float:  # BM25's, always > 0; unseen words get the highest
        d = self.df.get(term, 0)
        return math.log(1 + (self.n_docs - d + 0.5) / (d + 0.5))


def build_stats(titles: list[str]) -> Stats:
    df: Counter[str] = Counter()
    total = 0
    for title in titles:
        stems = parse(title).stems
        df.update(set(stems))
        total += len(stems)
    return Stats(dict(df), len(titles), total / max(len(titles), 1))


def feature_dict(query: str, title: str, stats: Stats) -> dict[str, float]:
    """The lexical features of one (query, title) pair, by name (FEATURE_NAMES)."""
    q, t = parse(query), parse(title)
    nq = max(len(q.stems), 1)
    qstems, tplain, tstems = set(q.stems), set(t.plain), set(t.stems)
    hit = [s in tstems for s in q.stems]
    fuzzy = [h or any(near(s, x) for x in tstems) for s, h in zip(q.stems, hit)]
    idf = [stats.idf(s) for s in q.stems]
    idf_sum = sum(idf) or 1.0
    missing = [w for w, h in zip(idf, fuzzy) if not h]
    # BM25 (k1 1.2, b 0.75) and TF-IDF cosine over stems, IDF from the catalog
    tf = Counter(t.stems)
    k1, b = 1.2, 0.75
    norm = k1 * (1 - b + b * len(t.stems) / stats.avgdl)
    bm25 = sum(w * tf[s] * (k1 + 1) / (tf[s] + norm) for s, w in zip(q.stems, idf) if tf[s])
    qv = {s: c * stats.idf(s) for s, c in Counter(q.stems).items()}
    tv = {s: c * stats.idf(s) for s, c in tf.items()}
    dot = sum(v * tv.get(s, 0.0) for s, v in qv.items())
    qbi, tbi = set(zip(q.stems, q.stems[1:])), set(zip(t.stems, t.stems[1:]))
    first = [i for i, s in enumerate(t.stems) if s in qstems]
    last = [i for i, s in enumerate(t.stems) if q.stems and near(q.stems[-1], s)]
    qs, ts = " ".join(q.plain), " ".join(t.plain)
    common = len(q.trigrams & t.trigrams)
    return {
        "q_words": len(q.plain), "t_words": len(t.plain), "q_chars": len(query), "t_chars": len(title),
        "cov_plain": sum(w in tplain for w in q.plain) / nq,
        "cov_stem": sum(hit) / nq,
        "cov_fuzzy": sum(fuzzy) / nq,  # typos and truncations: "refrigirator", "refrig"
        "cov_idf": sum(w for w, h in zip(idf, hit) if h) / idf_sum,
        "cov_fuzzy_idf": sum(w for w, h in zip(idf, fuzzy) if h) / idf_sum,
        "cov_substr": sum(w in t.joined for w in q.plain) / nq,  # "deck over" in "DeckOver"
        "t_cov": len(tstems & qstems) / (len(tstems) or 1),
        "n_matched": sum(hit), "all_matched": float(bool(hit) and all(hit)),
        "jaccard": len(set(q.plain) & tplain) / (len(set(q.plain) | tplain) or 1),
        "jaccard_stem": len(qstems & tstems) / (len(qstems | tstems) or 1),
        "bm25": bm25, "bm25_norm": bm25 / ((k1 + 1) * idf_sum),
        "tfidf_cos": dot / (math.sqrt(sum(v * v for v in qv.values()) * sum(v * v for v in tv.values())) or 1.0),
        # the last query word is usually the product type, the first often the brand
        "last_in": float(bool(hit) and hit[-1]), "last_fuzzy": float(bool(fuzzy) and fuzzy[-1]),
        "first_in": float(bool(hit) and hit[0]),
        "last_pos": last[-1] / len(t.stems) if last else -1.0,
        "head_match": float(bool(q.stems) and any(near(q.stems[-1], h) for h in t.head)),
        "head_in_query": float(bool(t.head) and any(near(t.head[-1], s) for s in q.stems)),
        "brand_in_query": float(bool(t.stems) and t.stems[0] in qstems),
        "q_numbers": len(q.numbers), "num_match": len(q.numbers & t.numbers) / (len(q.numbers) or 1),
        "q_units": len(q.units), "unit_match": len(q.measures & t.measures) / (len(q.measures) or 1),
        "tri_jaccard": common / (len(q.trigrams | t.trigrams) or 1),
        "tri_contain": common / (len(q.trigrams) or 1),
        "bigram_match": len(qbi & tbi) / (len(qbi) or 1),
        "phrase_in": float(bool(q.joined) and q.joined in t.joined),
        "lcs": SequenceMatcher(None, qs, ts, autojunk=False).find_longest_match(0, len(qs), 0, len(ts)).size
        / (len(qs) or 1),
        "first_pos": first[0] / len(t.stems) if first else 1.0,
        "q_idf_mean": sum(idf) / nq, "last_idf": idf[-1] if idf else 0.0,
        "idf_missing_sum": sum(missing), "idf_missing_max": max(missing, default=0.0),
        "q_unseen": sum(s not in stats.df for s in q.stems) / nq,  # misspelt or odd queries
    }


FEATURE_NAMES = list(feature_dict("", "", Stats({}, 1, 1.0)))


def features(query: str, title: str, stats: Stats) -> list[float]:
    """FEATURE_NAMES, in order, for one (query, title) pair."""
    return list(feature_dict(query, title, stats).values())


def feature_matrix(pairs: list[tuple[str, str]], stats: Stats, desc: str = "features") -> np.ndarray:
    rows = [features(q, t, stats) for q, t in tqdm(pairs, desc=desc, unit="row", mininterval=1.0, file=sys.stderr)]
    return np.asarray(rows, dtype=np.float64).reshape(len(pairs), len(FEATURE_NAMES))


PARAMS = dict(learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=40, l2_regularization=1.0)


def fit(X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, max_iter: int = 500, holdout: float = 0.15,
        seed: int = 0, levels: tuple[int, ...] = LEVELS):
    """Balanced-class HistGradientBoosting. The number of rounds is the one with the best macro-F1
    on a held-out share of the train *queries* (groups); then it is refit on all rows with it.
    Returns (model, info)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import f1_score
    from sklearn.model_selection import GroupShuffleSplit

    def model(n: int):
        return HistGradientBoostingClassifier(max_iter=n, early_stopping=False, class_weight="balanced",
                                              random_state=seed, **PARAMS)

    inner, held = next(GroupShuffleSplit(n_splits=1, test_size=holdout, random_state=seed).split(X, y, groups))
    probe = model(max_iter).fit(X[inner], y[inner])
    curve = [f1_score(y[held], probe.classes_[p.argmax(1)], average="macro", labels=list(levels), zero_division=0)
             for p in probe.staged_predict_proba(X[held])]
    best = int(np.argmax(curve)) + 1
    final = model(best).fit(X, y)
    return final, {"n_iter": best, "max_iter": max_iter, "holdout_rows": len(held),
                   "holdout_macro_f1": round(float(curve[best - 1]), 4), "params": PARAMS}


def predict_proba(model, X: np.ndarray, levels: tuple[int, ...] = LEVELS) -> np.ndarray:
    """P(level) for `levels` in that order (columns), whatever classes the model saw."""
    out = np.zeros((len(X), len(levels)))
    out[:, [levels.index(c) for c in model.classes_]] = model.predict_proba(X)
    return out


def expected_level(probs: np.ndarray) -> np.ndarray:
    return probs @ np.asarray(LEVELS, dtype=float)


def out_of_fold(X: np.ndarray, y: np.ndarray, groups: np.ndarray, max_iter: int, seed: int, folds: int = 5,
                levels: tuple[int, ...] = LEVELS) -> np.ndarray:
    """Each row's P(level) from a model fit without its query (folds by query): a teacher for SFT
    that never saw the row it teaches on."""
    from sklearn.model_selection import GroupKFold

    out = np.zeros((len(X), len(levels)))
    for fit_rows, held in tqdm(GroupKFold(n_splits=folds).split(X, y, groups), total=folds, desc="teacher folds",
                               file=sys.stderr):
        model, _ = fit(X[fit_rows], y[fit_rows], groups[fit_rows], max_iter=max_iter, seed=seed, levels=levels)
        out[held] = predict_proba(model, X[held], levels)
    return out


def teacher_probs(rows: list[dict], names: list[str], catalog_titles: list[str] | None = None, *,
                  max_iter: int = 500, seed: int = 0) -> np.ndarray:
    """Out-of-fold probabilities of the lexical model for training rows {query, product, label}
    (product: a title, or a dict with one), in the scheme's order (best first). IDF comes from the
    catalog's titles when given, else from the rows' own. One thread: the fits are small, and
    OpenMP's spinning threads cost more than they give on a busy 2-core machine."""
    from threadpoolctl import threadpool_limits

    levels = tuple(range(1, len(names) + 1))  # the best label is the highest level
    titles = [r["product"] if isinstance(r["product"], str) else str(r["product"].get("title", "")) for r in rows]
    stats = build_stats(catalog_titles if catalog_titles else sorted(set(titles)))
    X = feature_matrix(list(zip((r["query"] for r in rows), titles)), stats, "teacher features")
    y = np.array([len(names) - names.index(r["label"]) for r in rows])
    with threadpool_limits(1):
        return out_of_fold(X, y, np.array([r["query"] for r in rows]), max_iter, seed, levels=levels)[:, ::-1]


def teacher_records(rows: list[dict], probs: np.ndarray) -> list[dict]:
    """The teacher file's lines (what `sft.teacher` reads): {query, product_id, probs} with the
    probabilities in the scheme's order, best first, to 5 decimals."""
    return [{"query": r["query"], "product_id": str(r["product_id"]), "probs": [round(float(v), 5) for v in p]}
            for r, p in zip(rows, probs)]
