"""The run stage: the only thing an executor runs. RunRequest -> RunResult, nothing else.

`run` needs no course directory, no gradebook and no reference results: it writes the
request's notebook into a fresh folder, executes it with grader.runner in the sandbox, and
returns what the runner reported, split into fields but not trusted (grader.scoring checks
every one of them). Any executor that can call a module-level function can run it: the
local pool's threads here, a worker on another machine tomorrow.
"""
from __future__ import annotations

import json
import socket
import sys
import tempfile
from pathlib import Path

from . import sandbox
from .messages import BadMessage, RunRequest, RunResult


def run(request: RunRequest) -> RunResult:
    """Execute the request's notebook (in the sandbox unless the request says otherwise)."""
    try:
        limits = request.sandbox_limits()
    except BadMessage as err:
        return RunResult.failed(request.id, f"malformed run request: {err}")
    if request.sandboxed and (reason := sandbox.unavailable_reason()):
        return RunResult.failed(request.id, f"no sandbox on worker {socket.gethostname()}: {reason}")
    with tempfile.TemporaryDirectory(prefix="dlcourse-in-") as tmp:
        inputs = Path(tmp)
        filename = Path(request.filename).name or "submission.ipynb"  # never a path out of /in
        (inputs / filename).write_text(json.dumps(request.notebook))
        notebook = f"/in/{filename}" if request.sandboxed else str(inputs / filename)
        inner = [sys.executable, "-m", "grader.runner", notebook, "--cell-seconds", str(limits.cell_seconds),
                 "--deadline-seconds", str(limits.notebook_seconds), "--output-bytes", str(limits.output_bytes)]
        ran = sandbox.run(inner, inputs, limits, sandboxed=request.sandboxed)
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
