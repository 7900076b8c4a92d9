"""uvicorn's HTTP protocol (httptools) with a deadline on receiving each request.

uvicorn arms its keep-alive timer only after a response and cancels it at the first byte that
arrives, so a client that connects and sends nothing, drips a request head, or stops halfway
through a body holds a connection open for ever. Here each request, from the connection (or the
end of the previous response) to the last byte of its body, must arrive within `request_timeout`
seconds, or the connection is closed. Scoring time does not count: the deadline stops once the
request is in."""

from __future__ import annotations

import asyncio
from functools import partial

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class DeadlineProtocol(HttpToolsProtocol):
    def __init__(self, *args, request_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def _arm_deadline(self) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(self.request_timeout, self.timeout_keep_alive_handler)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_deadline()

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a pipelined request already arrived: no wait to bound
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)


def deadline_protocol(request_timeout: float):
    """The class uvicorn's `http=` option takes, with the deadline bound."""
    return partial(DeadlineProtocol, request_timeout=request_timeout)
