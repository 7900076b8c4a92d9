"""The staged training pipeline end to end on a tiny model and tiny data, through `lref train`,
and the exported model served by a real `lref serve`."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import httpx
import pytest
import yaml

from conftest import Server
from training.config import SelectConfig
from training.select import select

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
    return subprocess.run([sys.executable, "-m", "lref", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    (root / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judgments()))
    config = {
        "run_dir": "run", "model": str(tiny_model_dir), "seed": 0, "device": "cpu",
        "data": {"train": "judgments.jsonl", "eval_fraction": 0.25},
        "select": {"enabled": False},  # "SFT on all": the tiny judge needs every row (selection: test below)
        "cot": {"generator": "rules"},
        # Strong enough that the tiny model answers with a label token first, so sampling finds
        # some right answers and GRPO gets informative prompts.
        "lora": {"r": 8, "alpha": 16},  # one adapter shape for every trained stage
        "sft": {"epochs": 6, "learning_rate": 0.003, "batch_size": 8, "max_length": 384, "save_steps": 5,
                "compile": False},  # compiled training: its own tests below
        "dpo_debias": {"max_rows": 24, "batch_size": 4, "learning_rate": 0.001},
        "dpo_passn": {"max_rows": 12, "n": 3, "max_new_tokens": 12, "batch_size": 4},
        # A field of TRL's GRPOConfig passed through: GRPO's trainer must receive it (checked below).
        "grpo": {"max_rows": 16, "num_generations": 3, "max_new_tokens": 4, "prompts_per_step": 1,
                 "max_prompts": 6, "trl": {"max_grad_norm": 0.5}},
        "eval": {"betas": [0.3, 0.5, 0.7], "each_stage": True},
    }
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    done = lref("train", "--config", str(root / "train.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def metrics(root, stage: str) -> dict:
    return json.loads((root / "run" / stage / "metrics.json").read_text())


def report_model(root) -> str:
    return metrics(root, "eval")["model"]


def test_every_stage_leaves_its_artefacts(trained):
    data = metrics(trained, "data")
    assert data["train_rows"] > 0 and data["eval_rows"] > 0
    train = [json.loads(x) for x in (trained / "run/data/train.jsonl").read_text().splitlines()]
    evaluation = [json.loads(x) for x in (trained / "run/data/eval.jsonl").read_text().splitlines()]
    assert not {r["query"] for r in train} & {r["query"] for r in evaluation}  # split by query
    assert {k: v for k, v in metrics(trained, "select").items() if k != "seconds"} == {"enabled": False, "kept": data["train_rows"]}
    cot = [json.loads(x) for x in (trained / "run/cot/train.jsonl").read_text().splitlines()]
    assert {r["style"] for r in cot} == {"EE", "RA", "DR"} and all(r["reasoning"] for r in cot)
    sft = metrics(trained, "sft")
    assert list(sft["phases"]) == ["EE", "RA", "DR"]  # the curriculum order
    assert (trained / "run/sft/model/config.json").exists()  # LoRA merged: a plain model dir
    debias = metrics(trained, "dpo_debias")
    assert debias["pairs"] == debias["train_optimistic_errors"] <= debias["train_errors"]
    assert {"optimistic_share_of_errors"} <= set(debias["eval_before"]) & set(debias["eval_after"])
    passn = metrics(trained, "dpo_passn")
    assert passn["rows"] == 12 and 0.0 <= passn["pass_at_n"] <= 1.0 and passn["pairs"] <= 12
    grpo = metrics(trained, "grpo")
    assert 0 < grpo["kept_balanced"] <= grpo["informative"] <= grpo["rows"] == 16  # GRPOTrainer really ran
    assert (trained / "run/grpo/checkpoint-1").exists() or any((trained / "run/grpo").glob("checkpoint-*"))
    assert report_model(trained).endswith("grpo/model")  # eval judges the last trained stage
    per_stage = metrics(trained, "eval")["per_stage"]
    assert list(per_stage) == ["base", "sft", "dpo_debias", "dpo_passn", "grpo"]  # the ablation rows
    assert per_stage["grpo"]["macro_f1"] == metrics(trained, "eval")["macro_f1"]
    report = metrics(trained, "eval")
    assert 0.0 <= report["accuracy"] <= 1.0 and set(report["per_class"]) == {"Excellent", "Related", "Mismatch", "Irrelevant"}
    assert [s["beta"] for s in report["beta_sweep"]] == [0.3, 0.5, 0.7] and report["chosen_beta"] in (0.3, 0.5, 0.7)
    assert sum(map(sum, report["confusion"]["matrix"])) == data["eval_rows"]
    assert (trained / "run/eval/report.png").stat().st_size > 10_000
    # the chain ends with DPO/GRPO adapters over merged models: the judge dir holds the full model
    assert json.loads((trained / "run/export/judge/judge.json").read_text())["weights"] == "model"
    assert (trained / "run/export/judge/model/config.json").exists()


def test_selection_keeps_exactly_the_rows_the_three_helpers_agree_on():
    names = ["Excellent", "Related", "Mismatch", "Irrelevant"]
    rows = [{"query": r["query"], "product_id": r["product_id"], "product": r["title"], "label": names[4 - r["level"]]}
            for r in judgments()]
    kept, votes, report = select(rows, SelectConfig(im_fraction=0.2, ms_folds=2), 0, names)
    assert [v["keep"] for v in votes] == [v["im"] != v["label"] and v["ci"] == v["label"] and v["ms"] != v["label"]
                                          for v in votes]
    assert kept == [r for r, v in zip(rows, votes) if v["keep"]] and 0 < len(kept) < len(rows)
    assert report["kept"] == len(kept) and report["mislabel_model"]["source"] == "simulated confusions"
    # With a teacher, the rows it disputes are exactly the ones MS flags.
    teacher = {(r["query"], r["product_id"]): ("Irrelevant" if i % 5 == 0 else r["label"]) for i, r in enumerate(rows)}
    _, votes, report = select(rows, SelectConfig(im_fraction=0.2), 0, names, teacher)
    disputed = [teacher[(r["query"], r["product_id"])] != r["label"] for r in rows]
    assert [v["ms"] == v["label"] for v in votes] == disputed and report["mislabel_model"]["source"] == "teacher"


def test_class_balancing_upsamples_every_label_to_the_largest():
    from collections import Counter

    from training.sft import phases

    rows = [{"label": "Related"}] * 6 + [{"label": "Irrelevant"}] * 2 + [{"label": "Excellent"}]
    [(name, out)] = phases(rows, ["EE", "RA", "DR"], balance=True, seed=0)
    assert name == "label" and Counter(r["label"] for r in out) == {"Related": 6, "Irrelevant": 6, "Excellent": 6}
    assert phases(rows, ["EE"])[0][1] == rows  # off by default
    # with a row budget per class: larger labels sampled down without repeats, smaller ones up
    [(_, capped)] = phases(rows, ["EE"], balance=True, seed=0, per_class=3)
    assert Counter(r["label"] for r in capped) == {"Related": 3, "Irrelevant": 3, "Excellent": 3}


def test_a_later_sft_pass_takes_the_rows_the_first_pass_left_out_first():
    from collections import Counter

    from training.config import SftConfig, SftPass
    from training.sft import phases, plan

    rows = [{"label": "Related", "i": i} for i in range(10)] + [{"label": "Irrelevant", "i": i} for i in range(3)]
    cfg = SftConfig(balance_classes=True, rows_per_class=4, more_passes=[SftPass(6, 1e-4)], learning_rate=3e-4)
    (first, first_rows, first_lr, _, _), (second, second_rows, second_lr, _, _) = plan(rows, cfg, seed=0)
    assert (first, first_lr, second, second_lr) == ("label", 3e-4, "label@pass2", 1e-4)
    assert first_rows == phases(rows, cfg.curriculum, True, 0, 4)[0][1]  # the first pass is as without more passes
    related_before = {r["i"] for r in first_rows if r["label"] == "Related"}
    related_now = [r["i"] for r in second_rows if r["label"] == "Related"]
    assert Counter(r["label"] for r in second_rows) == {"Related": 6, "Irrelevant": 6}
    assert len(set(related_now)) == 6 and len(set(related_now) - related_before) == 6  # 6 unseen rows remained


def test_completion_loss_equals_the_models_own_loss_on_the_completion(tiny_model_dir):
    """The LM head run on completion positions only gives the loss of the full-vocabulary forward."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reranker.core import PromptSpec, load_scheme
    from training.rows import sft_row
    from training.sft import completion_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    prompt = PromptSpec(instruction="compact").build(AutoTokenizer.from_pretrained(tiny_model_dir), load_scheme())
    rows = [sft_row(prompt, "cordless drill", "drill battery pack", "Related"),
            sft_row(prompt, "garden hose", "garden hose 50 ft heavy duty", "Excellent", "a hose")]
    width = max(len(r["input_ids"]) for r in rows)
    pad = lambda xs, v: xs + [v] * (width - len(xs))  # noqa: E731
    ids = torch.tensor([pad(r["input_ids"], 0) for r in rows])
    mask = torch.tensor([pad([1] * len(r["input_ids"]), 0) for r in rows])
    labels = torch.tensor([pad([t if m else -100 for t, m in zip(r["input_ids"], r["completion_mask"])], -100) for r in rows])
    ours = completion_loss(model, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    theirs = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(ours, theirs)
    ours.backward()  # and it trains: gradients reach the model
    assert model.lm_head.weight.grad.abs().sum() > 0


def _loss_and_grads(model, batch, label_ids=None):
    from training.sft import completion_loss

    model.zero_grad()
    loss = completion_loss(model, batch, label_ids=label_ids)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_compiled_layers_give_the_eager_loss_and_gradients(tiny_model_dir):
    """sft.compile: the compiled decoder layers (eager attention, as training on a CPU loads them)
    compute the same loss and LoRA gradients as the plain model, on rows of unequal length."""
    import torch

    from training.sft import _compiler_works

    if _compiler_works("cpu"):  # Makefile machines have one; compile: auto trains eager without (next test)
        pytest.skip(f"torch.compile does not work on this machine: {_compiler_works('cpu')}")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reranker.core import PromptSpec, load_scheme
    from training.rows import sft_row
    from training.sft import compile_layers

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="eager"),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    prompt = PromptSpec(instruction="compact").build(AutoTokenizer.from_pretrained(tiny_model_dir), load_scheme())
    rows = [sft_row(prompt, "cordless drill", "drill battery pack", "Related"),
            sft_row(prompt, "garden hose", "garden hose 50 ft heavy duty with a brass nozzle", "Excellent")]
    width = max(len(r["input_ids"]) for r in rows)
    pad = lambda xs, v: xs + [v] * (width - len(xs))  # noqa: E731
    batch = {"input_ids": torch.tensor([pad(r["input_ids"], 0) for r in rows]),
             "attention_mask": torch.tensor([pad([1] * len(r["input_ids"]), 0) for r in rows]),
             "labels": torch.tensor([pad([t if m else -100 for t, m in zip(r["input_ids"], r["completion_mask"])], -100)
                                     for r in rows])}
    eager_loss, eager_grads = _loss_and_grads(model, batch)
    compile_layers(model)
    assert all(layer._compiled_call_impl is not None for layer in model.get_base_model().get_decoder().layers)
    for cut in (width, width - 3):  # a second length: the graph is dynamic, not one per shape
        short = {k: v[:, :cut] for k, v in batch.items()}
        loss, grads = _loss_and_grads(model, short)
        if cut == width:
            torch.testing.assert_close(loss, eager_loss, rtol=1e-4, atol=1e-5)
            assert grads.keys() == eager_grads.keys() and len(grads) > 0
            for name in grads:
                error = (grads[name] - eager_grads[name]).norm() / eager_grads[name].norm()
                assert error < 1e-4, (name, error)
    assert torch.isfinite(loss)


