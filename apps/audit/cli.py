"""`lref audit`: the command. Checks every input before it searches; bad input is one line on
stderr and exit code 2; a `--fail-under`/`--fail-over` gate that is not met exits 1."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from reranker.console import api_key_from, fail

from engine.access import access_from, ca_cert_option, password_file_option, user_option
from . import AuditError
from .levels import Levels

out = Console()


def _check_numbers(size: int, k: int, rel_level: int, pipelines: list[str], timeout: float, worst: int,
                   out_dir: Path, limit: int | None, levels: Levels) -> None:
    """Everything checkable before a single search runs."""
    from .search import BASELINE

    if not 1 <= timeout < float("inf"):  # nan and inf fail this too
        raise AuditError(f"--timeout must be a finite number of seconds >= 1, got {timeout}")
    if worst < 0:
        raise AuditError(f"--worst must be 0 or more, got {worst}")
    if limit is not None and limit < 1:  # checked here, not by typer, whose usage errors span several lines
        raise AuditError(f"--limit must be 1 or more, got {limit}")
    if out_dir.exists() and not out_dir.is_dir():
        raise AuditError(f"--out {out_dir} is a file, not a folder for the report")
    if k < 1 or size < k:
        raise AuditError(f"need 1 <= k <= size, got k={k}, size={size}")
    if rel_level not in levels.names or rel_level == levels.irrelevant:
        allowed = ", ".join(str(n) for n in sorted(levels.names) if n != levels.irrelevant)
        raise AuditError(f"--rel-level must be one of {allowed} ({levels.scheme.name}), got {rel_level}")
    if len(set(pipelines)) != len(pipelines) or BASELINE in pipelines or not all(p.strip() for p in pipelines):
        raise AuditError(f"--pipeline names must be distinct, non-empty and not {BASELINE!r}")


def _levels(scheme: str | None, judge: bool, reranker_url: str, api_key: str | None) -> Levels:
    """The scheme the audit counts in: --scheme, else four_level; with --judge the reranker's own
    (its /health), which --scheme may only repeat, since its labels fill the judgments' gaps."""
    if not judge:
        return Levels.named(scheme or "four_level")
    from engine.policy import served_policy

    served = served_policy(reranker_url, api_key, timeout_s=10)
    if served is None:
        raise AuditError(f"--judge: the reranker at {reranker_url} is not ready (or reports no tier policy on /health)")
    theirs = Levels.named(served.get("scheme") or "four_level")
    if list(theirs.names.values()) != served["levels"]:
        raise AuditError(f"--judge: the reranker's levels {', '.join(served['levels'])} are not those of a named scheme")
    if scheme and scheme != theirs.scheme.name:
        raise AuditError(f"--scheme {scheme} disagrees with the reranker at {reranker_url}, which judges in "
                         f"{theirs.scheme.name}: give the same or leave it out")
    return theirs


def _summary(report: dict) -> None:
    """Metrics as rows (narrow terminals too), runs and paired deltas as columns; then the filter audit."""
    meta = report["meta"]
    table = Table(title=f"lref audit: {meta['queries_evaluated']} judged queries, top {meta['size']}, k={meta['k']}")
    table.add_column("metric")
    for run in report["runs"]:
        table.add_column(run, justify="right")
    for comp in report["comparisons"]:
        table.add_column(f"{comp['b']} - {comp['a']} (p)", justify="right")
    for name in meta["metrics"]:
        deltas = [comp["metrics"][name] for comp in report["comparisons"]]
        table.add_row(name, *(f"{data['metrics'][name]:.4f}" for data in report["runs"].values()),
                      *(f"{c['delta']:+.4f} ({'n/a' if c['p_value'] is None else format(c['p_value'], '.3g')})"
                        for c in deltas))
    out.print(table)
    show = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for run, found in report["filter_audit"].items():
        out.print(f"filter audit {run}: dropped {found['dropped']} of {found['hits']} hits "
                  f"({found['dropped_judged']} judged); filter precision {show(found['filter_precision'])}; "
                  f"relevant lost {found['relevant_dropped']}/{found['relevant_retrieved']}; tiers {found['tiers']}")
        if found["not_reranked"]:
            Console(stderr=True).print(
                f"[bold yellow]warning:[/] {run}: {len(found['not_reranked'])} of {found['queries']} searches were not "
                f"reranked ({found['not_reranked'][0]['reason']}); they count with their original order",
                highlight=False, soft_wrap=True)


