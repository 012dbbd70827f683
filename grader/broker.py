"""Grading across machines: Celery workers run the run stage; the coordinator keeps everything else.

    python -m grader worker --broker redis://HOST:6379/0 [--concurrency N]     on each grading machine
    python -m grader autograde NN_topic --submissions DIR --broker redis://...   on the coordinator

A task carries one RunRequest as JSON text and returns one RunResult as JSON text: never
pickle, never reference results, the gradebook, the course directory or other submissions.
Each worker process keeps one warm sandbox (grader.sandbox.Warm) and answers "no sandbox on
worker HOST" where it has none. Redis is the broker and the result store (the coordinator
reads finished results from it in bulk); RabbitMQ can be the broker instead
(--broker amqp://...), with results still in Redis (--results redis://...).

Nothing is lost: a message is acknowledged only when its run has ended (late acknowledgement),
so a worker machine that dies leaves it to the broker to deliver again. A worker process
killed in the middle of a run (SIGKILL, the out-of-memory killer) or a run past the task's hard
time limit fails the task; the coordinator then sends the request again, at most ATTEMPTS
times in all, and after that reports the submission as an error with the reason, so that one
submission that kills its worker every time cannot stall the class. The first result that
comes back for a submission is the one scored; a late duplicate is ignored. A broker that
restarts (and so has lost its queue) is sent the runs in flight again; one that stays away
longer than BROKER_PATIENCE stops the batch with a message (the grades recorded so far are
kept, and running the same command again resumes).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

import kombu.exceptions
import redis.exceptions
from celery import Celery

from . import executors, sandbox
from .messages import RunRequest, RunResult
from .report import GraderError, redacted

TASK = "dlcourse.run"
ATTEMPTS = 3  # runs of one submission that may end with a lost worker or a hard time limit
TASK_MARGIN = 60.0  # seconds a task may run beyond the sandbox's own limits before Celery kills it
POLL_SECONDS = 0.2
VISIBILITY_SECONDS = 600  # Redis as the broker: a run unacknowledged this long is delivered again
VISIBILITY_ENV = "DLCOURSE_VISIBILITY_SECONDS"  # on the workers, to change it
BROKER_PATIENCE = 60.0  # seconds the coordinator waits for a broker that went away, then stops
WINDOW = 512  # requests in flight at once: intake stays lazy, the broker's queue stays short


def make_app(broker: str, results: str | None = None) -> Celery:
    """The Celery app of the grader, for workers and coordinator alike: `broker` carries the run
    requests (Redis or RabbitMQ), `results` the run results (Redis; by default the broker's)."""
    scheme = urlsplit(broker).scheme
    if scheme not in ("redis", "rediss", "amqp", "amqps", "pyamqp"):
        raise GraderError(f"the broker must be Redis (redis://HOST:PORT/DB) or RabbitMQ "
                          f"(amqp://USER:PASSWORD@HOST:PORT/VHOST), not {redacted(broker)}")
    results = results or (broker if scheme.startswith("redis") else None)
    if results is None or urlsplit(results).scheme not in ("redis", "rediss"):
        raise GraderError(f"with the broker {redacted(broker)}, the run results need a Redis server: "
                          "give its URL with --results redis://HOST:PORT/DB")
    visibility = float(os.environ.get(VISIBILITY_ENV, VISIBILITY_SECONDS))
    app = Celery("dlcourse", broker=broker, backend=results, set_as_current=False)
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"], result_accept_content=["json"],
        task_acks_late=True,  # acknowledged when the run ends: a dead machine's message is delivered again
        task_reject_on_worker_lost=False,  # a killed worker process fails the task; the coordinator counts attempts
        worker_prefetch_multiplier=1,  # a worker takes one request at a time per process
        broker_connection_retry_on_startup=True,
        # Redis: a run not acknowledged 10 minutes after delivery (its machine died) is delivered again,
        # by a live worker's sweep (every tenth of that). 10 minutes is longer than a task may run with
        # the default limits (6 minutes); with longer limits, raise it on the workers, or a live run may
        # be delivered twice, which costs a run but no grade (the first result is scored).
        broker_transport_options={"visibility_timeout": visibility, "unacked_restore_interval": visibility / 10,
                                  "unacked_restore_throttle": 1},
        result_expires=7 * 24 * 3600,
        worker_hijack_root_logger=False,
        task_default_queue="dlcourse",
    )
    app.task(name=TASK)(run_task)
    return app


BROKER_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, kombu.exceptions.OperationalError,
                 OSError)

_warm: sandbox.Warm | None = None  # this worker process's sandbox, kept between its runs


def run_task(request: str) -> str:
    """The run stage as a Celery task: RunRequest JSON in, RunResult JSON out."""
    global _warm
    if _warm is None:
        _warm = sandbox.Warm()
    return executors.run_as_bytes(request.encode(), _warm).decode()