def test_compile_auto_trains_eager_where_no_compiler_works(tiny_model_dir, tmp_path):
    """sft.compile auto on a machine whose C++ compiler is missing: one log line, eager training;
    compile: true there fails before training."""
    code = f"""
import json, sys
from pathlib import Path
from transformers import AutoTokenizer
from reranker.core import PromptSpec, load_scheme
from training import sft
from training.config import LoraConfig, SftConfig
tok = AutoTokenizer.from_pretrained({str(tiny_model_dir)!r})
prompt = PromptSpec(instruction="compact").build(tok, load_scheme())
rows = [{{"query": "drill", "product": "cordless drill", "label": "Excellent"}}] * 4
cfg = SftConfig(epochs=1, batch_size=2, save_steps=100, compile=sys.argv[1] == "true" or "auto")
sft.train({str(tiny_model_dir)!r}, rows, prompt, cfg, LoraConfig(r=2, alpha=4), Path(sys.argv[2]), seed=0, device="cpu")
print(json.loads(next(Path(sys.argv[2]).glob("phase*/speed.json")).read_text())["steps"])
"""
    env = {**__import__("os").environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    auto = subprocess.run([sys.executable, "-c", code, "auto", str(tmp_path / "a")], capture_output=True, text=True, env=env, timeout=600)
    assert auto.returncode == 0, auto.stderr[-2000:]
    assert "sft: training eager, torch.compile does not work here" in auto.stdout and auto.stdout.strip().endswith("2")
    forced = subprocess.run([sys.executable, "-c", code, "true", str(tmp_path / "b")], capture_output=True, text=True, env=env, timeout=600)
    assert forced.returncode != 0 and "sft.compile: true, but torch.compile does not work here" in forced.stderr
    assert not list((tmp_path / "b").glob("phase*"))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_query_packs_give_the_loss_and_gradients_of_rows_alone(tiny_model_dir, attention):
    """sft.query_pack: rows of one query share one prefix in one sequence, each product attending
    to the prefix and itself at its own positions; the loss and gradients are those of the same
    rows trained one sequence each (rating loss: one soft target per answer)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from reranker.core import PromptSpec, load_scheme
    from training.sft import _dataset, _WithTargets, label_targets, query_packs

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=attention),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = PromptSpec(instruction="compact").build(tokenizer, load_scheme())
    rows = [{"query": q, "product": p, "label": l, "rating": r} for q, p, l, r in [
        ("cordless drill", "drill battery pack", "Mismatch", 1.67), ("garden hose", "garden hose 50 ft", "Excellent", 3.0),
        ("cordless drill", "DeWalt 20V cordless drill kit with two batteries", "Excellent", 2.67),
        ("cordless drill", "hammer drill", "Related", 2.33), ("white paint", "paint tray", "Irrelevant", 1.0),
        ("garden hose", "hose reel cart", "Related", 2.0)]]
    assert query_packs(rows, prompt, 512, 2) == [[0, 2], [3], [1, 5], [4]]  # a query's rows in order, at most 2 a pack
    assert query_packs(rows, prompt, 60, 3)[0] == [0]  # the sequence limit splits packs too
    targets = label_targets(rows, prompt.scheme.names, "rating", 0.3)
    collate = _WithTargets(DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id or 0))

    def loss_and_grads(pack):
        data = list(_dataset(rows, prompt, 512, targets, pack))
        for d in data:  # what SFTTrainer's dataset preparation makes of completion_mask
            d["labels"] = [t if m else -100 for t, m in zip(d["input_ids"], d.pop("completion_mask"))]
        batch = collate(data)
        assert batch["target"].shape == (len(rows), 4)
        return _loss_and_grads(model, batch, prompt.label_token_ids), sum(len(d["input_ids"]) for d in data)

    (alone, alone_grads), alone_tokens = loss_and_grads(1)
    (packed, packed_grads), packed_tokens = loss_and_grads(3)
    assert packed_tokens < 0.8 * alone_tokens  # the prefix is paid once per pack
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-6)
    for name in alone_grads:
        error = (packed_grads[name] - alone_grads[name]).norm() / alone_grads[name].norm()
        assert error < 1e-5, (name, error)  # float32 summation order, nothing more


def test_rule_rationales_cite_the_evidence_raters_use():
    """Type, kit, accessory, brand and attribute facts, as the Home Depot guidelines weigh them."""
    from training.cot import PairFacts, rule_steps

    def steps(query, title):
        return " ".join(rule_steps(PairFacts.of(query, title)))

    kit = steps("cordless drill", "DEWALT 20-Volt MAX Cordless Drill/Driver Kit")
    assert "is of that type" in kit and "kit or set that includes the drill" in kit and "DEWALT" in kit
    assert "not the fan itself" in steps("ceiling fan", "Westinghouse Light Kit for Ceiling Fan")
    assert "a cover used with a seat" in steps("toilet seat", "Kohler Toilet Seat Cover")
    assert "accessory" not in steps("garden hose", "Rain Bird 50 ft. Garden Hose")  # asked for: not an accessory
    assert "all asked attributes are present" in steps("1/2 in drill", "DEWALT 1/2 in. Drill")
    assert "does not show that type" in steps("kitchen faucet", "BEHR Premium Plus 1 gal. Paint")


def test_beta_by_relevant_loss_drops_the_most_bad_rows_within_the_cap():
    from training.config import EvalConfig
    from training.evaluate import pick_beta

    sweep = [{"beta": 0.1, "bad_recall": 0.2, "bad_precision": 0.6, "bad_f1": 0.3, "relevant_loss": 0.005},
             {"beta": 0.3, "bad_recall": 0.4, "bad_precision": 0.5, "bad_f1": 0.44, "relevant_loss": 0.018},
             {"beta": 0.5, "bad_recall": 0.7, "bad_precision": 0.4, "bad_f1": 0.51, "relevant_loss": 0.09}]
    assert pick_beta(sweep, EvalConfig())["beta"] == 0.5  # bad_f1
    assert pick_beta(sweep, EvalConfig(pick_beta_by="relevant_loss"))["beta"] == 0.3
    assert pick_beta(sweep, EvalConfig(pick_beta_by="relevant_loss", max_relevant_loss=0.001))["beta"] == 0.1  # none fits: least loss


def test_label_weights_are_picked_by_macro_f1_and_stay_servable():
    import numpy as np

    from reranker.core import TierPolicy, load_scheme
    from training.evaluate import pick_prior, prior_weights

    # a judge that over-calls the last label: weighting it down by the prior fixes the two rows it gets wrong
    probs = np.array([[0.6, 0.1, 0.1, 0.2], [0.1, 0.5, 0.1, 0.3], [0.1, 0.35, 0.15, 0.4], [0.1, 0.1, 0.35, 0.45],
                      [0.05, 0.05, 0.1, 0.8]])
    gold = np.array([0, 1, 1, 2, 3])
    prior = np.array([0.3, 0.4, 0.25, 0.05])
    weights, sweep = pick_prior(probs, gold, prior, [0.0, 0.5, 1.0])
    assert [s["exponent"] for s in sweep] == [0.0, 0.5, 1.0] and sweep[0]["macro_f1"] < max(s["macro_f1"] for s in sweep)
    assert weights == max(sweep, key=lambda s: (s["macro_f1"], -s["exponent"]))["weights"] and weights != [1.0] * 4
    assert pick_prior(probs, gold, None, [0.0, 0.5]) == ([], [])  # unbalanced SFT: none
    unseen = prior_weights(np.array([0.5, 0.5, 0.0, 0.0]), 1.0)  # labels absent from the train rows
    assert min(unseen) > 0 and TierPolicy(label_weights=tuple(unseen)).validate(load_scheme()) is not None


def test_label_loss_is_the_cross_entropy_of_the_served_label_distribution(tiny_model_dir):
    """label_loss labels/rating: the answer position's term is CE(target, softmax over the label
    tokens) — the distribution serving reads — and the rest of the completion keeps vocab CE."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reranker.core import PromptSpec, load_scheme
    from training.rows import sft_row
    from training.sft import completion_loss, label_targets

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    scheme = load_scheme()
    prompt = PromptSpec(instruction="compact").build(AutoTokenizer.from_pretrained(tiny_model_dir), scheme)
    rows = [{"query": "cordless drill", "product": "drill battery pack", "label": "Related", "rating": 2.33},
            {"query": "garden hose", "product": "garden hose 50 ft", "label": "Excellent", "rating": 3.0},
            {"query": "garden hose", "product": "hose reel", "label": "Related", "rating": 2.67}]
    soft = label_targets(rows, scheme.names, "rating", sigma=0.3)
    assert soft[0][scheme.names.index("Related")] == max(soft[0]) and abs(sum(soft[0]) - 1) < 1e-9
    assert soft[0] != soft[2]  # same level, different ratings: different targets
    assert label_targets(rows, scheme.names, "labels", 0.3)[1] == [float(n == "Excellent") for n in scheme.names]
    # a teacher's distribution (sft.teacher) mixes in by the pass's weight; rows it does not cover keep theirs
    taught = [dict(rows[0], teacher=[0.0, 0.0, 0.0, 1.0]), rows[1]]
    own, mixed = (label_targets(taught, scheme.names, "rating", 0.3, teacher_weight=w) for w in (0.0, 0.25))
    assert mixed[0] == pytest.approx([0.75 * t + 0.25 * (n == "Irrelevant") for t, n in zip(own[0], scheme.names)])
    assert mixed[1] == own[1] and own[0] != mixed[0]
    built = [sft_row(prompt, r["query"], r["product"], r["label"]) for r in rows]
    width = max(len(r["input_ids"]) for r in built)
    pad = lambda xs, v: xs + [v] * (width - len(xs))  # noqa: E731
    ids = torch.tensor([pad(r["input_ids"], 0) for r in built])
    mask = torch.tensor([pad([1] * len(r["input_ids"]), 0) for r in built])
    labels = torch.tensor([pad([t if m else -100 for t, m in zip(r["input_ids"], r["completion_mask"])], -100) for r in built])
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels, "target": torch.tensor(soft)}
    ours = completion_loss(model, inputs, label_ids=prompt.label_token_ids)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    expected, count = 0.0, 0
    for row, r in enumerate(built):
        answer = r["prompt_len"] - 1  # the position that predicts the label token
        expected -= (torch.tensor(soft[row]) * logits[row, answer, prompt.label_token_ids].log_softmax(-1)).sum()
        rest = torch.arange(answer + 1, len(r["input_ids"]) - 1)
        expected += torch.nn.functional.cross_entropy(logits[row, rest], ids[row, rest + 1], reduction="sum")
        count += len(r["input_ids"]) - r["prompt_len"]
    torch.testing.assert_close(ours, expected / count)


