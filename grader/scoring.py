"""The score stage (trusted): a RunResult and the reference results -> scores, details, flags.

Everything in a RunResult came out of untrusted code, possibly through another machine: the
executed notebook is the plan's cells with the reported outputs, each checked against nbformat's
schema, only safe output types surviving; records are parsed as plain data (grader.records);
events are described in words. Scores come from the records alone; the canaries only flag a
tampered kernel.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import nbformat
from nbformat import NotebookNode

from . import canonical, nbschema, records
from .canonical import TAG
from .messages import RunRequest, RunResult
from .sandbox import Limits

SAFE_MIME = ("text/plain", "image/png", "image/jpeg")  # no HTML or scripts reach feedback or formgrader
STOPPING_EVENTS = ("kernel_died", "timeout", "deadline")


@dataclass
class Scored:
    """One submission's run, judged."""

    notebook: nbformat.NotebookNode  # the run notebook with the run's outputs (none if unreadable)
    scores: dict[str, float]  # grade_id of each autograded test cell -> points
    details: dict[str, list[str]]  # grade_id -> one line per hidden case
    records: dict[str, dict] = field(default_factory=dict)  # the well-formed records of the run, by name
    notes: list[str] = field(default_factory=list)  # what went wrong, in words for the student
    flagged: bool = False  # the kernel was tampered with
    seconds: float = 0.0
    log: str = ""


def describe(event: dict, cells: list, limits: Limits) -> str:
    """A runner event in words, saying in which cell it happened."""
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


def _outputs(ran: object) -> tuple[int | None, list[dict]]:
    """A reported code cell's execution count and outputs, each output checked against nbformat's
    schema, safe MIME types only; ValueError if it is not a code cell as planned."""
    if not isinstance(ran, dict) or ran.get("cell_type") != "code":
        raise ValueError("a code cell changed type during the run")
    count, outputs = ran.get("execution_count"), ran.get("outputs", [])
    if not (count is None or (type(count) is int and count >= 0)) or not isinstance(outputs, list):
        raise ValueError("a code cell's execution count or outputs are malformed")
    for out in outputs:
        nbschema.check_output(out)  # nbschema.Invalid (a ValueError) if malformed
        if "data" in out:
            out["data"] = {k: v for k, v in out["data"].items() if k in SAFE_MIME}
    return count, [nbformat.from_dict(out) for out in outputs]  # nodes, as nbgrader reads them


def executed_notebook(reported: dict | None, plan: NotebookNode) -> tuple[NotebookNode, list[str]]:
    """The run's notebook: the plan (our cells, sources and tags) with the execution counts and
    outputs the run reported, nothing else of the report. An unreadable report leaves the plan
    without outputs."""
    if reported is None:
        return plan, []
    try:
        cells = reported.get("cells")
        if not isinstance(cells, list) or len(cells) != len(plan.cells):
            raise ValueError("cells were added or removed during the run")
        executed = []
        for ran, planned in zip(cells, plan.cells):
            cell = NotebookNode(planned)  # a new cell around the plan's own source, tags and id
            if planned.cell_type == "code":
                cell.execution_count, cell.outputs = _outputs(ran)
            executed.append(cell)
        return NotebookNode({**plan, "cells": executed}), []
    except Exception as err:  # a malformed report: keep the plan, without outputs
        return plan, [f"the executed notebook could not be read back ({type(err).__name__})"]


def score(request: RunRequest, result: RunResult, reference: dict) -> Scored:
    """Judge one run against the reference: {"records": {...}, "points": {grade_id: points}}."""
    # the notebook this process planned (grader.canonical.to_run), read only; a copy if it came as JSON data
    plan = request.notebook if isinstance(request.notebook, nbformat.NotebookNode) else nbformat.from_dict(request.notebook)
    limits = request.sandbox_limits()
    if result.error:  # the executor never ran it: no records, no flag
        notes = [f"not run: {result.error}"]
        scores, details = records.cell_scores({}, reference["records"], reference["points"])
        return Scored(plan, scores, details, notes=notes, seconds=result.seconds)
    notebook, notes = executed_notebook(result.notebook if result.report_ok else None, plan)
    stopped = result.returncode is None  # killed at the notebook's time limit
    if not result.report_ok:
        notes.append("the notebook was stopped at its time limit" if stopped else
                     "the grading process was killed or its report was unreadable (tampering?); "
                     "nothing could be graded")
    student, problems = records.load_bundle_records(result.records)
    notes += [f"ignored a malformed record ({p})" for p in problems[:5]]
    for event in result.events:
        if type(event) is dict:
            notes.append(describe(event, plan.cells, limits))
            stopped = stopped or event.get("event") in STOPPING_EVENTS
    if not result.processes_limited and request.sandboxed:
        notes.append("process count not capped (no writable pids cgroup on this machine)")
    if not result.report_ok and not stopped:
        tampering = ["the grading process inside the sandbox was killed or sent a malformed report"]
    else:  # a run cut short never reaches the canaries
        tampering = [] if stopped else canonical.canaries_ok(notebook, request.nonce)
    notes += [f"tampering suspected: {t}" for t in tampering]
    scores, details = records.cell_scores(student, reference["records"], reference["points"])
    return Scored(notebook, scores, details, student, notes, flagged=bool(tampering),
                  seconds=round(result.seconds, 1), log=result.log)
