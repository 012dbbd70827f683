"""The trusted stages for one submission at a time.

    Stages.take(folder)                   intake: the upload kept and hashed, a RunRequest or why not
    Stages.judge(outcome, request, result)  score: the run judged and kept, the gradebook's values

Both depend only on their arguments and on the batch's fixed context (the assignment, its
reference results, the gradebook's cell layout), write only that submission's own files and
return plain data. The gradebook, the report and the resume records are grader.autograde's.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import canonical, intake, late, redact, sandbox, scoring
from .gradebook import Layout, Pending, overwrite_cells
from .messages import RunRequest, RunResult
from .report import Outcome

RUN = "dlcourse_run"  # the metadata of a kept run: notes, seconds, upload_sha256, the runner's log


def failed(err: BaseException) -> str:
    return f"the grader failed on this submission: {type(err).__name__}: {err}"


def notebook_json(nb: dict) -> str:
    """A notebook as nbformat's JSON, compact: Python's C encoder, where nbformat.writes (indented,
    deep-copied) took a quarter of the coordinator's time. Jupyter and nbgrader read both alike.
    ASCII only, so that a lone surrogate in a student's output cannot fail the write. (The few
    transient fields nbformat.writes drops, nbformat.read drops again on the way in.)"""
    return json.dumps(nb, sort_keys=True, separators=(",", ":")) + "\n"


def write_notebook(nb: dict, path: Path) -> None:
    """The notebook as the only file of its folder. A notebook already there (a regrade) is
    rewritten in place, not deleted and made again: a file system cannot hand out a new inode
    more cheaply than it rewrites one, and ext4 without a journal even skips, one by one, every
    inode freed in the last minutes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.scandir(path.parent) as listing:
        entries = list(listing)
    for entry in entries:  # whatever else an earlier tool left there
        if entry.name != path.name or not entry.is_file(follow_symlinks=False):
            shutil.rmtree(entry.path) if entry.is_dir(follow_symlinks=False) else os.unlink(entry.path)
    # Without nbformat.write's schema check, which only logs: every cell here is the release's or
    # was validated when the submission and the run's report were read.
    path.write_text(notebook_json(nb))


@dataclass
class Judged:
    """What the score stage gives back to the coordinator for one run."""

    notes: list[str]  # to add to the outcome's
    flagged: bool = False
    seconds: float = 0.0
    pending: Pending | None = None  # the gradebook's values; None: the grader failed (the last note says why)
    cpu: float = 0.0  # CPU seconds spent on it


@dataclass
class Stages:
    """One batch's per-submission trusted work."""

    name: str
    course: Path
    assignment: intake.Assignment
    reference: dict
    layout: Layout
    limits: sandbox.Limits
    sandboxed: bool
    deadlines: late.Deadlines = field(default_factory=late.Deadlines)
    max_score: float = 0.0
    secrets: list = field(init=False)

    def __post_init__(self) -> None:
        self.secrets = redact.hidden_lines(self.assignment.source)

    def take(self, folder: Path) -> intake.Intake:
        """The intake stage for one entry of the submissions folder."""
        try:
            taken = intake.intake(folder, self.assignment, self.course / "uploads" / self.name, self.limits,
                                  self.sandboxed)
        except Exception as err:  # e.g. an unreadable upload: report it, go on
            return intake.Intake(Outcome(student=folder.name, status="error", notes=[failed(err)]))
        if taken.request is not None:
            self._lateness(taken.outcome, late.read_timestamp(folder))
        return taken

    def _lateness(self, outcome: Outcome, submitted: dt.datetime | None) -> None:
        """The submission's time, and what the late policy takes off, into its outcome."""
        if submitted is None:
            return
        outcome.submitted_at = submitted.isoformat() + "Z"
        if (lateness := self.deadlines.late(self.name, outcome.student, submitted)) and lateness.seconds_late > 0:
            outcome.days_late, outcome.late_penalty = lateness.days_late, lateness.points(self.max_score)
            outcome.notes.append(f"handed in {lateness.days_late} day{'s' * (lateness.days_late != 1)} late "
                                 f"(due {lateness.due.isoformat()}Z): -{lateness.percent:g}% of the points, "
                                 f"{outcome.late_penalty:g} off")

    def judge(self, outcome: Outcome, request: RunRequest, result: RunResult) -> Judged:
        """The score stage for one run, and the files it leaves: the run as it ran (runs/), the
        graded notebook (submitted/) and what formgrader and feedback read (autograded/)."""
        start = time.thread_time()
        try:
            scored = scoring.score(request, result, self.reference)
            judged = Judged(scored.notes, scored.flagged, scored.seconds)
            self._keep_run(outcome.student, scored, [*outcome.notes, *scored.notes], outcome.upload_sha256)
            graded = canonical.to_graded(scored.notebook, self.assignment.release, scored.scores, scored.details)
            redact.scrub_outputs(graded, self.secrets)
            path = f"{outcome.student}/{self.name}/{self.name}.ipynb"
            write_notebook(graded, self.course / "submitted" / path)
            autograded = overwrite_cells(graded, self.layout.cells)
            for cell in autograded.cells:  # what formgrader shows: no hidden test code (its points stay)
                redact.hide_hidden(cell)
            write_notebook(autograded, self.course / "autograded" / path)
            judged.pending = self.layout.pending(outcome.student, autograded, scored.scores)
            self._late_fields(judged.pending, outcome)
        except Exception as err:
            judged = Judged([failed(err)])
        judged.cpu = time.thread_time() - start
        return judged

    def _late_fields(self, pending: Pending, outcome: Outcome) -> None:
        """nbgrader's own fields for lateness: the submission's timestamp and extension, the penalty."""
        if outcome.submitted_at:
            pending.timestamp = dt.datetime.fromisoformat(outcome.submitted_at.removesuffix("Z"))
            lateness = self.deadlines.late(self.name, outcome.student, pending.timestamp)
            pending.extension = lateness.extension if lateness else None
            pending.late_penalty = outcome.late_penalty if outcome.late_penalty else None

    def _keep_run(self, student: str, scored: scoring.Scored, notes: list[str], sha256: str) -> Path:
        """The run as it ran, one notebook per run: COURSE/runs/NAME/STUDENT/TIME.ipynb, with the
        notes, the upload's hash and the runner's log in its metadata."""
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.course / "runs" / self.name / student / f"{stamp}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        run = {"notes": notes, "seconds": scored.seconds, "upload_sha256": sha256, "log": scored.log}
        path.write_text(notebook_json({**scored.notebook, "metadata": {**scored.notebook.metadata, RUN: run}}))
        return path
