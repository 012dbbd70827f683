"""Where the trusted stages of a batch run: in this process, or on several of this machine's cores.

    runner.take(folders)                     -> (folder, Intake, CPU seconds), in the folders' order
    runner.judge(outcome, request, result)   the score stage, started
    runner.judged(block)                     -> (outcome, Judged) for each finished one (block: all)

Stages.take and Stages.judge depend only on their arguments and the batch's fixed context, write
only their own submission's files and return plain data, so they can run in other processes:
each process gets the batch's Stages once, and only folders, requests, results and their
verdicts cross. The coordinator keeps the outcomes, the gradebook and the records.

A process that dies (say, killed by the host's out-of-memory killer) costs no submission: what
it was doing is done again, and everything after is done, in this process.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from .intake import Intake
from .messages import RunRequest, RunResult
from .report import Outcome
from .sandbox import die_with_parent
from .trusted import Judged, Stages

MIN_FOLDERS = 200  # smaller classes: starting processes would cost more than it saves
MAX_PROCESSES = 4
AHEAD = 8  # intakes started ahead of the executor, per process

_stages: Stages | None = None  # in a pool's process: its batch's stages


def _start(stages: Stages) -> None:
    global _stages
    _stages = stages
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the coordinator, which finishes what they started
    if sys.platform == "linux":  # a coordinator killed mid-batch leaves no process behind
        die_with_parent()


def _take(folder: Path) -> tuple[Intake, float]:
    start = time.thread_time()
    taken = _stages.take(folder)
    return taken, time.thread_time() - start


def _judge(outcome: Outcome, request: RunRequest, result: RunResult) -> Judged:
    return _stages.judge(outcome, request, result)


def processes_for(folders: int, processes: int | None = None) -> int:
    """How many processes take and judge: `processes` if given, else one per core (at most
    MAX_PROCESSES) for a class of at least MIN_FOLDERS, else 1 (this process)."""
    if processes is not None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        return processes
    return min(os.cpu_count() or 1, MAX_PROCESSES) if folders >= MIN_FOLDERS else 1


class InProcess:
    """The stages in this process, one submission at a time."""

    def __init__(self, stages: Stages) -> None:
        self.stages = stages
        self.done: list[tuple[Outcome, Judged]] = []

    def take(self, folders: Iterable[Path]) -> Iterator[tuple[Path, Intake, float]]:
        for folder in folders:
            yield folder, *self.take_here(folder)

    def take_here(self, folder: Path) -> tuple[Intake, float]:
        start = time.thread_time()
        taken = self.stages.take(folder)
        return taken, time.thread_time() - start

    def judge(self, outcome: Outcome, request: RunRequest, result: RunResult) -> None:
        self.done.append((outcome, self.stages.judge(outcome, request, result)))

    def judged(self, block: bool = False) -> list[tuple[Outcome, Judged]]:
        done, self.done = self.done, []
        return done

    def close(self) -> None:
        pass


class Processes(InProcess):
    """The stages on `n` processes of this machine, forked as the batch starts: before the
    executor and the progress bar start threads, with the grader imported and the stages in memory
    (a spawned process would import everything again, and re-run an unguarded __main__)."""

    def __init__(self, stages: Stages, n: int) -> None:
        super().__init__(stages)
        self.n = n
        self.pool: ProcessPoolExecutor | None = ProcessPoolExecutor(n, multiprocessing.get_context("fork"),
                                                                    initializer=_start, initargs=(stages,))
        self.judging: dict[Future, tuple[Outcome, RunRequest, RunResult]] = {}
        self._submit(os.getpid)  # forks all n now (a forking pool starts them at its first task)

    def _submit(self, fn, *args) -> Future | None:
        if self.pool is not None:
            try:
                return self.pool.submit(fn, *args)
            except (BrokenProcessPool, OSError) as err:  # OSError: a process could not be forked
                self._lost(err)
        return None

    def _answer(self, future: Future | None, in_process):
        """A future's answer; if its process died, `in_process()` (and no more processes)."""
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool as err:
                self._lost(err)
            except Exception:  # the stages catch their own errors: this answer could not cross, so do it here
                pass
        return in_process()

    def _lost(self, err: Exception) -> None:
        if self.pool is not None:
            print(f"the grader's processes on this machine stopped ({type(err).__name__}: {err}): the batch "
                  "goes on in this process", file=sys.stderr, flush=True)
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def take(self, folders: Iterable[Path]) -> Iterator[tuple[Path, Intake, float]]:
        ahead: deque[tuple[Path, Future | None]] = deque()
        folders = iter(folders)
        while True:
            while len(ahead) < AHEAD * self.n and (folder := next(folders, None)) is not None:
                ahead.append((folder, self._submit(_take, folder)))
            if not ahead:
                return
            folder, future = ahead.popleft()
            yield folder, *self._answer(future, lambda: self.take_here(folder))

    def judge(self, outcome: Outcome, request: RunRequest, result: RunResult) -> None:
        if (future := self._submit(_judge, outcome, request, result)) is None:
            super().judge(outcome, request, result)
        else:
            self.judging[future] = (outcome, request, result)

    def judged(self, block: bool = False) -> list[tuple[Outcome, Judged]]:
        if block and self.judging:
            wait(self.judging)
        for future in [f for f in self.judging if f.done()]:
            outcome, request, result = self.judging.pop(future)
            self.done.append((outcome, self._answer(future, lambda: self.stages.judge(outcome, request, result))))
        return super().judged()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def runner(stages: Stages, processes: int) -> InProcess:
    return InProcess(stages) if processes == 1 else Processes(stages, processes)