def test_every_trained_stage_takes_the_lora_section_its_trl_fields_and_the_hardware_precision(trained):
    grpo = json.loads((trained / "run/grpo/trainer_args.json").read_text())
    sft = json.loads((trained / "run/sft/phase0-EE/trainer_args.json").read_text())
    assert grpo["max_grad_norm"] == 0.5 and sft["max_grad_norm"] == 1.0  # grpo.trl reached GRPO's trainer only
    # LoRA: fp32 adapters over base weights in the picked dtype, so no trainer autocasts
    assert grpo["bf16"] is False and sft["bf16"] is False
    adapter = json.loads((trained / "run/grpo/adapter/adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 16)  # the run's one lora: section, not a stage's own
    # merged into the fp32 base as serving merges it, whatever dtype GRPO trained in
    assert json.loads((trained / "run/grpo/model/config.json").read_text())["dtype"] == "float32"


def test_a_set_overrides_one_setting_read_as_yaml(tmp_path):
    from training.config import ConfigError, load_config

    (tmp_path / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judgments()))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump({"data": {"train": "judgments.jsonl"}, "model": "default",
                                                                "sft": {"epochs": 1}}))
    config = load_config(tmp_path / "train.yaml", ["sft.learning_rate=1e-4", "lora.top_layers=2",
                                                   "sft.trl.weight_decay=0.01", "eval.betas=[0.4, 0.6]"])
    assert (config.sft.learning_rate, config.lora.top_layers, config.sft.trl, config.eval.betas) == (
        1e-4, 2, {"weight_decay": 0.01}, [0.4, 0.6])
    for setting, message in (("sft.epochs=many", "sft.epochs: expected a number"), ("sft", "expected key.path=value"),
                             ("sft.epochs.x=1", "sft.epochs is not a mapping")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(tmp_path / "train.yaml", [setting])


def test_a_second_run_resumes_and_skips_finished_stages(trained):
    again = lref("train", "--config", str(trained / "train.yaml"))
    assert again.returncode == 0
    assert again.stdout.count("skipped (done)") == 9


def test_exported_judge_serves_through_the_reranker(trained):
    srv = Server(["--judge", str(trained / "run/export/judge")])
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
        ({"lora": {"rank": 4}}, "unknown key(s) rank"),
        ({"cot": {"generator": "teacher"}}, "cot.teacher: base_url and model are required"),
        ({"sft": {"label_loss": "mse"}}, "sft.label_loss must be one of token, labels, rating"),
        ({"sft": {"compile": "yes"}}, "sft.compile must be auto, true or false, got 'yes'"),
        ({"sft": {"query_pack": 0}}, "sft.query_pack must be a positive whole number"),
        ({"seed": "abc"}, ".seed: expected a whole number, got 'abc'"),
        ({"model": "/nonexistent/model"}, "model: model '/nonexistent/model' is neither"),
        ({"run_dir": None}, ".run_dir: expected text, got None"),
        ({"lora": {"target_modules": [1]}}, ".lora.target_modules: expected text or a list"),
        ({"dpo_debias": {"lora_r": 4}}, "dpo_debias: unknown key(s) lora_r"),  # the one lora: section sets it
        ({"grpo": {"dtype": "half"}}, "grpo.dtype must be auto, float32 or bfloat16"),
        ({"sft": {"trl": {"num_train_epochs": 2}}}, "sft.trl.num_train_epochs: set sft.epochs instead"),
        ({"dpo_passn": {"trl": {"no_such_field": 1}}}, "dpo_passn.trl.no_such_field: not a field of TRL's DPOConfig"),
        ({"grpo": {"trl": {"beta": "high"}}}, "grpo.trl.beta: expected a number"),
        ({"sft": {"trl": ["weight_decay"]}}, "sft.trl: expected a mapping of text to values"),
        ({"eval": {"betas": 0.5}}, "eval.betas: expected a list, each a number, got 0.5"),
        ({"select": {"enabled": "no"}}, "select.enabled: expected true/false"),
        ({"sft": {"label_loss": "rating"}}, "sft.label_loss: rating needs data.rating_field"),
        ({"sft": {"more_passes": {"rows_per_class": 5}}}, "sft.more_passes: expected a list of mappings"),
        ({"data": {"train": "judgments.jsonl", "max_train": -5}}, "data.max_train must be a positive whole number"),
        ({"sft": {"more_passes": [{"rows_per_class": 5}]}}, "sft.more_passes[0]: rows_per_class (a positive"),
        ({"sft": {"more_passes": [{"rows_per_class": 5, "learning_rate": 1e-4, "teacher_weight": 0.5}]}},
         "sft.teacher_weight needs sft.teacher"),
        ({"sft": {"teacher": "t.jsonl", "teacher_weight": 1.5, "label_loss": "labels"}}, "sft.teacher_weight must be between 0 and 1"),
        ({"sft": {"more_passes": [{"rows_per_class": 5, "learning_rate": 1e-4, "stop_after_steps": -1}]}},
         "sft.stop_after_steps must be a whole number, 0 or more"),
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


def test_a_stage_run_before_its_inputs_exist_is_one_line_and_leaves_no_folder(trained, tmp_path):
    config = yaml.safe_load((trained / "train.yaml").read_text())
    config.update(run_dir=str(tmp_path / "fresh"), data={**config["data"], "train": str(trained / config["data"]["train"])})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = lref("train", "--config", str(tmp_path / "c.yaml"), "--stage", "eval")
    assert done.returncode == 2 and "run that stage first" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "fresh" / "eval").exists()