def time_limit(request: RunRequest, margin: float = TASK_MARGIN) -> float:
    """The task's hard time limit: beyond the sandbox's own backstop (grader.sandbox)."""
    limits = request.sandbox_limits()
    return limits.notebook_seconds + limits.cell_seconds + margin


class CeleryPool:
    """The executor for many machines: each run request becomes a Celery task (see the module's
    docstring for what happens when workers die)."""

    local = False  # runs on the workers' machines, in their sandboxes

    def __init__(self, broker: str, results: str | None = None, window: int = WINDOW,
                 margin: float = TASK_MARGIN) -> None:
        self.broker, self.window, self.margin = broker, window, margin
        self.app = make_app(broker, results)

    def check(self) -> None:
        """Raise ConnectionError, with the reason, if the broker or the result store cannot be reached."""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=5)
        except Exception as err:  # kombu raises its transport's own errors
            raise ConnectionError(f"cannot reach the broker at {redacted(self.broker)}: {err}") from None
        try:
            self._server()
        except BROKER_ERRORS as err:
            raise ConnectionError(f"cannot reach the result store at {redacted(self.app.conf.result_backend)}: "
                                  f"{err}") from None

    def _send(self, request: RunRequest) -> str:
        task = self.app.send_task(TASK, args=[request.to_bytes().decode()], time_limit=time_limit(request, self.margin),
                                  queue="dlcourse")
        return task.id

    def _server(self) -> str:
        """Which Redis process holds the results: a new one (a restart) has lost what it held (and
        with Redis as the broker, the queue too)."""
        return self.app.backend.client.info("server")["run_id"]

    def map_unordered(self, requests: Iterable[RunRequest]) -> Iterator[RunResult]:
        pending = iter(requests)
        in_flight: dict[str, RunRequest] = {}  # task id -> request
        attempts: dict[str, list[str]] = {}  # request id -> why each earlier attempt failed
        backend = self.app.backend
        server, down_since = self._server(), None

        def refill() -> None:
            while len(in_flight) < self.window:
                request = next(pending, None)
                if request is None:
                    return
                in_flight[self._send(request)] = request

        while True:
            try:
                if (now := self._server()) != server:  # restarted: what it queued is gone, send it again
                    print(f"the broker at {redacted(self.broker)} restarted: sending the {len(in_flight)} "
                          "runs it held again", file=sys.stderr, flush=True)
                    for task_id, request in list(in_flight.items()):
                        del in_flight[task_id]
                        in_flight[self._send(request)] = request
                    server = now
                refill()
                if not in_flight:
                    return
                ready = dict(backend.get_many(list(in_flight), interval=POLL_SECONDS, max_iterations=1))
                down_since = None
            except BROKER_ERRORS as err:
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > BROKER_PATIENCE:
                    raise GraderError(f"lost the broker at {redacted(self.broker)} ({type(err).__name__}: {err}); "
                                      "the grades recorded so far are kept: run the same command again to resume "
                                      "once it is back") from None
                time.sleep(1.0)
                continue
            results = []
            for task_id, meta in ready.items():
                request = in_flight.pop(task_id)
                backend.forget(task_id)  # results can be large: the coordinator keeps its own copy
                if meta.get("status") == "SUCCESS":
                    results.append(self._parse(request.id, meta.get("result")))
                    continue
                failed = attempts.setdefault(request.id, [])
                failed.append(_reason(meta))
                if len(failed) < ATTEMPTS:
                    in_flight[self._send(request)] = request  # delivered again
                else:
                    results.append(RunResult.failed(
                        request.id, f"the run failed on a worker {len(failed)} times: {'; '.join(failed)}"))
            yield from results

    @staticmethod
    def _parse(request_id: str, raw: object) -> RunResult:
        if not isinstance(raw, str):
            return RunResult.failed(request_id, "the worker's result is not a RunResult")
        try:
            result = RunResult.from_bytes(raw.encode())
        except Exception as err:  # malformed: reported like a broken report
            return RunResult.failed(request_id, f"the worker's result is malformed: {err}")
        if result.id != request_id:
            return RunResult.failed(request_id, "the worker answered for another submission")
        return result


def _reason(meta: dict) -> str:
    """Why a task failed, in one line: the backend hands the worker's exception back rebuilt."""
    error = meta.get("result")
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"[:300]
    return str(meta.get("status", "unknown"))


def worker(broker: str, concurrency: int | None = None, loglevel: str = "INFO", results: str | None = None) -> None:
    """Run a Celery worker for the grader on this machine (blocks until stopped)."""
    if reason := sandbox.unavailable_reason():
        print(f"warning: {reason}; this worker will answer every run with 'no sandbox'", flush=True)
    app = make_app(broker, results)
    argv = ["worker", f"--loglevel={loglevel}", "--queues=dlcourse", "--without-mingle", "--without-gossip",
            f"--concurrency={concurrency or os.cpu_count() or 1}", "--pool=prefork"]
    app.worker_main(argv=argv)
