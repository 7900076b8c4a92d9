"""`lref train`: the staged fine-tuning pipeline from a YAML config (training/configs/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from training.config import STAGES, load_config


def train(
    config: Path = typer.Option(..., "--config", help="training YAML (see training/configs/)"),
    stage: Optional[str] = typer.Option(None, help=f"run only this stage: {', '.join(STAGES)}"),
    force: bool = typer.Option(False, help="re-run stages that are already done"),
    settings: list[str] = typer.Option([], "--set", help="override one setting, e.g. --set sft.learning_rate=1e-4 "
                                       "or --set sft.trl.weight_decay=0.01 (the value is read as YAML; repeatable)"),
) -> None:
    """Run the staged fine-tuning pipeline (resumes where it stopped)."""
    from training.runner import Run  # torch, TRL: loaded only when training

    run = Run(load_config(config, settings))
    rows = run.run(only=stage, force=force)
    table = Table(title=f"lref train: {run.out}")
    table.add_column("stage")
    table.add_column("result")
    for name, result in rows:
        table.add_row(name, result)
    Console().print(table)
