"""Executors: what runs the run stage. autograde takes any object with this one method:

    class Executor(Protocol):
        def map_unordered(self, requests: Iterable[RunRequest]) -> Iterator[RunResult]: ...

It yields one RunResult per request, in any order, each with its request's id; a run that
fails yields RunResult.failed(id, reason) rather than raising, so one submission never stops
the batch. The executor sees run requests only: no reference results, no gradebook, no
course directory.
"""
from __future__ import annotations

import os
import queue
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Protocol

from . import execution, sandbox
from .messages import RunRequest, RunResult


class Executor(Protocol):
    def map_unordered(self, requests: Iterable[RunRequest]) -> Iterator[RunResult]: ...


def run_as_bytes(request: bytes, warm: sandbox.Warm | None = None) -> bytes:
    """The run stage on serialized messages, as a remote worker receives and answers them."""
    return execution.run(RunRequest.from_bytes(request), warm).to_bytes()


class LocalPool:
    """The default executor: `workers` threads on this machine, each driving one sandbox, kept
    warm between its runs (grader.sandbox.Warm), and closed when the requests run out.

    Requests and results cross the pool as bytes, exactly as they would cross a network, so the
    trusted side reads a local result the same way it would read a remote one. Requests are
    pulled from the iterable only as threads free up, so intake and runs overlap.
    """

    local = True  # runs on this machine: autograde checks this machine's sandbox

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)

    def map_unordered(self, requests: Iterable[RunRequest]) -> Iterator[RunResult]:
        pending = iter(requests)
        sandboxes = [sandbox.Warm() for _ in range(self.workers)]
        free = queue.SimpleQueue()
        for box in sandboxes:
            free.put(box)

        def task(raw: bytes) -> bytes:
            box = free.get()  # never more tasks than sandboxes run at once
            try:
                return run_as_bytes(raw, box)
            finally:
                free.put(box)

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            running: dict = {}

            def refill() -> None:
                while len(running) < self.workers:
                    request = next(pending, None)
                    if request is None:
                        return
                    running[pool.submit(task, request.to_bytes())] = request.id

            try:
                refill()
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    results = [self._collect(future, running.pop(future)) for future in done]
                    refill()  # keep the threads busy while the caller scores what came back
                    yield from results
            finally:
                for future in running:
                    future.cancel()
                pool.shutdown(wait=True)
                for box in sandboxes:
                    box.close()

    @staticmethod
    def _collect(future, request_id: str) -> RunResult:
        try:
            result = RunResult.from_bytes(future.result())
        except Exception as err:  # the run stage itself broke: report it, go on
            return RunResult.failed(request_id, f"{type(err).__name__}: {err}")
        if result.id != request_id:
            return RunResult.failed(request_id, "the executor answered for another submission")
        return result
