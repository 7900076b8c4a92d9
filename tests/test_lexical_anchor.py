"""training/lexical.py's features on hand-checked pairs, bench/lexical_anchor.py, and the whole script, run as a
subprocess on a small synthetic Home Depot-like set where the level follows the word overlap."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.lexical import FEATURE_NAMES, build_stats, feature_dict, features, stem  # noqa: E402

CATALOG = ["Glacier Bay 36 in. White Vanity Cabinet", "DEWALT Cordless Drill Kit", "GE 25 cu. ft. Refrigerator",
           "Hunter 52 in. Ceiling Fan", "Suncast Garden Hose Reel", "Ryobi Cordless Leaf Blower"]


def test_stem():
    assert [stem(w) for w in ("drills", "batteries", "glass", "ceiling", "tile", "box")] == \
        ["drill", "battery", "glass", "ceil", "tile", "box"]


def test_features_hand_checked():
    stats = build_stats(CATALOG)
    f = feature_dict("36 inch white vanity", CATALOG[0], stats)
    # "inch" is the unit (dropped as a word): the words 36, white, vanity are all in the title
    assert f["cov_plain"] == f["cov_stem"] == f["cov_fuzzy"] == f["cov_idf"] == 1.0
    assert f["all_matched"] == 1.0 and f["n_matched"] == 3
    assert f["jaccard"] == pytest.approx(3 / 6)  # title words: glacier bay 36 white vanity cabinet
    assert f["num_match"] == 1.0 and f["unit_match"] == 1.0 and f["q_units"] == 1
    assert f["last_in"] == 1.0 and f["head_match"] == 1.0  # the product type is "vanity cabinet"
    assert f["bm25"] > 0 and f["tfidf_cos"] > 0 and f["idf_missing_sum"] == 0
    assert f["phrase_in"] == 1.0 and f["bigram_match"] == 1.0  # "36 in white vanity", normalised, is in it

    f = feature_dict("cordless drills", CATALOG[1], stats)
    assert f["cov_plain"] == 0.5 and f["cov_stem"] == 1.0  # the stemmer matches drills = drill
    assert f["phrase_in"] == 0.0 and f["brand_in_query"] == 0.0

    f = feature_dict("refrigirator", CATALOG[2], stats)  # a typo: only the fuzzy match finds it
    assert f["cov_stem"] == 0.0 and f["cov_fuzzy"] == 1.0 and f["last_fuzzy"] == 1.0

    f = feature_dict("garden hose", CATALOG[3], stats)  # nothing in common
    assert f["cov_plain"] == f["cov_fuzzy"] == f["bm25"] == f["tfidf_cos"] == f["jaccard"] == 0.0
    assert f["idf_missing_sum"] > 0
    assert feature_dict("garden hose", CATALOG[4], stats)["bm25"] > 0

    assert list(feature_dict("a", "b", stats)) == FEATURE_NAMES
    assert len(features("x", "y", stats)) == len(FEATURE_NAMES) >= 30


def synthetic(rng: random.Random, n_queries: int, start: int) -> tuple[list[dict], list[str]]:
    """Queries "adjective noun"; the title has both words (4), the noun (3), the adjective (2), neither (1)."""
    def word():
        return "".join(rng.choice("bcdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))

    rows, titles = [], []
    for qi in range(n_queries):
        adj, noun, brand = word(), word(), word()
        query = f"{adj} {noun}"
        for level, words in ((4, [adj, noun]), (3, [word(), noun]), (2, [adj, word()]), (1, [word(), word()])):
            for k in range(2):
                title = " ".join([brand.title(), *(w.title() for w in words), f"{rng.randint(2, 60)} in.", word()])
                rel = {4: 3.0, 3: 2.33, 2: 1.67, 1: 1.0}[level]
                rows.append({"query": query, "product_id": f"{start + qi}-{level}-{k}", "title": title,
                             "relevance": rel, "level": level})
                titles.append(title)
    return rows, titles


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_script_end_to_end(tmp_path):
    rng = random.Random(0)
    train, t1 = synthetic(rng, 60, 0)
    dev, t2 = synthetic(rng, 20, 1000)
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "dev.jsonl", dev)
    write_jsonl(tmp_path / "products.jsonl", [{"product_id": str(i), "title": t} for i, t in enumerate(t1 + t2)])
    out = tmp_path / "x.json"
    proc = subprocess.run([sys.executable, "bench/lexical_anchor.py", "--data", str(tmp_path), "--out", str(out),
                           "--max-iter", "60", "--max-train", "400"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "lexical GBDT" in proc.stdout and "cores" in proc.stdout and "command:" in proc.stdout

    report = json.loads(out.read_text())
    assert {"results", "dev_rows", "features", "model", "settings", "hardware", "command", "wall_s"} <= set(report)
    assert report["dev_rows"] == len(dev) and report["features"] == FEATURE_NAMES
    assert {"cpu", "cores"} <= set(report["hardware"])
    assert 1 <= report["model"]["n_iter"] <= 60
    gbdt, prior = report["results"]["lexical GBDT"], report["results"]["label prior"]
    for r in (gbdt, prior):
        assert {"macro_f1", "accuracy", "spearman", "f1", "train_rows", "fit_s"} <= set(r)
        assert set(r["f1"]) == {"Excellent", "Related", "Mismatch", "Irrelevant"}
        assert r["train_rows"] == 400
    # the level is a function of the word overlap here: the model must find it, the prior cannot
    assert gbdt["macro_f1"] > 0.9 and gbdt["spearman"] > 0.9, gbdt
    assert prior["macro_f1"] < 0.5 and abs(prior["spearman"]) < 0.3, prior
    # the same rule as the judge's eval: label weights toward the train prior, picked by macro-F1
    weighted = report["results"]["lexical GBDT, label prior weights"]
    assert weighted["macro_f1"] == max(s["macro_f1"] for s in weighted["prior_sweep"]) and len(weighted["label_weights"]) == 4
    probs = np.load(tmp_path / "x_dev_probs.npy")  # for bench/ensemble_dev.py: levels 1..4, dev order
    assert probs.shape == (len(dev), 4) and np.allclose(probs.sum(1), 1)
