"""Run the stages in order. Each stage writes run_dir/<stage>/ with its outputs, a metrics.json
and a `.done` marker; a re-run skips finished stages (resume after a kill), and trainer stages
resume from their last checkpoint."""

from __future__ import annotations

import functools
import json
import os
import random
import time
from pathlib import Path

import torch
from typing import Callable

from reranker.core import PromptFormat, load_scheme
from reranker.errors import LrefError

from . import cot as cot_stage
from . import data as data_stage
from . import select as select_stage
from .config import STAGES, TRAINED, ConfigError, TrainConfig

MARK = ".done"
DEADLINE_ENV = "LREF_SFT_DEADLINE"


class StageError(LrefError, RuntimeError):
    pass


def _seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sft_deadline() -> float | None:
    """LREF_SFT_DEADLINE, a Unix time: SFT stops there and the run goes on to eval and export (a
    run on a lent machine with a fixed budget, training/gpu/run.sh). Unset: no deadline."""
    value = os.environ.get(DEADLINE_ENV, "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{DEADLINE_ENV} must be a Unix time in seconds, got {value!r}") from None


class Run:
    def __init__(self, config: TrainConfig, log=print) -> None:
        self.config, self.log = config, log
        self.scheme = load_scheme(config.scheme)
        self.out = config.out
        self._prompt: PromptFormat | None = None

    def dir(self, stage: str) -> Path:
        return self.out / stage

    def need(self, stage: str, name: str) -> Path:
        path = self.dir(stage) / name
        if not path.exists():
            raise StageError(f"needs {path} from stage '{stage}': run that stage first")
        return path

    @property
    def base_model(self) -> str:
        from reranker.models.loading import resolve_model_path

        return resolve_model_path(self.config.model)

    @property
    def prompt(self) -> PromptFormat:
        if self._prompt is None:
            from transformers import AutoTokenizer

            self._prompt = self.config.prompt.build(AutoTokenizer.from_pretrained(self.base_model), self.scheme)
        return self._prompt

    def device(self) -> str:
        from reranker.models.loading import pick_device

        return pick_device(self.config.device)

    # -- stages -----------------------------------------------------------------------------------
    def data(self) -> dict:
        train, evaluation, metrics = data_stage.split(self.config.data, self.scheme, self.config.seed, self.config.path)
        data_stage.write_jsonl(self.dir("data") / "train.jsonl", train)
        data_stage.write_jsonl(self.dir("data") / "eval.jsonl", evaluation)
        return metrics

    def select(self) -> dict:
        rows = data_stage.read_jsonl(self.need("data", "train.jsonl"))
        if not self.config.select.enabled:
            data_stage.write_jsonl(self.dir("select") / "train.jsonl", rows)
            return {"enabled": False, "kept": len(rows)}
        teacher = None
        if self.config.select.teacher_labels:
            labelled = data_stage.read_jsonl(self.config.path(self.config.select.teacher_labels))
            teacher = {(r["query"], str(r["product_id"])): self.scheme.level(r["label"]).name for r in labelled}
        kept, votes, metrics = select_stage.select(rows, self.config.select, self.config.seed, self.scheme.names, teacher)
        data_stage.write_jsonl(self.dir("select") / "votes.jsonl", votes)
        if len(kept) < self.config.select.min_keep:
            raise StageError(f"selection kept {len(kept)} of {len(rows)} rows (< select.min_keep)")
        data_stage.write_jsonl(self.dir("select") / "train.jsonl", kept)
        return metrics

    def cot(self) -> dict:
        rows = data_stage.read_jsonl(self.need("select", "train.jsonl"))
        if not self.config.cot.enabled:
            data_stage.write_jsonl(self.dir("cot") / "train.jsonl", rows)
            return {"enabled": False, "rows": len(rows)}
        rules = self.config.path(self.config.cot.rules_file) if self.config.cot.rules_file else None
        try:
            out, metrics = cot_stage.generate(rows, self.config.cot, self.scheme, rules)
        except cot_stage.CotError as exc:
            raise StageError(str(exc)) from exc
        data_stage.write_jsonl(self.dir("cot") / "train.jsonl", out)
        return metrics

    def sft(self) -> dict:
        from . import sft as sft_stage

        rows = data_stage.read_jsonl(self.need("cot", "train.jsonl"))
        cfg = self.config.sft
        taught = self._attach_teacher(rows) if cfg.teacher else None
        result, trained = sft_stage.train(self.base_model, rows, self.prompt, cfg, self.config.lora, self.dir("sft"),
                                          self.config.seed, self.device(), self.log, sft_deadline())
        return {"rows": len(rows), "model": str(result), "lora": self.config.lora.enabled, "phases": trained,
                "balanced": cfg.balance_classes, "rows_per_class": cfg.rows_per_class} | (
                {"teacher": cfg.teacher, "rows_with_teacher": taught} if cfg.teacher else {})

    def _attach_teacher(self, rows: list[dict]) -> int:
        """sft.teacher's distribution on each row it covers (by query and product id); -> how many."""
        cfg = self.config.sft
        path = self.dir("sft") / "teacher.jsonl" if cfg.teacher == "lexical" else self.config.path(cfg.teacher)
        if cfg.teacher == "lexical" and not path.exists():
            self._lexical_teacher(rows, path)
        if not path.exists():
            raise StageError(f"sft.teacher: {path} not found (a JSONL of query, product_id, probs; or 'lexical')")
        size = len(self.scheme.names)
        teacher = {}
        for r in data_stage.read_jsonl(path):
            probs = r.get("probs")
            if not (isinstance(probs, list) and len(probs) == size and all(isinstance(v, (int, float)) and v >= 0 for v in probs)
                    and sum(probs) > 0):
                raise StageError(f"sft.teacher: {path}: every row needs probs, {size} non-negative numbers (scheme order)")
            teacher[(r.get("query"), str(r.get("product_id")))] = [v / sum(probs) for v in probs]
        for row in rows:
            row["teacher"] = teacher.get((row["query"], str(row["product_id"])))
        return sum(row["teacher"] is not None for row in rows)

    def _lexical_teacher(self, rows: list[dict], path: Path) -> None:
        """The lexical model's out-of-fold probabilities on the train rows, written where a re-run finds them."""
        from .lexical import teacher_probs, teacher_records

        catalog = None
        if self.config.sft.teacher_catalog:
            source = self.config.path(self.config.sft.teacher_catalog)
            if not source.exists():
                raise StageError(f"sft.teacher_catalog: {source} not found")
            catalog = [str(r.get("title", "")) for r in data_stage.read_jsonl(source)]
        self.log(f"sft: fitting the lexical teacher on {len(rows)} rows (5 folds by query)")
        probs = teacher_probs(rows, self.scheme.names, catalog, seed=self.config.seed)
        data_stage.write_jsonl(path, teacher_records(rows, probs))

    def latest_model(self, before: str | None = None) -> Path:
        """The newest model a finished trained stage wrote (each is a merged HF dir)."""
        stages = TRAINED[: TRAINED.index(before)] if before in TRAINED else TRAINED
        found = [self.dir(s) / "model" for s in stages
                 if (self.dir(s) / MARK).exists() and (self.dir(s) / "model" / "config.json").exists()]
        if not found:
            raise StageError("needs a trained model from stage 'sft': run that stage first")
        return found[-1]

    def backend(self, model_dir: Path):
        """The served scoring path (same prompt, same label head) over a model dir."""
        from reranker.backends.transformers_backend import TransformersBackend
        from reranker.models.loading import ModelSpec, load_model

        model, tokenizer, device = load_model(ModelSpec(model=str(model_dir), dtype=self.config.eval.dtype,
                                                        device=self.config.device))
        return TransformersBackend(model, self.config.prompt.build(tokenizer, self.scheme), device=device)

    def sample_rows(self, limit: int | None) -> list[dict]:
        rows = data_stage.read_jsonl(self.need("data", "train.jsonl"))
        return random.Random(self.config.seed).sample(rows, limit) if limit and len(rows) > limit else rows

    def eval_report(self, model_dir: Path, backend=None, probs_file: Path | None = None) -> dict:
        """Eval metrics of a model dir (or of an already loaded backend over it); the per-row
        probabilities go to `probs_file` when given."""
        from . import evaluate

        rows = data_stage.read_jsonl(self.need("data", "eval.jsonl"))
        backend = backend or self.backend(model_dir)
        probs = evaluate.label_probs(backend, rows)
        if probs_file:
            data_stage.write_jsonl(probs_file, [{"query": r["query"], "product_id": r["product_id"], "probs": p.tolist()}
                                                for r, p in zip(rows, probs)])
        return evaluate.metrics(probs, rows, self.scheme, self.config.eval, self.label_prior)

    @functools.cached_property
    def label_prior(self):
        """The train rows' label prior (scheme order) when SFT balanced the classes, else None: a
        judge trained on the data's own mix has learnt its prior. Read once: several evals use it."""
        import numpy as np

        if not self.config.sft.balance_classes:
            return None
        names = self.scheme.names
        counts = np.bincount([names.index(r["label"]) for r in data_stage.read_jsonl(self.need("data", "train.jsonl"))],
                             minlength=len(names))
        return counts / max(counts.sum(), 1)

    def dpo_debias(self) -> dict:
        from . import dpo, evaluate

        cfg = self.config.dpo_debias
        if not cfg.enabled:
            return {"enabled": False}
        base = self.latest_model(before="dpo_debias")
        rows = self.sample_rows(cfg.max_rows)
        judge = self.backend(base)  # one load serves the pairs and the "before" report
        pairs, metrics = dpo.debias_pairs(rows, evaluate.label_probs(judge, rows), self.prompt, self.scheme)
        before = self.eval_report(base, judge)
        del judge
        result = dpo.train(base, pairs, self.prompt.tokenizer, cfg, self.config.lora, self.dir("dpo_debias"),
                           self.config.seed, self.device(), self.log)
        after = self.eval_report(result)
        keys = ("optimistic_share_of_errors", "optimistic_errors", "errors", "macro_f1")
        return {**metrics, "eval_before": {k: before[k] for k in keys}, "eval_after": {k: after[k] for k in keys},
                "model": str(result)}

    def _samples(self, base: Path, rows: list[dict], n: int, cfg):
        from transformers import AutoModelForCausalLM

        from .sampling import sample_answers

        device = self.device()
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(device)
        return sample_answers(model, self.prompt, rows, n, cfg.max_new_tokens, cfg.temperature,
                              batch_prompts=cfg.sample_batch, device=device)

    def _sampled(self, stage: str, n: int):
        """(config, previous model, rows, n samples per row) for the stages that learn from samples."""
        cfg = getattr(self.config, stage)
        base = self.latest_model(before=stage)
        rows = self.sample_rows(cfg.max_rows)
        return cfg, base, rows, self._samples(base, rows, n, cfg)

    def dpo_passn(self) -> dict:
        from . import dpo

        if not self.config.dpo_passn.enabled:
            return {"enabled": False}
        cfg, base, rows, samples = self._sampled("dpo_passn", self.config.dpo_passn.n)
        pairs, metrics = dpo.passn_pairs(rows, samples, self.prompt, self.scheme, self.config.seed)
        result = dpo.train(base, pairs, self.prompt.tokenizer, cfg, self.config.lora, self.dir("dpo_passn"),
                           self.config.seed, self.device(), self.log)
        return {**metrics, "model": str(result)}

    def grpo(self) -> dict:
        from . import grpo

        if not self.config.grpo.enabled:
            return {"enabled": False}
        cfg, base, rows, samples = self._sampled("grpo", self.config.grpo.num_generations)
        kept, metrics = grpo.dynamic_sample(rows, samples, cfg, self.config.seed)
        result = grpo.train(base, kept, self.prompt, cfg, self.config.lora, self.dir("grpo"), self.config.seed,
                            self.device(), self.log)
        return {**metrics, "model": str(result)}

    def eval(self) -> dict:
        from . import evaluate

        model_dir = self.latest_model()
        report = {"model": str(model_dir), **self.eval_report(model_dir, probs_file=self.dir("eval") / "probs.jsonl")}
        if self.config.eval.each_stage:
            models = [("base", Path(self.base_model))] + [
                (s, self.dir(s) / "model") for s in TRAINED if (self.dir(s) / MARK).exists()
                and (self.dir(s) / "model" / "config.json").exists()]
            report["per_stage"] = {name: evaluate.summary(report if path == model_dir else self.eval_report(path))
                                   for name, path in models}
        evaluate.plot(report, self.dir("eval") / "report.png")
        return report

    def export(self) -> dict:
        """A judge dir (see reranker/models/judge.py): the SFT LoRA adapter when SFT was the last
        trained stage, else the full model, and the card serving rebuilds the prompt from."""
        from . import export

        return export.judge_dir(self)

    # -- driving ----------------------------------------------------------------------------------
    def stage(self, name: str) -> Callable[[], dict]:
        return getattr(self, name)

    def run(self, only: str | None = None, force: bool = False) -> list[tuple[str, str]]:
        if only is not None and only not in STAGES:
            raise ConfigError(f"unknown stage {only!r}: stages are {', '.join(STAGES)}")
        done = []
        for name in STAGES if only is None else (only,):
            mark = self.dir(name) / MARK
            if mark.exists() and not force and only is None:
                done.append((name, "skipped (done)"))
                continue
            self.log(f"stage {name}")
            _seed(self.config.seed)
            fresh = not self.dir(name).exists()
            self.dir(name).mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            try:
                metrics = {**self.stage(name)(), "seconds": round(time.monotonic() - started, 1)}
            except BaseException:
                if fresh and not any(self.dir(name).iterdir()):  # a stage that failed at once leaves no empty folder
                    self.dir(name).rmdir()
                raise
            (self.dir(name) / "metrics.json").write_text(json.dumps(metrics, indent=1))
            mark.write_text("ok")
            done.append((name, "ran"))
        return done