def audit(
    judgments: Path = typer.Argument(..., help="judgments: our JSONL, TREC qrels, SRW IMPORT_JUDGMENT JSON or Quepid CSV"),
    fmt: str = typer.Option("auto", "--format", help="auto | jsonl | trec | srw | quepid"),
    queries: Optional[Path] = typer.Option(None, help="query set: JSONL (query, query_id) or QID<TAB>TEXT lines; needed for TREC"),
    scheme: Optional[str] = typer.Option(None, help="label scheme of the judgments and the report (default four_level; "
                                         "with --judge, the reranker's, read from its /health)"),
    grades: Optional[str] = typer.Option(None, help="numeric grade -> level for trec, srw and quepid ratings "
                                         "(default 0, 1, ... = the scheme's levels, worst first)"),
    limit: Optional[int] = typer.Option(None, help="run only the first N queries of the set"),
    opensearch: str = typer.Option("http://127.0.0.1:9200", help="OpenSearch URL"),
    index: str = typer.Option("products", help="index to search"),
    pipeline: list[str] = typer.Option(["lref-rerank"], help="search pipeline compared with the baseline (repeatable)"),
    field: str = typer.Option("title", help="field the default match query searches and the report shows"),
    template: Optional[Path] = typer.Option(None, help="JSON search body with \"{{query}}\" strings (default: match on --field)"),
    size: int = typer.Option(20, help="hits retrieved (and reranked) per search"),
    k: int = typer.Option(10, help="metric cut-off"),
    timeout: float = typer.Option(120, help="seconds one search may take (keep it above the connector's read timeout)"),
    rel_level: Optional[int] = typer.Option(None, help="lowest level (grade) counted relevant for P, R, MRR (default: "
                                            "the scheme's lowest Good-tier level, 3 = Related in four_level)"),
    worst: int = typer.Option(10, help="rows in the worst-queries table"),
    judge: bool = typer.Option(False, "--judge", help="label unjudged hits with the LLM (kept apart, marked)"),
    reranker_url: str = typer.Option("http://127.0.0.1:8000", help="the reranker whose /v1/classify --judge uses"),
    api_key_file: Optional[Path] = typer.Option(None, help="file holding the reranker's API key, for --judge (or env LREF_API_KEY)"),
    out_dir: Path = typer.Option(Path("audit-report"), "--out", help="folder for audit.json, audit.html, plots/"),
    fail_under: Optional[list[str]] = typer.Option(None, help="[RUN:]METRIC=VALUE: exit 1 when below (repeatable)"),
    fail_over: Optional[list[str]] = typer.Option(None, help="[RUN:]METRIC=VALUE: exit 1 when above (repeatable)"),
    user: Optional[str] = user_option, password_file: Optional[Path] = password_file_option,
    ca_cert: Optional[Path] = ca_cert_option,
) -> None:
    """Measure search pipelines against judgments on the real index (metrics, filter audit, report)."""
    from engine.client import connect

    from . import gate, html_report, llm_judge, metrics, plots, report, search
    from .judgments import query_set, read_judgments, read_queries

    started = time.monotonic()
    api_key = api_key_from(api_key_file)
    levels = _levels(scheme, judge, reranker_url, api_key)
    rel_level = levels.default_relevant if rel_level is None else rel_level
    _check_numbers(size, k, rel_level, pipeline, timeout, worst, out_dir, limit, levels)
    runs = [search.BASELINE, *pipeline]
    gates = (gate.parse(fail_under or [], True, runs, runs[1], k)
             + gate.parse(fail_over or [], False, runs, runs[1], k))
    found = read_judgments(judgments, fmt, levels.parse_grade_map(grades or levels.default_grades), levels)
    chosen = query_set(found, read_queries(queries) if queries else None, limit)
    body = search.load_template(template, field)
    client = connect(opensearch, access_from(user, password_file, ca_cert))
    search.check_target(client, index, pipeline)
    results, titles = search.run_all(client, index, chosen, pipeline, body, size, field, timeout)
    llm_rows = llm_qrels = None
    if judge:
        todo = llm_judge.unjudged(results, found.qrels)
        missing = sorted({i for ids in todo.values() for i in ids} - set(titles))
        titles.update(search.fetch_titles(client, index, missing, field))
        llm_rows = llm_judge.judge(reranker_url, chosen, todo, titles, levels, api_key)
        llm_qrels = llm_judge.as_qrels(llm_rows)
    import ir_measures

    meta = {
        "judgments": str(judgments), "format": found.format, "judgments_in_file": found.count, "index": index,
        "opensearch": opensearch, "size": size, "k": k, "rel_level": rel_level, "field": field,
        "pipelines": pipeline, "judge_url": reranker_url if judge else None,
        "metric_library": f"ir-measures {ir_measures.__version__} (pytrec_eval)",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    built = report.build(meta, found, chosen, results, k, rel_level, worst, llm_rows, llm_qrels)
    built["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
    figures = plots.figures(built)
    try:
        (out_dir / "plots").mkdir(parents=True, exist_ok=True)
        (out_dir / "audit.json").write_text(json.dumps(built, indent=1, ensure_ascii=False))
        (out_dir / "audit.html").write_text(html_report.render(built, figures, metrics.lower_is_better))
        for name, png in figures.items():
            (out_dir / "plots" / f"{name}.png").write_bytes(png)
    except OSError as exc:
        fail(f"cannot write the report to {out_dir}: {exc}")
    _summary(built)
    out.print(f"report: {out_dir / 'audit.html'}, {out_dir / 'audit.json'}")
    failed = gate.failures(built, gates)
    for line in failed:
        Console(stderr=True).print(f"[bold red]gate failed:[/] {line}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