def test_debias_pairs_prefer_the_gold_label_over_an_over_grade(tiny_model_dir):
    import numpy as np
    from transformers import AutoTokenizer

    from reranker.core import PromptFormat, load_scheme
    from training.dpo import debias_pairs

    scheme = load_scheme()
    prompt = PromptFormat(AutoTokenizer.from_pretrained(tiny_model_dir), scheme)
    rows = [{"query": "hose", "product": "garden hose", "label": label} for label in ("Related", "Excellent", "Mismatch")]
    probs = np.array([[0.6, 0.3, 0.05, 0.05],   # gold Related, top Excellent: optimistic -> a pair
                      [0.2, 0.7, 0.05, 0.05],   # gold Excellent, top Related: pessimistic -> no pair
                      [0.1, 0.1, 0.7, 0.1]])    # right -> no pair
    pairs, report = debias_pairs(rows, probs, prompt, scheme)
    assert report == {"train_errors": 2, "train_optimistic_errors": 1, "pairs": 1}
    assert pairs[0]["chosen_ids"][0] == prompt.label_token_ids[1]  # "3" Related
    assert pairs[0]["rejected_ids"][0] == prompt.label_token_ids[0]  # "4" Excellent
    assert pairs[0]["prompt_ids"] == prompt.encode("hose", "garden hose").prompt_ids


