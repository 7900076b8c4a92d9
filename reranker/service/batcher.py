"""Micro-batching: concurrent requests are merged into shared scoring calls.

The first waiting request opens a batch; others join until the batch holds max_batch_pairs
pairs or max_wait_ms has passed. The model runs in one worker thread, so the event loop keeps
answering (health, metrics, new requests) while a batch is scored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from ..backends import JudgeBackend, ScoreJob
from .metrics import Metrics


class ClientGone(Exception):
    """The client disconnected before its job was scored."""


class MicroBatcher:
    def __init__(self, backend: JudgeBackend, metrics: Metrics, max_batch_pairs: int, max_wait_ms: float) -> None:
        self.backend = backend
        self.metrics = metrics
        self.max_batch_pairs = max_batch_pairs
        self.max_wait = max_wait_ms / 1000.0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lref-model")
        self.queue: asyncio.Queue[tuple[ScoreJob, asyncio.Future]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, job: ScoreJob, gone: Callable[[], Awaitable[bool]] | None = None) -> torch.Tensor:
        """Queue a job and wait for its probabilities. `gone` tells whether the client has hung up
        (e.g. the search engine's read timeout passed): a job still waiting in the queue is then
        dropped instead of being computed for nobody, so a backlog cannot outlive its callers."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((job, future))
        while gone is not None:
            done, _ = await asyncio.wait({future}, timeout=0.05)
            if done:
                break
            if await gone():
                future.cancel()
                self.metrics.abandoned.inc()
                raise ClientGone()
        return await future

    async def run_in_model_thread(self, fn, *args):
        """Other model work (reasoning generation) shares the same single model thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _collect(self) -> list[tuple[ScoreJob, asyncio.Future]]:
        batch = [await self.queue.get()]
        pairs = len(batch[0][0].products)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while pairs < self.max_batch_pairs:
            try:
                item = self.queue.get_nowait()  # whoever queued while the model was busy joins at once
            except asyncio.QueueEmpty:
                timeout = deadline - loop.time()
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
            batch = await self._collect()
            live = [(job, fut) for job, fut in batch if not fut.cancelled()]  # clients that gave up
            if not live:
                continue
            jobs = [job for job, _ in live]
            started = time.perf_counter()
            try:
                results = await self.run_in_model_thread(self.backend.label_probs, jobs)
            except Exception as exc:  # handed to each waiting request, which turns it into a JSON error
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            self.metrics.batch_pairs.observe(sum(len(j.products) for j in jobs))
            self.metrics.batch_requests.observe(len(jobs))
            for (_, fut), probs in zip(live, results):
                if not fut.done():
                    fut.set_result(probs)
