"""The reranker's commands (`lref serve`, `lref score`, `lref balance`) and the judge options they and
`lref demo` share; lref/cli.py assembles them with the other rooms' commands."""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import typing
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .api import build_config
from .core import DEFAULT_BETA, DEFAULT_MIN_TIER, blank, text_problem
from .console import api_key_from, check_listen, fail


# The judge options every model-loading command shares: (name, type, default, help).
_JUDGE_OPTIONS = [
    ("judge", Optional[str], None, "a judge dir (weights + judge.json card, from `lref train`), or 'zero-shot' for "
                                   "the bare --model (default: the judge shipped in models/, unless --model or "
                                   "--adapter is given)"),
    ("model", Optional[str], None, "base model: 'default' (SmolLM2-135M-Instruct from PyPI), a local HF dir, a .gguf "
                                   "file or a hub id (default: the judge's base, else 'default')"),
    ("adapter", Optional[str], None, "LoRA adapter dir merged into the model at load (the adapter/ of a judge dir "
                                     "serves that judge, with its card)"),
    ("dtype", str, "auto", "auto | float32 | bfloat16 | float16"),
    ("device", str, "auto", "auto | cpu | cuda"),
    ("backend", str, "transformers", "transformers | vllm (GPU, optional extra)"),
    ("scheme", Optional[str], None, "four_level | binary | esci | path to a scheme JSON (default: the judge's, else four_level)"),
    ("beta", Optional[float], None, "CumPT threshold: level = max{c : sum_{j>=c} P_j >= beta} "
                                  f"(default: the judge's, else {DEFAULT_BETA})"),
    ("tier_map", Optional[str], None, "LEVEL=TIER,... e.g. 4=Good,3=Good,2=Mid,1=Bad (default: the judge's, else the scheme's)"),
    ("min_tier", Optional[str], None, f"lowest tier that is kept: Good | Mid | Bad (default: the judge's, else {DEFAULT_MIN_TIER})"),
    ("order", str, "expected", "order within a tier: expected (relevance) | retrieval (original order)"),
]


def judge_options(command):
    """Add the shared judge options to a command; it receives them as one dict, `judge`."""
    own = [p for name, p in inspect.signature(command).parameters.items() if name != "judge"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(default, help=help_), annotation=kind)
        for name, kind, default, help_ in _JUDGE_OPTIONS
    ]

    @functools.wraps(command)
    def wrapper(**kwargs):
        judge = {name: kwargs.pop(name) for name, *_ in _JUDGE_OPTIONS}
        return command(judge=judge, **kwargs)

    hints = {k: v for k, v in typing.get_type_hints(command).items() if k != "judge"}
    wrapper.__annotations__ = {**hints, **{name: kind for name, kind, *_ in _JUDGE_OPTIONS}}
    wrapper.__signature__ = inspect.Signature(own + added)
    del wrapper.__wrapped__  # typer must see the new signature, not the wrapped one
    return wrapper


def balance(
    replica: list[str] = typer.Option(..., "--replica", help="an `lref serve` to send requests to, http://host:port (repeatable)"),
    host: str = typer.Option("127.0.0.1", help="the balancer's bind address (loopback by default)"),
    port: int = typer.Option(8000, help="the balancer's port: point the connector here"),
    check_interval_ms: int = typer.Option(1000, help="how often each replica's /health is checked (2 misses: down)"),
    write_config: Optional[Path] = typer.Option(None, help="only write the HAProxy config to this file (for "
                                                           "docker-compose or an HAProxy of your own) and exit"),
) -> None:
    """HAProxy in front of several `lref serve` replicas: health checks on /health, requests a dying
    replica dropped retried on another. Runs in the foreground; Ctrl-C stops it."""
    import os

    from .balancer import Balancer, check_config, find_haproxy, haproxy_config, replica_address
    from .models.loading import cache_dir

    if not 50 <= check_interval_ms <= 60_000:
        fail(f"--check-interval-ms must be between 50 and 60000, got {check_interval_ms}")
    balancer = Balancer(tuple(replica_address(r) for r in replica), host, port, check_interval_ms)
    text = haproxy_config(balancer)
    if write_config is None:
        check_listen("--host", host, "--port", port)
    path = write_config or cache_dir() / "balancer" / f"haproxy-{port}.cfg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    check_config(path)
    if write_config is not None:
        typer.echo(f"wrote {path}")
        return
    Console(stderr=True).print(f"balancing {', '.join(balancer.replicas)} on http://{host}:{port} (config {path})",
                               highlight=False, soft_wrap=True)
    sys.stderr.flush()
    os.execv(find_haproxy(), ["haproxy", "-db", "-f", str(path)])  # HAProxy itself gets the signals