def test_teacher_rationales_come_from_an_openai_compatible_endpoint(tiny_model_dir):
    """A real OpenAI-compatible server (`transformers serve`, the tiny model as teacher)."""
    import time

    from conftest import free_port
    from reranker.core import load_scheme
    from training.config import CotConfig, TeacherConfig
    from training.cot import CotError, generate

    port = free_port()
    teacher = subprocess.Popen([sys.executable, "-m", "transformers.cli.transformers", "serve", str(tiny_model_dir),
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        rows = [{"query": "garden hose", "product_id": "1", "product": "garden hose 50 ft", "label": "Excellent"},
                {"query": "drill", "product_id": "2", "product": "paint tray", "label": "Irrelevant"}]
        cfg = CotConfig(generator="teacher", teacher=TeacherConfig(base_url=f"http://127.0.0.1:{port}/v1",
                                                                   model=str(tiny_model_dir), max_tokens=8))
        out, report = generate(rows, cfg, load_scheme(), None)
        assert [r["style"] for r in out] == ["EE", "RA", "DR"] * 2 and report["generator"] == "teacher"
        assert all(isinstance(r["reasoning"], str) and r["label"] for r in out)
    finally:
        teacher.terminate()
        teacher.wait(20)
    dead = CotConfig(generator="teacher", teacher=TeacherConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m"))
    with pytest.raises(CotError, match="teacher at http://127.0.0.1"):
        generate(rows[:1], dead, load_scheme(), None)


def test_csv_with_a_column_map_and_the_esci_parquet_layout(tmp_path):
    import pandas as pd

    from reranker.core import load_scheme
    from training.config import DataConfig
    from training.data import split

    csv_path = tmp_path / "judgments.csv"
    pd.DataFrame({"search_term": ["drill", "drill", "hose", "hose"], "product_uid": [1, 2, 3, 4],
                  "product_title": ["cordless drill", "paint tray", "garden hose", "drill bit"],
                  "relevance": [3, 1, 3, 2]}).to_csv(csv_path, index=False)
    cfg = DataConfig(train=str(csv_path), columns={"query": "search_term", "product_id": "product_uid",
                                                   "title": "product_title"}, grade_field="relevance",
                     grade_map={"3": "Excellent", "2": "Mismatch", "1": "Irrelevant"}, eval_fraction=0.5)
    train, evaluation, report = split(cfg, load_scheme(), 3, lambda p: tmp_path / p)
    rows = train + evaluation
    assert sorted(r["label"] for r in rows) == ["Excellent", "Excellent", "Irrelevant", "Mismatch"]
    assert {r["product_id"] for r in rows} == {"1", "2", "3", "4"} and report["train_queries"] == 1

    esci = tmp_path / "esci.parquet"
    pd.DataFrame({"query": ["usb cable", "usb cable", "desk"], "product_id": ["B1", "B2", "B3"],
                  "product_title": ["USB-C cable 2m", "phone case", "standing desk"],
                  "product_brand": ["Anker", "Spigen", None], "esci_label": ["E", "C", "E"]}).to_parquet(esci)
    cfg = DataConfig(train=str(esci), format="esci", eval_fraction=0.5)
    train, evaluation, _ = split(cfg, load_scheme("esci"), 1, lambda p: tmp_path / p)
    by_id = {r["product_id"]: r for r in train + evaluation}
    assert by_id["B1"]["label"] == "Exact" and by_id["B2"]["label"] == "Complement"
    assert by_id["B1"]["product"] == {"title": "USB-C cable 2m", "brand": "Anker"} and by_id["B3"]["product"] == "standing desk"


def test_a_killed_run_resumes_from_its_checkpoint(tiny_model_dir, tmp_path):
    """Kill `lref train` in the middle of SFT; the next run finishes from the last checkpoint."""
    import signal
    import time

    (tmp_path / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judgments()))
    config = {"run_dir": "run", "model": str(tiny_model_dir), "device": "cpu",
              "data": {"train": "judgments.jsonl", "eval_fraction": 0.25},
              "select": {"enabled": False}, "cot": {"enabled": False},
              "lora": {"r": 4, "alpha": 8}, "sft": {"epochs": 10, "batch_size": 4, "save_steps": 2, "compile": False},
              "dpo_debias": {"enabled": False}, "dpo_passn": {"enabled": False}, "grpo": {"enabled": False}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "lref", "train", "--config", str(tmp_path / "train.yaml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    phase = tmp_path / "run" / "sft" / "phase0-label"
    deadline = time.time() + 300
    while time.time() < deadline and not list(phase.glob("checkpoint-*/trainer_state.json")):
        time.sleep(0.5)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p.name.split("-")[1]) for p in phase.glob("checkpoint-*"))
    assert not (phase / "phase.done").exists() and not (tmp_path / "run/sft/.done").exists()
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "skipped (done)" in resumed.stdout  # data, select, cot were not redone
    state = json.loads(sorted(phase.glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    assert int((phase / "phase.done").read_text()) == state["max_steps"] > killed_at


def test_a_deadline_stops_sft_and_the_run_still_ends_with_an_eval(tiny_model_dir, tmp_path):
    """LREF_SFT_DEADLINE (a lent machine's budget, training/gpu/run.sh): a phase stops at the first
    step past it, later passes are skipped, and eval runs on what was trained; a deadline that is
    no time is a one-line error before anything trains."""
    import os

    (tmp_path / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judgments()))
    config = {"run_dir": "run", "model": str(tiny_model_dir), "device": "cpu",
              "data": {"train": "judgments.jsonl", "eval_fraction": 0.25},
              "select": {"enabled": False}, "cot": {"enabled": False},
              "lora": {"r": 4, "alpha": 8}, "sft": {"epochs": 3, "batch_size": 4, "save_steps": 100, "compile": False,
                      "more_passes": [{"rows_per_class": 8, "learning_rate": 1e-4}]},
              "dpo_debias": {"enabled": False}, "dpo_passn": {"enabled": False}, "grpo": {"enabled": False},
              "eval": {"betas": [0.5]}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "lref", "train", "--config", str(tmp_path / "train.yaml")]
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "LREF_SFT_DEADLINE": "soon"})
    assert bad.returncode == 2 and "LREF_SFT_DEADLINE must be a Unix time" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "run/sft/.done").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "LREF_SFT_DEADLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    speed = json.loads((tmp_path / "run/sft/phase0-label/speed.json").read_text())
    assert speed["steps"] == 1 < speed["planned_steps"]
    assert not (tmp_path / "run/sft/phase1-label").exists()
    phases = json.loads((tmp_path / "run/sft/metrics.json").read_text())["phases"]
    assert phases["label@pass2"] == 0 and 0 < phases["label"] <= 4
    assert json.loads((tmp_path / "run/eval/metrics.json").read_text())["rows"] > 0


