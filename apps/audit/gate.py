"""CI gates: `--fail-under [RUN:]METRIC=VALUE` and `--fail-over [RUN:]METRIC=VALUE`.

METRIC is a run metric (P@k, R@k, nDCG@k, nDCGj@k, MRR, Judged@k, IrrRate@k) or a filter-audit number
(filter_precision, filter_precision_nonrelevant, irrelevant_recall, relevant_loss). RUN defaults
to the first pipeline (or the baseline when none is given). A gate whose value could not be
measured (e.g. no judged hit was dropped) fails too: CI cannot vouch for what it did not see."""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import AuditError
from .metrics import metric_names

FILTER_METRICS = ("filter_precision", "filter_precision_nonrelevant", "irrelevant_recall", "relevant_loss")


@dataclass(frozen=True)
class Gate:
    run: str
    metric: str
    threshold: float
    under: bool  # True: fail when the value is below the threshold; False: when above

    def __str__(self) -> str:
        return f"{self.run}:{self.metric} {'>=' if self.under else '<='} {self.threshold:g}"


def parse(specs: list[str], under: bool, runs: list[str], default_run: str, k: int) -> list[Gate]:
    option = "--fail-under" if under else "--fail-over"
    known = [*metric_names(k), *FILTER_METRICS]
    gates = []
    for spec in specs:
        left, sep, value = spec.rpartition("=")
        run, colon, metric = left.rpartition(":")
        run = run if colon else default_run
        try:
            threshold = float(value)
        except ValueError:
            threshold = None
        if threshold is not None and not math.isfinite(threshold):
            raise AuditError(f"{option} {spec!r}: the threshold must be a finite number (a NaN gate could never fire)")
        if not sep or not metric or threshold is None:
            raise AuditError(f"{option} {spec!r} must look like [RUN:]METRIC=VALUE, e.g. nDCG@{k}=0.5")
        if metric not in known:
            raise AuditError(f"{option} {spec!r}: unknown metric {metric!r} (known: {', '.join(known)})")
        if run not in runs:
            raise AuditError(f"{option} {spec!r}: unknown run {run!r} (runs: {', '.join(runs)})")
        gates.append(Gate(run, metric, threshold, under))
    return gates


def value(report: dict, gate: Gate) -> float | None:
    if gate.metric in FILTER_METRICS:
        return (report["filter_audit"].get(gate.run) or {}).get(gate.metric)
    return report["runs"][gate.run]["metrics"][gate.metric]


def failures(report: dict, gates: list[Gate]) -> list[str]:
    out = []
    for gate in gates:
        got = value(report, gate)
        if got is None:
            out.append(f"{gate}: not measured")
        elif (got < gate.threshold) if gate.under else (got > gate.threshold):
            out.append(f"{gate}: got {got:.4f}")
    return out
