"""`lref audit`: measure a search pipeline against relevance judgments on the real index.

Reads judgments (our JSONL, TREC qrels, Search Relevance Workbench IMPORT_JUDGMENT JSON, Quepid
CSV), runs every query without a pipeline and through each named pipeline, scores the runs with
ir-measures, audits what the lref tier filter dropped, and writes a JSON and an HTML report.
"""

from reranker.errors import LrefError


class AuditError(LrefError, ValueError):
    """Bad input or an unusable engine: reported as one line, exit code 2."""
