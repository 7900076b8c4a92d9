"""The staged training pipeline end to end on a tiny model and tiny data, through `lref train`,
and the exported model served by a real `lref serve`."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import httpx
import pytest
import yaml

from conftest import Server

PRODUCTS = {
    "drill": ["cordless drill 18v", "drill bit set", "hammer drill kit", "drill battery pack"],
    "hose": ["garden hose 50 ft", "hose reel cart", "expandable garden hose", "hose nozzle"],
    "paint": ["white interior paint gallon", "paint roller kit", "exterior paint primer", "paint tray"],
    "faucet": ["kitchen faucet chrome", "bathroom faucet", "faucet aerator", "kitchen sink"],
}
QUERIES = ["cordless drill", "drill", "garden hose", "hose 50 ft", "white paint", "paint", "kitchen faucet", "faucet",
           "interior paint", "hose reel", "drill bits", "bathroom faucet"]


def judgments() -> list[dict]:
    rng = random.Random(0)
    rows = []
    for query in QUERIES:
        for topic, titles in PRODUCTS.items():
            for title in titles:
                words = set(query.split())
                level = 4 if words <= set(title.split()) else 3 if words & set(title.split()) else 2 if topic in query else 1
                if rng.random() < 0.35:
                    rows.append({"query": query, "product_id": f"{topic}-{title}", "title": title, "level": level})
    return rows


def lref(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reranker.cli", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    (root / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judgments()))
    config = {
        "run_dir": "run", "model": str(tiny_model_dir), "seed": 0, "device": "cpu",
        "data": {"train": "judgments.jsonl", "eval_fraction": 0.25},
        "select": {"im_fraction": 0.5, "ms_folds": 2},
        "cot": {"generator": "rules"},
        "sft": {"epochs": 1, "batch_size": 8, "max_length": 384, "save_steps": 5, "lora": {"r": 4, "alpha": 8}},
        "eval": {"betas": [0.3, 0.5, 0.7]},
    }
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    done = lref("train", "--config", str(root / "train.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def metrics(root, stage: str) -> dict:
    return json.loads((root / "run" / stage / "metrics.json").read_text())


def test_every_stage_leaves_its_artefacts(trained):
    data = metrics(trained, "data")
    assert data["train_rows"] > 0 and data["eval_rows"] > 0
    train = [json.loads(x) for x in (trained / "run/data/train.jsonl").read_text().splitlines()]
    evaluation = [json.loads(x) for x in (trained / "run/data/eval.jsonl").read_text().splitlines()]
    assert not {r["query"] for r in train} & {r["query"] for r in evaluation}  # split by query
    selected = metrics(trained, "select")
    assert 0 < selected["kept"] < selected["rows"]
    assert selected["mislabel_model"]["source"] == "simulated confusions"
    cot = [json.loads(x) for x in (trained / "run/cot/train.jsonl").read_text().splitlines()]
    assert {r["style"] for r in cot} == {"EE", "RA", "DR"} and all(r["reasoning"] for r in cot)
    sft = metrics(trained, "sft")
    assert sft["phases"] == ["EE", "RA", "DR"]  # the curriculum order
    assert (trained / "run/sft/model/adapter_config.json").exists()
    report = metrics(trained, "eval")
    assert 0.0 <= report["accuracy"] <= 1.0 and set(report["per_class"]) == {"Excellent", "Related", "Mismatch", "Irrelevant"}
    assert [s["beta"] for s in report["beta_sweep"]] == [0.3, 0.5, 0.7] and report["chosen_beta"] in (0.3, 0.5, 0.7)
    assert sum(map(sum, report["confusion"]["matrix"])) == data["eval_rows"]
    assert (trained / "run/eval/report.png").stat().st_size > 10_000
    assert (trained / "run/export/model/config.json").exists()


def test_a_second_run_resumes_and_skips_finished_stages(trained):
    again = lref("train", "--config", str(trained / "train.yaml"))
    assert again.returncode == 0
    assert again.stdout.count("skipped (done)") == 6


def test_exported_model_serves_through_the_reranker(trained):
    srv = Server(["--model", str(trained / "run/export/model")])
    try:
        srv.wait_ready()
        response = httpx.post(f"{srv.url}/v1/rerank", json={"query": "garden hose", "documents": ["garden hose 50 ft", "paint tray"]})
        assert response.status_code == 200
        assert {r["index"] for r in response.json()["results"]} == {0, 1}
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"data": {"train": "missing.jsonl"}}, "data.train: file not found"),
        ({"data": {"train": "judgments.jsonl", "grade_map": {"5": "Perfect"}}}, "data.grade_map"),
        ({"sft": {"epochs": 1, "lora": {"rank": 4}}}, "unknown key(s) rank"),
        ({"cot": {"generator": "teacher"}}, "cot.teacher: base_url and model are required"),
    ],
)
def test_bad_config_is_refused_before_training(trained, tmp_path, change, message):
    config = yaml.safe_load((trained / "train.yaml").read_text())
    config.update(change)
    config["data"]["train"] = str(trained / config["data"]["train"]) if config["data"]["train"] != "missing.jsonl" else "missing.jsonl"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    done = lref("train", "--config", str(path))
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()  # nothing started


def test_unknown_stage_and_labels_outside_the_scheme(trained, tmp_path):
    done = lref("train", "--config", str(trained / "train.yaml"), "--stage", "pretrain")
    assert done.returncode == 2 and "unknown stage 'pretrain'" in done.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "product_id": "1", "title": "t", "level": 7}) + "\n")
    config = yaml.safe_load((trained / "train.yaml").read_text())
    config["data"]["train"] = str(bad)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = lref("train", "--config", str(tmp_path / "c.yaml"))
    assert done.returncode == 2 and "grade 7" in done.stderr and "map it with data.grade_map" in done.stderr