@judge_options
def serve(
    judge: dict,
    host: str = typer.Option("127.0.0.1", help="bind address (loopback by default)"),
    port: int = typer.Option(8000),
    api_key_file: Optional[str] = typer.Option(None, help="file holding the API key clients must send (or env LREF_API_KEY)"),
    max_batch_pairs: int = typer.Option(256, help="pairs merged from concurrent requests into one scoring call"),
    max_wait_ms: float = typer.Option(0.0, help="extra wait for others to join a batch (requests queued while the model is busy join anyway)"),
    company_wait_ms: float = typer.Option(10.0, help="wait for others to join a batch while requests come concurrently (never for a lone one)"),
    max_documents: int = typer.Option(1000, help="most documents one request may carry"),
    request_timeout_s: float = typer.Option(10.0, help="seconds a client has to send a whole request (head and "
                                                       "body) once connected or after a response; then it is closed"),
) -> None:
    """Start the reranker service (FastAPI)."""
    import math

    import uvicorn

    from .service.app import create_app
    from .service.protocol import deadline_protocol

    for option, value, least in (("--max-batch-pairs", max_batch_pairs, 1), ("--max-documents", max_documents, 1),
                                 ("--max-wait-ms", max_wait_ms, 0), ("--company-wait-ms", company_wait_ms, 0)):
        if not (value >= least and math.isfinite(value)):  # nan fails this too
            fail(f"{option} must be a number >= {least}, got {value}")
    if not (0 < request_timeout_s and math.isfinite(request_timeout_s)):
        fail(f"--request-timeout-s must be a positive number of seconds, got {request_timeout_s}")
    check_listen("--host", host, "--port", port)  # before the model loads, not after
    api_key = api_key_from(api_key_file)
    config = build_config(
        **judge, host=host, port=port, api_key=api_key, max_batch_pairs=max_batch_pairs,
        max_wait_ms=max_wait_ms, company_wait_ms=company_wait_ms, max_documents=max_documents,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server: uvicorn.Server | None = None

    def stop_serving(_: str) -> None:
        server.should_exit = True  # a server without a model must not pretend to be up

    application = create_app(config, on_load_failure=stop_serving)
    server = uvicorn.Server(uvicorn.Config(application, host=host, port=port, log_level="info",
                                           http=deadline_protocol(request_timeout_s), timeout_keep_alive=5))
    server.run()
    if application.state.lref.load_error:
        fail(f"model failed to load: {application.state.lref.load_error}")


@judge_options
def score(
    judge: dict,
    query: str = typer.Argument(..., help="the search query"),
    titles: list[str] = typer.Argument(..., help="product titles to judge"),
) -> None:
    """Judge a few titles for one query and print levels and tiers."""
    from .api import Judge

    if blank(query):
        fail("query must not be empty (or only spaces and invisible characters)")
    for what, text in [("query", query), *((f"title {i}", t) for i, t in enumerate(titles))]:
        if problem := text_problem(text):
            fail(f"{what}: {problem}")
    loaded = Judge.load(**judge)
    judgments = loaded.judge(query, titles)  # the service's rule for long text: cut, never refused
    table = Table(title=f"query: {query}")
    table.add_column("#", justify="right")
    table.add_column("title")
    for lv in loaded.backend.prompt.scheme.levels:
        table.add_column(f"P({lv.token})", justify="right")
    table.add_column("level")
    table.add_column("tier")
    table.add_column("kept")
    for i, (title, j) in enumerate(zip(titles, judgments)):
        table.add_row(
            str(i), title, *[f"{p:.3f}" for p in j.probs.values()], j.level.name, j.tier, "yes" if j.keep else "no"
        )
    Console().print(table)
