"""Run the stages in order. Each stage writes run_dir/<stage>/ with its outputs, a metrics.json
and a `.done` marker; a re-run skips finished stages (resume after a kill), and trainer stages
resume from their last checkpoint."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Callable

from reranker.core import PromptFormat, load_scheme

from . import cot as cot_stage
from . import data as data_stage
from . import select as select_stage
from .config import STAGES, ConfigError, TrainConfig

MARK = ".done"


class StageError(RuntimeError):
    pass


def _seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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

            self._prompt = PromptFormat(AutoTokenizer.from_pretrained(self.base_model), self.scheme)
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
        kept, metrics = select_stage.select(rows, self.config.select, self.config.seed, self.scheme.names, teacher)
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
        result = sft_stage.train(self.base_model, rows, self.prompt, self.config.sft, self.dir("sft"),
                                 self.config.seed, self.device(), self.log)
        return {"rows": len(rows), "model": str(result), "lora": self.config.sft.lora.enabled,
                "phases": [style for style, _ in sft_stage.phases(rows, self.config.sft.curriculum)]}

    def judge_spec(self):
        """The latest trained model, as the server would load it."""
        from reranker.models.loading import ModelSpec

        trained = self.need("sft", "model")
        if (trained / "adapter_config.json").exists():
            return ModelSpec(model=self.base_model, adapter=str(trained), dtype="float32", device=self.config.device)
        return ModelSpec(model=str(trained), dtype="float32", device=self.config.device)

    def eval(self) -> dict:
        from reranker.backends.transformers_backend import TransformersBackend
        from reranker.models.loading import load_model

        from . import evaluate

        rows = data_stage.read_jsonl(self.need("data", "eval.jsonl"))
        model, tokenizer, device = load_model(self.judge_spec())
        backend = TransformersBackend(model, PromptFormat(tokenizer, self.scheme), device=device)
        report = evaluate.metrics(evaluate.label_probs(backend, rows), rows, self.scheme, self.config.eval)
        evaluate.plot(report, self.dir("eval") / "report.png")
        return report

    def export(self) -> dict:
        from reranker.models.loading import load_model

        model, tokenizer, _ = load_model(self.judge_spec())  # LoRA merged into the base here
        target = self.dir("export") / "model"
        shutil.rmtree(target, ignore_errors=True)
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        beta = json.loads((self.dir("eval") / "metrics.json").read_text())["chosen_beta"] \
            if (self.dir("eval") / "metrics.json").exists() else 0.5
        return {"model": str(target), "serve": f"lref serve --model {target} --scheme {self.config.scheme} --beta {beta}"}

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
            self.dir(name).mkdir(parents=True, exist_ok=True)
            metrics = self.stage(name)()
            (self.dir(name) / "metrics.json").write_text(json.dumps(metrics, indent=1))
            mark.write_text("ok")
            done.append((name, "ran"))
        return done
