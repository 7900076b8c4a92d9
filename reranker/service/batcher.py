"""Micro-batching: concurrent requests are merged into shared scoring calls.

The first waiting request opens a batch; others join until the batch holds max_batch_pairs
pairs or max_wait_ms has passed. While traffic is concurrent (the last batch merged several
requests, or others were queued when it ended) a batch also waits up to company_wait_ms until as
many requests have joined: clients answered together come back together, a few milliseconds
apart, and without the wait the first of them would run alone and the rest after it, a small
batch and a large one in turn instead of one. A lone request on an idle model never waits. The
model runs in one worker thread, so the event loop keeps answering (health, metrics, new
requests) while a batch is scored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from ..backends import JudgeBackend, ScoreJob
from .metrics import Metrics


Gone = Callable[[], Awaitable[bool]]  # asks whether a request's client has hung up


class ClientGone(Exception):
    """The client disconnected before its job was scored."""


class MicroBatcher:
    def __init__(self, backend: JudgeBackend, metrics: Metrics, max_batch_pairs: int, max_wait_ms: float,
                 company_wait_ms: float = 0.0) -> None:
        self.backend = backend
        self.metrics = metrics
        self.max_batch_pairs = max_batch_pairs
        self.max_wait = max_wait_ms / 1000.0
        self.company_wait = company_wait_ms / 1000.0
        self.company = 1  # requests in the last batch and queued when it ended: those expected back
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lref-model")
        self.queue: asyncio.Queue[tuple[ScoreJob, asyncio.Future, Gone | None]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, job: ScoreJob, gone: Gone | None = None) -> torch.Tensor:
        """Queue a job and wait for its probabilities. `gone` tells whether the client has hung up
        (e.g. the search engine's read timeout passed). It is asked when the job's batch is formed:
        a job whose client is gone is dropped (ClientGone) instead of being computed for nobody, so
        a backlog cannot outlive its callers. Asked then, not polled while the job waits: on a busy
        CPU every wake-up of the event loop takes a core from the model's threads."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((job, future, gone))
        return await future

    async def run_in_model_thread(self, fn, *args):
        """Other model work (reasoning generation) shares the same single model thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _collect(self) -> list[tuple[ScoreJob, asyncio.Future, Gone | None]]:
        batch = [await self.queue.get()]
        pairs = len(batch[0][0].products)
        loop = asyncio.get_running_loop()
        started = loop.time()
        while pairs < self.max_batch_pairs:
            try:
                item = self.queue.get_nowait()  # whoever queued while the model was busy joins at once
            except asyncio.QueueEmpty:
                waiting_for_company = len(batch) < self.company  # once they are all back, no more waiting
                timeout = started + max(self.max_wait, self.company_wait if waiting_for_company else 0.0) - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
            batch.append(item)
            pairs += len(item[0].products)
        return batch

    async def _run(self) -> None:
        while True:
            live = []
            for job, future, gone in await self._collect():
                if future.done():  # its request was cancelled (server shutting down)
                    continue
                if gone is not None and await gone():
                    future.set_exception(ClientGone())
                    self.metrics.abandoned.inc()
                    continue
                live.append((job, future))
            if not live:
                continue
            try:
                await self._score(live)
            except Exception as exc:
                if len(live) == 1:
                    self._settle(live, exc=exc)
                    continue
                # One request's failure must not fail the others merged into its batch: score each
                # alone, so only the request that really fails gets the error.
                for item in live:
                    if item[1].done():
                        continue
                    try:
                        await self._score([item])
                    except Exception as alone:
                        self._settle([item], exc=alone)
            finally:
                self.company = len(live) + self.queue.qsize()

    async def _score(self, live: list[tuple[ScoreJob, asyncio.Future]]) -> None:
        jobs = [job for job, _ in live]
        started = time.perf_counter()
        results = await self.run_in_model_thread(self.backend.label_probs, jobs)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_pairs.observe(sum(len(j.products) for j in jobs))
        self.metrics.batch_requests.observe(len(jobs))
        self._settle(live, results=results)

    @staticmethod
    def _settle(live, results=None, exc: BaseException | None = None) -> None:
        """Hand each waiting request its probabilities, or the error (which it turns into JSON)."""
        for i, (_, fut) in enumerate(live):
            if fut.done():  # the client gave up meanwhile
                continue
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(results[i])