def test_stop_after_steps_ends_a_pass_early_on_its_whole_schedule(tiny_model_dir, tmp_path):
    """sft.stop_after_steps replays a deadline-stopped run: the pass ends at that step, its rate
    having followed the schedule planned for the whole pass, and the next pass still trains."""
    (tmp_path / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judgments()))
    config = {"run_dir": "run", "model": str(tiny_model_dir), "device": "cpu",
              "data": {"train": "judgments.jsonl", "eval_fraction": 0.25},
              "select": {"enabled": False}, "cot": {"enabled": False},
              "lora": {"r": 4, "alpha": 8}, "sft": {"epochs": 2, "batch_size": 4, "save_steps": 100, "compile": False,
                      "stop_after_steps": 2, "more_passes": [{"rows_per_class": 4, "learning_rate": 1e-4}]},
              "dpo_debias": {"enabled": False}, "dpo_passn": {"enabled": False}, "grpo": {"enabled": False},
              "eval": {"betas": [0.5]}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    done = lref("train", "--config", str(tmp_path / "train.yaml"))
    assert done.returncode == 0, done.stderr[-2000:]
    first = json.loads((tmp_path / "run/sft/phase0-label/speed.json").read_text())
    assert first["steps"] == 2 < first["planned_steps"]
    assert "stopped at stop_after_steps 2, step 2 of" in done.stdout + done.stderr
    second = json.loads((tmp_path / "run/sft/phase1-label/speed.json").read_text())
    assert second["steps"] == second["planned_steps"] > 0  # the next pass ran whole


def test_sft_distils_the_lexical_teacher_fit_out_of_fold(tiny_model_dir, tmp_path):
    """sft.teacher: lexical: the sft stage fits the lexical model out of fold (by query) on the train
    rows, keeps its probabilities beside the phases (scheme order, each row once) and trains toward
    them; a teacher file that is not there is a one-line error."""
    import numpy as np

    (tmp_path / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judgments()))
    (tmp_path / "catalog.jsonl").write_text("".join(json.dumps({"title": t}) + "\n" for ts in PRODUCTS.values() for t in ts))
    config = {"run_dir": "run", "model": str(tiny_model_dir), "device": "cpu",
              "data": {"train": "judgments.jsonl", "eval_fraction": 0.25},
              "select": {"enabled": False}, "cot": {"enabled": False},
              "lora": {"r": 4, "alpha": 8}, "sft": {"epochs": 1, "batch_size": 8, "compile": False, "label_loss": "labels",
                      "teacher": "lexical", "teacher_catalog": "catalog.jsonl", "teacher_weight": 0.5},
              "dpo_debias": {"enabled": False}, "dpo_passn": {"enabled": False}, "grpo": {"enabled": False},
              "eval": {"betas": [0.5]}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    done = lref("train", "--config", str(tmp_path / "train.yaml"))
    assert done.returncode == 0, done.stderr[-2000:]
    train = [json.loads(line) for line in (tmp_path / "run/data/train.jsonl").read_text().splitlines()]
    teacher = [json.loads(line) for line in (tmp_path / "run/sft/teacher.jsonl").read_text().splitlines()]
    assert [(t["query"], t["product_id"]) for t in teacher] == [(r["query"], r["product_id"]) for r in train]
    probs = np.array([t["probs"] for t in teacher])
    assert probs.shape == (len(train), 4) and np.allclose(probs.sum(1), 1, atol=1e-4)
    # out of fold, yet it learnt the overlap rule: Excellent pairs get more Excellent than Irrelevant ones
    best = np.array([r["label"] == "Excellent" for r in train])
    worst = np.array([r["label"] == "Irrelevant" for r in train])
    assert probs[best, 0].mean() > probs[worst, 0].mean()
    assert json.loads((tmp_path / "run/sft/metrics.json").read_text())["rows_with_teacher"] == len(train)

    config["run_dir"], config["sft"]["teacher"] = "run2", "missing.jsonl"
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    missing = lref("train", "--config", str(tmp_path / "train.yaml"))
    assert missing.returncode == 2 and "sft.teacher:" in missing.stderr and "not found" in missing.stderr
    assert "Traceback" not in missing.stderr
