"""`lref`: one command line assembled from each room's commands, and its one error handler.

Imports go one way: lref -> apps (audit, demo) -> engine -> reranker.core; training -> reranker.core.
No room imports this module or a room above it."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from apps.audit.cli import audit
from apps.store.demo import demo
from engine.cli import opensearch_app
from reranker.cli import balance, judge_options, score, serve
from reranker.console import fail
from reranker.errors import LrefError
from training.cli import train


class LrefCommands(TyperGroup):
    """The root of `lref` and the one error handler of every sub-command: an LrefError (bad input, a
    missing model or file, a node that will not start) or an OSError raised anywhere below ends as
    one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (LrefError, OSError) as exc:
            fail(str(exc))


app = typer.Typer(cls=LrefCommands, help="LLM relevance judging for e-commerce search on OpenSearch.", no_args_is_help=True)
app.add_typer(opensearch_app, name="opensearch")
app.command("audit")(audit)
app.command()(balance)
app.command()(serve)
app.command()(score)
app.command()(train)
app.command()(judge_options(demo))


def main() -> None:
    app(prog_name="lref")  # exits with the command's status
