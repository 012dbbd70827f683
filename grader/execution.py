"""Execute a notebook through grader.runner (in the sandbox, or not for trusted code) and
read back what it reports, as data, with every field checked."""
from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import records, sandbox
from .canonical import TAG

SAFE_MIME = ("text/plain", "image/png", "image/jpeg")  # no HTML or scripts reach feedback or formgrader


@dataclass
class Execution:
    """A finished run: the executed notebook, what the probes recorded, and what went wrong."""

    notebook: nbformat.NotebookNode
    records: dict[str, dict]
    events: list[str] = field(default_factory=list)  # kernel death, timeouts, broken reports
    seconds: float = 0.0
    log: str = ""
    processes_limited: bool = False
    report_ok: bool = True  # False: the runner was killed or its report was garbage
    stopped: bool = False  # the kernel died or a time limit ended the run early


def _describe(event: dict, cells: list, limits: sandbox.Limits) -> str:
    index = event.get("cell")
    where = ""
    if type(index) is int and 0 <= index < len(cells):
        tag = cells[index].metadata.get(TAG, {})
        if tag.get("grade_id"):
            where = f" in cell {tag['grade_id']}"
        else:  # a cell the student added: say which canonical cell it follows
            before = [c.metadata.get(TAG, {}).get("grade_id") for c in cells[:index]]
            after = next((g for g in reversed(before) if g), None)
            where = f" in a cell you added after {after}" if after else " in a cell you added at the top"
    kind = event.get("event")
    if kind == "kernel_died":
        return f"kernel died{where} (a crash, os._exit, or the memory limit); the tests after it score 0"
    if kind == "timeout":
        return f"timed out after {limits.cell_seconds:g} s{where}; the tests after it score 0"
    if kind == "output_cut":
        return f"output over {limits.output_bytes // 2**20} MB was cut"
    if kind == "deadline":
        return f"the notebook ran past its {limits.notebook_seconds:g} s limit{where}; the tests after it score 0"
    return f"the grading runner failed: {str(event.get('error', kind))[:300]}"


def _clean_outputs(nb: nbformat.NotebookNode) -> None:
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if "data" in out:
                out["data"] = {k: v for k, v in out["data"].items() if k in SAFE_MIME}


def execute(run_nb: nbformat.NotebookNode, filename: str, limits: sandbox.Limits, sandboxed: bool = True,
            extra_files: dict[str, bytes] | None = None) -> Execution:
    """Run `run_nb` (saved as `filename`) with the runner and parse its report.

    Whatever the runner reports is untrusted: a report that cannot be read leaves the
    notebook without outputs and no records, with the reason in `events`.
    """
    with tempfile.TemporaryDirectory(prefix="dlcourse-in-") as tmp:
        inputs = Path(tmp)
        nbformat.write(run_nb, inputs / filename)
        for name, data in (extra_files or {}).items():
            (inputs / name).write_bytes(data)
        inner = [sys.executable, "-m", "grader.runner", f"/in/{filename}" if sandboxed else str(inputs / filename),
                 "--cell-seconds", str(limits.cell_seconds), "--deadline-seconds", str(limits.notebook_seconds),
                 "--output-bytes", str(limits.output_bytes)]
        run = sandbox.run(inner, inputs, limits, sandboxed=sandboxed)
    result = Execution(notebook=run_nb, records={}, seconds=run.seconds, log=run.stderr,
                       processes_limited=run.processes_limited)
    try:
        report = json.loads(run.result.decode("utf-8")) if run.result else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        report = None
    if type(report) is not dict:
        result.report_ok = False
        killed = run.returncode is None
        result.stopped = killed
        result.events.append("the notebook was stopped at its time limit" if killed else
                             "the grading process was killed or its report was unreadable (tampering?); "
                             "nothing could be graded")
        return result
    try:
        nb = nbformat.from_dict(report.get("notebook"))
        nbformat.validate(nb)
        if len(nb.cells) != len(run_nb.cells):
            raise ValueError("cells were added or removed during the run")
        for ran, planned in zip(nb.cells, run_nb.cells):  # keep our own sources and tags
            ran.source, ran.metadata = planned.source, planned.metadata
        _clean_outputs(nb)
        result.notebook = nb
    except Exception as err:  # a malformed report: keep the plan, without outputs
        result.events.append(f"the executed notebook could not be read back ({type(err).__name__})")
    result.records, problems = records.load_bundle_records(report.get("records", {}))
    result.events += [f"ignored a malformed record ({p})" for p in problems[:5]]
    events = report.get("events", [])
    for event in events if type(events) is list else []:
        if type(event) is dict:
            result.events.append(_describe(event, run_nb.cells, limits))
            result.stopped = result.stopped or event.get("event") in ("kernel_died", "timeout", "deadline")
    return result
