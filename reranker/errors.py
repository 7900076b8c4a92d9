"""The one error contract: every error a user can cause (bad input, a missing file or model, a node
that will not start) is an LrefError. The `lref` command line turns one into a single line and exit
code 2 in one place (lref/cli.py); the service maps its own to HTTP 4xx. Each room keeps its own
subclass, so a message says where it came from and callers can still catch one kind."""

from __future__ import annotations


class LrefError(Exception):
    """Something the user can fix; its message is the whole story, in one line."""
