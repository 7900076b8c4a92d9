"""A judge dir (adapter + judge.json card) from `lref train`, served by `lref serve --judge DIR`:
the same prompt tokens and probabilities as the training run's own eval, and a one-line refusal
when the base model or tokenizer is not the one it was trained on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import httpx
import pytest
import yaml

from conftest import Server
from test_training import judgments

from reranker.core import cumpt_index, load_scheme, reweight
from reranker.models.judge import CARD, read_card, weights_sha256


def lref(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lref", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    """An SFT-only chain with the compact instruction and class-balanced rows, as the shipped recipe."""
    root = tmp_path_factory.mktemp("judge")
    rows = [{**r, "relevance": 1 + (r["level"] - 1) * 2 / 3} for r in judgments()]  # a rater mean in 1..3
    (root / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "run_dir": "run", "model": str(tiny_model_dir), "seed": 0, "device": "cpu",
        "prompt": {"instruction": "compact", "product_fields": [], "max_doc_tokens": 48},
        "data": {"train": "judgments.jsonl", "eval_fraction": 0.25, "rating_field": "relevance"},
        "select": {"enabled": False}, "cot": {"enabled": False},
        "lora": {"r": 8, "alpha": 16},
        "sft": {"epochs": 3, "learning_rate": 0.003, "batch_size": 8, "save_steps": 5, "balance_classes": True,
                "rows_per_class": 20},
        "dpo_debias": {"enabled": False}, "dpo_passn": {"enabled": False}, "grpo": {"enabled": False},
        "eval": {"betas": [0.3, 0.5, 0.7]},
        "export": {"judge_dir": "judge", "name": "tiny-judge", "notes": "synthetic rows made by the test"},
    }
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    done = lref("train", "--config", str(root / "train.yaml"), "--set", "eval.betas=[0.3, 0.5, 0.6]")  # over the YAML's
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def test_the_judge_dir_is_an_adapter_with_a_card(run, tiny_model_dir):
    card = read_card(run / "judge")
    assert card.weights == "adapter" and (run / "judge/adapter/adapter_model.safetensors").is_file()
    assert f"../{CARD}" in (run / "judge/adapter/README.md").read_text()  # the adapter says where its card is
    assert not (run / "judge/model").exists()  # the adapter alone: small enough to commit
    assert card.base_model == str(tiny_model_dir) and card.base_sha256 == weights_sha256(tiny_model_dir)
    assert card.prompt["instruction"].startswith("Grade the product for the shopping query: 4 Excellent")
    assert card.prompt["product_fields"] == [] and card.prompt["max_doc_tokens"] == 48
    report = json.loads((run / "run/eval/metrics.json").read_text())
    assert card.policy["beta"] == report["chosen_beta"]
    # balanced SFT: eval weighs the labels toward the train prior, exponent chosen by macro-F1, and the card keeps them
    assert card.policy["label_weights"] == report["label_weights"] and len(card.policy["label_weights"]) == 4
    assert [s["exponent"] for s in report["prior_sweep"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert report["macro_f1"] == max(s["macro_f1"] for s in report["prior_sweep"])
    assert card.metrics["spearman_against"] == "rating" and -1 <= card.metrics["spearman"] <= 1
    assert [s["beta"] for s in report["beta_sweep"]] == [0.3, 0.5, 0.6]  # `--set` won over the YAML's 0.7
    # the card's command replays the run, --set included
    assert card.training["command"].endswith("train.yaml --set 'eval.betas=[0.3, 0.5, 0.6]'")
    assert card.training["settings"] == ["eval.betas=[0.3, 0.5, 0.6]"] and "judgments.jsonl" in card.training["data"]["train"]["file"]
    assert len(card.training["data"]["train"]["sha256"]) == 64 and card.training["stages"]["sft"]["phases"] == {"label": 80}
    readme = (run / "judge/README.md").read_text()
    assert "lref serve --judge" in readme and "synthetic rows made by the test" in readme


def test_serving_from_the_card_rebuilds_the_training_prompt_and_probabilities(run, tiny_model_dir):
    from transformers import AutoTokenizer

    from training.config import load_config

    card = read_card(run / "judge")
    scheme = card.scheme_obj()
    served = card.prompt_spec().build(AutoTokenizer.from_pretrained(tiny_model_dir), card.scheme_obj())
    trained = load_config(run / "train.yaml")
    training = trained.prompt.build(AutoTokenizer.from_pretrained(tiny_model_dir), load_scheme(trained.scheme))
    rows = [json.loads(x) for x in (run / "run/data/eval.jsonl").read_text().splitlines()]
    for row in rows:
        assert served.encode(row["query"], row["product"]).prompt_ids == training.encode(row["query"], row["product"]).prompt_ids
    want = {(r["query"], r["product_id"]): r["probs"] for r in map(json.loads, (run / "run/eval/probs.jsonl").read_text().splitlines())}
    srv = Server(["--judge", str(run / "judge"), "--dtype", "float32"])  # eval ran in fp32
    try:
        srv.wait_ready()
        assert httpx.get(srv.url + "/health").json()["judge"] == str(run / "judge")
        for query in sorted({r["query"] for r in rows}):
            mine = [r for r in rows if r["query"] == query]
            got = httpx.post(srv.url + "/v1/classify", json={"query": query, "documents": [r["product"] for r in mine]},
                             timeout=60).json()["results"]
            for row, result in zip(mine, got):
                probs = list(result["probabilities"].values())  # what serving decides on: weighted as the card says
                assert probs == pytest.approx(reweight(want[(query, row["product_id"])], card.policy["label_weights"]), abs=1e-5)
                assert result["label"] == scheme.levels[cumpt_index(probs, card.policy["beta"])].name  # the card's β
    finally:
        srv.stop()


def edited_judge(run, tmp_path, **changes):
    judge = tmp_path / "judge"
    shutil.copytree(run / "judge", judge)
    card = json.loads((judge / CARD).read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            card[section][field] = value
        else:
            card[section] = value
    (judge / CARD).write_text(json.dumps(card))
    return judge


@pytest.mark.parametrize("changes, message", [
    ({"base_sha256": "0" * 64}, "trained on a base model whose weights hash 000000000000"),
    ({"prompt_check__ids": [1, 2, 3]}, "this tokenizer builds other prompt tokens than training did"),
    ({"policy__label_weights": [1.0, 1.0]}, "label_weights must be 4 positive numbers"),
])
def test_a_base_or_tokenizer_that_does_not_match_is_a_one_line_error(run, tmp_path, changes, message):
    judge = edited_judge(run, tmp_path, **changes)
    result = lref("score", "--judge", str(judge), "cordless drill", "garden hose")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--judge", "/nonexistent/judge"], "not a judge dir (no judge.json)"),
    (["--judge", "JUDGE", "--adapter", "JUDGE/adapter"], "--adapter and --judge both name trained weights"),
])
def test_bad_judge_options_are_one_line_errors(run, args, message):
    args = [a.replace("JUDGE", str(run / "judge")) for a in args]
    result = lref("score", *args, "cordless drill", "garden hose")
    assert result.returncode == 2 and "Traceback" not in result.stderr and message in result.stderr, result.stderr


def test_a_malformed_card_is_a_one_line_error(run, tmp_path):
    judge = edited_judge(run, tmp_path, format="something-else")
    result = lref("score", "--judge", str(judge), "cordless drill", "garden hose")
    assert result.returncode == 2 and "not a lref-judge/1 card" in result.stderr, result.stderr


def test_a_judges_adapter_is_served_with_its_card(run):
    """--adapter JUDGE/adapter must not serve the weights under the default prompt they never saw."""
    judged = lref("score", "--judge", str(run / "judge"), "--dtype", "float32", "cordless drill", "garden hose")
    adapter = lref("score", "--adapter", str(run / "judge/adapter"), "--dtype", "float32", "cordless drill", "garden hose")
    assert judged.returncode == adapter.returncode == 0, judged.stderr + adapter.stderr
    assert adapter.stdout == judged.stdout


def test_zero_shot_keeps_the_bare_model(run, tiny_model_dir):
    judged = lref("score", "--judge", str(run / "judge"), "--dtype", "float32", "cordless drill", "garden hose")
    bare = lref("score", "--judge", "zero-shot", "--model", str(tiny_model_dir), "--dtype", "float32",
                "cordless drill", "garden hose")
    assert judged.returncode == bare.returncode == 0, judged.stderr + bare.stderr
    assert judged.stdout != bare.stdout  # the adapter and the card's prompt change the judgments


def test_committed_judges_have_readable_cards_and_small_adapters():
    from pathlib import Path

    cards = sorted((Path(__file__).parents[1] / "models").glob(f"**/{CARD}"))
    assert cards, "models/ holds at least the Home Depot judge"
    for path in cards:
        card = read_card(path.parent)
        weights = sum(f.stat().st_size for f in (path.parent / card.weights).iterdir())
        assert card.weights == "adapter" and weights <= 20 * 2**20, (path, weights)
        assert "Kaggle" in card.notes and card.metrics["rows"] > 0 and card.base_model == "default"


@pytest.mark.slow
def test_the_shipped_judge_is_the_default_and_grades_an_obvious_case():
    """`lref serve/score/demo` with no judge option load the judge in models/ through the real
    loading code (base from PyPI, card, adapter), and it grades the item searched for well above a
    product from another department."""
    from pathlib import Path

    from reranker import Judge
    from reranker.models.judge import shipped_judge

    judge = Judge.load(device="cpu")  # what `lref serve` loads with no judge option, through the Python API
    assert shipped_judge() is not None and Path(judge.config.judge_dir) == shipped_judge()
    cases = {
        "cordless drill": ["DEWALT 20-Volt MAX Lithium-Ion Cordless 1/2 in. Drill/Driver Kit",
                           "Suncast 225 ft. Hose Reel with Hose Guide"],
        "kitchen faucet": ["Moen Arbor Single-Handle Pull-Down Sprayer Kitchen Faucet in Stainless",
                           "BEHR Premium Plus 1 gal. Flat Interior Paint"],
        "ceiling fan": ["Hampton Bay Glendale 52 in. Indoor Ceiling Fan with Light Kit",
                        "Vigoro 3 cu. ft. Brown Mulch"],
    }
    for query, titles in cases.items():
        expected = [j.expected for j in judge.judge(query, titles)]
        assert expected[0] > expected[1] + 0.3, (query, expected)


def test_the_python_api_judges_as_the_service_does(run):
    """Judge.load(dir).judge / .rank give what a real `lref serve --judge dir` answers on /v1/classify
    for the same documents: the same probabilities, levels, tiers and drops, and rank serves the kept
    ones in score order."""
    from reranker import Judge
    from reranker.api import JudgeInputError

    query = "cordless drill"
    documents = ["DEWALT 20V MAX cordless drill kit", "drill bit set", "garden hose", {"title": "drill charger"}]
    judge = Judge.load(str(run / "judge"), dtype="float32", device="cpu", beta=0.7)
    judged = judge.judge(query, documents)
    server = Server(["--judge", str(run / "judge"), "--dtype", "float32", "--device", "cpu", "--beta", "0.7"])
    try:
        server.wait_ready()
        answer = httpx.post(server.url + "/v1/classify", json={"query": query, "documents": documents}, timeout=60).json()
    finally:
        server.stop()
    served = sorted(answer["results"], key=lambda r: r["index"])
    assert [j.level.name for j in judged] == [r["label"] for r in served]
    assert [j.tier for j in judged] == [r["tier"] for r in served]
    for mine, theirs in zip(judged, served):
        assert mine.probs == pytest.approx(theirs["probabilities"], abs=1e-5)
    ranked = judge.rank(query, documents)
    assert [i for i, _ in ranked] == sorted((i for i, j in enumerate(judged) if j.keep), key=lambda i: -judged[i].score)
    assert all(j.keep for _, j in ranked) and len(ranked) < len(documents)  # β 0.7 drops some of these
    with pytest.raises(JudgeInputError, match="query must not be empty"):
        judge.judge("  \u200b", documents)
