"""The run stage: the only thing an executor runs. RunRequest -> RunResult, nothing else.

`run` needs no course directory, no gradebook and no reference results: it sends the
request's notebook into a sandbox (grader.sandbox.Warm: a fresh, isolated run forked from a
process that has already imported the runner, the kernel and torch) and returns what the
runner reported, split into fields but not trusted (grader.scoring checks every one of them).
Any executor that can call a module-level function can run it: the local pool's threads here
(each with a warm sandbox of its own), a worker on another machine tomorrow.
"""
from __future__ import annotations

import contextlib
import json
import socket
import sys
import tempfile
from pathlib import Path

from . import sandbox
from .messages import BadMessage, RunRequest, RunResult


def run(request: RunRequest, warm: sandbox.Warm | None = None) -> RunResult:
    """Execute the request's notebook in the sandbox (in `warm`, a sandbox kept between runs, if
    given, else in one started for this run), or without one if the request says so."""
    try:
        limits = request.sandbox_limits()
    except BadMessage as err:
        return RunResult.failed(request.id, f"malformed run request: {err}")
    if request.sandboxed and (reason := sandbox.unavailable_reason()):
        return RunResult.failed(request.id, f"no sandbox on worker {socket.gethostname()}: {reason}")
    filename = Path(request.filename).name or "submission.ipynb"  # never a path out of the scratch folder
    if request.sandboxed:
        with contextlib.nullcontext(warm) if warm else sandbox.Warm() as box:
            ran = box.run(json.dumps(request.notebook), filename, limits)
    else:
        with tempfile.TemporaryDirectory(prefix="dlcourse-in-") as tmp:
            (Path(tmp) / filename).write_text(json.dumps(request.notebook))
            inner = [sys.executable, "-m", "grader.runner", str(Path(tmp) / filename), "--cell-seconds",
                     str(limits.cell_seconds), "--deadline-seconds", str(limits.notebook_seconds),
                     "--output-bytes", str(limits.output_bytes)]
            ran = sandbox.run(inner, Path(tmp), limits, sandboxed=False)
    result = RunResult(id=request.id, notebook=None, records={}, events=[], seconds=ran.seconds, log=ran.stderr,
                       returncode=ran.returncode, processes_limited=ran.processes_limited)
    try:
        report = json.loads(ran.result.decode("utf-8")) if ran.result else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        report = None
    if type(report) is not dict:
        result.report_ok = False
        return result
    notebook, records, events, timings = (report.get(k) for k in ("notebook", "records", "events", "timings"))
    result.notebook = notebook if type(notebook) is dict else None
    result.records = records if type(records) is dict else {}
    result.events = events if type(events) is list else []
    if type(timings) is dict and type(timings.get("started_at")) is float:
        result.timings = {**timings, "sandbox": timings.get("started_at", 0) - ran.started_at}
    return result
