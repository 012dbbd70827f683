"""Grade a class: intake -> run -> score -> record, with plain data between the stages.

    for each student folder   intake.intake        (trusted)  upload kept, hashed, canonical RunRequest
    on an executor            execution.run        (sandbox)  RunRequest -> RunResult
    as each result arrives    scoring.score        (trusted)  RunResult + reference -> scores, notes, flags
    in batches                gradebook.GradebookWriter       scores -> nbgrader's gradebook, one writer

The executor is a parameter (grader.executors.Executor); the local pool is the default. Only
RunRequests reach it: the reference results, the gradebook and the course directory stay in
this process. Every run is kept in COURSE/runs/NAME/STUDENT/TIME/, the report in
COURSE/reports/NAME.json.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat

from . import canonical, intake, redact, sandbox, scoring
from .executors import Executor, LocalPool
from .gradebook import GradebookWriter, overwrite_cells
from .messages import RunRequest, RunResult
from .pipeline import check_assignment, check_database, db_url, read_reference
from .report import GraderError, Outcome, write_report

BATCH_SIZE = 32  # submissions per gradebook transaction
BATCH_SECONDS = 10.0  # or fewer, when results come in slowly
RECORDED = "recorded.json"  # in COURSE/runs/NAME/STUDENT/: the outcome last written to the gradebook


def _notebook_json(nb: dict) -> str:
    """A notebook as nbformat's JSON, compact: Python's C encoder, where nbformat.writes (indented,
    deep-copied) took a quarter of the coordinator's time. Jupyter and nbgrader read both alike.
    ASCII only, so that a lone surrogate in a student's output cannot fail the write."""
    nbformat.v4.rwbase.strip_transient(nb)
    return json.dumps(nb, sort_keys=True, separators=(",", ":")) + "\n"


def _keep_run(course: Path, name: str, outcome: Outcome, scored: scoring.Scored) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    folder = course / "runs" / name / outcome.student / stamp
    folder.mkdir(parents=True)
    (folder / "executed.ipynb").write_text(_notebook_json(scored.notebook))  # as it ran
    (folder / "run.json").write_text(json.dumps({"notes": outcome.notes, "seconds": outcome.seconds,
                                                 "upload_sha256": outcome.upload_sha256}, indent=2))
    (folder / "runner.log").write_text(scored.log)
    return folder


def lost(result: RunResult) -> bool:
    """Did the run end without a report, though not at its time limit? (The runner was killed: by
    the student's code, or by the host, e.g. its out-of-memory killer or an operator.)"""
    return not result.error and not result.report_ok and result.returncode is not None


def _write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    if path.parent.exists():
        shutil.rmtree(path.parent)
    path.parent.mkdir(parents=True)
    # Without nbformat.write's schema check, which only logs: every cell here is the release's or
    # was validated when the submission and the run's report were read.
    path.write_text(_notebook_json(nb))


class Batch:
    """One autograde run of one assignment: the trusted side's state between the stages."""

    def __init__(self, name: str, course: Path, assignment: intake.Assignment, reference: dict,
                 limits: sandbox.Limits, sandboxed: bool, regrade: bool = False) -> None:
        self.name, self.course, self.assignment, self.reference = name, course, assignment, reference
        self.limits, self.sandboxed, self.regrade = limits, sandboxed, regrade
        # What a recorded grade depends on besides the upload: the same key, the same grade.
        self.key = intake.sha256(json.dumps({"release": assignment.release, "source": assignment.source,
                                             "reference": reference, "limits": asdict(limits)}, sort_keys=True).encode())
        self.secrets = redact.hidden_lines(assignment.source)
        self.outcomes: dict[str, Outcome] = {}
        self.requests: dict[str, RunRequest] = {}
        self.retries: list[RunRequest] = []  # runs that came back without a report, to run once more
        self.trusted_seconds: dict[str, float] = {}  # CPU seconds per submission: intake + score + record
        self.timings: dict[str, dict] = {}  # per submission: where the run's time went

    def _charge(self, student: str, start: float) -> None:
        """Add this thread's CPU time since `start` (time.thread_time) to the student's trusted cost."""
        self.trusted_seconds[student] = self.trusted_seconds.get(student, 0.0) + time.thread_time() - start

    def requests_for(self, folders: list[Path], writer: GradebookWriter) -> Iterator[RunRequest]:
        """The intake stage over every folder, lazily: one request per notebook worth running."""
        uploads = self.course / "uploads" / self.name
        for folder in folders:
            start = time.thread_time()
            try:
                taken = intake.intake(folder, self.assignment, uploads, self.limits, self.sandboxed)
            except Exception as err:  # e.g. an unreadable upload: report it, go on
                taken = intake.Intake(Outcome(student=folder.name, status="error",
                                              notes=[f"the grader failed on this submission: {type(err).__name__}: {err}"]))
            self.outcomes[folder.name] = taken.outcome
            if taken.request is not None and (earlier := self._recorded(taken.outcome, writer)) is not None:
                self.outcomes[folder.name] = earlier  # graded and recorded by an earlier, interrupted run
                taken.request = None
            self._charge(folder.name, start)
            if taken.request is not None:
                self.requests[taken.request.id] = taken.request
                yield taken.request

    def _recorded(self, outcome: Outcome, writer: GradebookWriter) -> Outcome | None:
        """The outcome already in the gradebook for this very upload, if this command recorded one,
        with the gradebook's totals as they are now (a grader may have added manual points)."""
        path = self.course / "runs" / self.name / outcome.student / RECORDED
        if self.regrade or not path.is_file():
            return None
        try:
            kept = json.loads(path.read_text())
            if kept["key"] != self.key or kept["outcome"]["upload_sha256"] != outcome.upload_sha256:
                return None
            earlier = Outcome(**kept["outcome"])
        except (ValueError, KeyError, TypeError):
            return None
        if not (total := writer.totals([outcome.student]).get(outcome.student)):
            return None  # no longer in the gradebook
        earlier.score, earlier.max_score = total.score, total.max_score
        earlier.needs_manual_grade = total.needs_manual_grade
        earlier.notes = [*earlier.notes, "already graded for this upload: not run again (--regrade runs it)"]
        return earlier

    def score(self, result: RunResult, writer: GradebookWriter) -> Outcome | None:
        """The score stage for one result, and the files it leaves; queues the gradebook write."""
        request = self.requests.pop(result.id, None)
        if request is None:  # not ours, or answered twice
            return None
        outcome = self.outcomes[result.id]
        if lost(result) and all(r.id != request.id for r in self.retries):  # a host fault must not cost an honest student
            outcome.notes.append("the first run ended without a report and was run again")
            self.retries.append(request)
            self.requests[request.id] = request
            return None
        if result.error:  # the run never happened: an error to report, not a grade of 0
            outcome.status = "error"
            outcome.notes.append(f"not run: {result.error}; grade again to retry")
            return None
        start = time.thread_time()
        try:
            scored = scoring.score(request, result, self.reference)
            outcome.notes += scored.notes
            outcome.flagged, outcome.seconds = scored.flagged, scored.seconds
            self.timings[result.id] = result.timings
            _keep_run(self.course, self.name, outcome, scored)
            graded = canonical.to_graded(scored.notebook, self.assignment.release, scored.scores, scored.details)
            redact.scrub_outputs(graded, self.secrets)
            path = f"{outcome.student}/{self.name}/{self.name}.ipynb"
            _write_notebook(graded, self.course / "submitted" / path)
            autograded = overwrite_cells(graded, writer.cells)
            _write_notebook(autograded, self.course / "autograded" / path)
            writer.add(outcome.student, autograded, scored.scores)
        except Exception as err:
            outcome.status = "error"
            outcome.notes.append(f"the grader failed on this submission: {type(err).__name__}: {err}")
            outcome = None
        self._charge(result.id, start)
        return outcome

    def record(self, queued: list[Outcome], writer: GradebookWriter) -> None:
        """The record stage: one transaction for the queued submissions; their totals into the outcomes."""
        if not queued:
            return
        start = time.thread_time()
        try:
            totals = writer.commit()
        except Exception as err:  # the gradebook refused the batch: say so for each, lose nothing else
            writer.gb.db.rollback()
            writer.pending = []
            for outcome in queued:
                outcome.status = "error"
                outcome.notes.append(f"the gradebook could not record the grades: {type(err).__name__}: {err}")
            return
        for outcome in queued:
            total = totals[outcome.student]
            outcome.score, outcome.max_score = total.score, total.max_score
            outcome.needs_manual_grade = total.needs_manual_grade
            # In the gradebook now: a rerun of this command after a crash need not run it again.
            kept = self.course / "runs" / self.name / outcome.student / RECORDED
            partial = kept.with_suffix(".partial")
            partial.write_text(json.dumps({"key": self.key, "outcome": asdict(outcome)}, indent=1))
            partial.replace(kept)
        share = (time.thread_time() - start) / len(queued)
        for outcome in queued:
            self.trusted_seconds[outcome.student] = self.trusted_seconds.get(outcome.student, 0.0) + share


def autograde(name: str, submissions: Path, course: Path, limits: sandbox.Limits | None = None,
              workers: int | None = None, allow_unsandboxed: bool = False,
              executor: Executor | None = None, profile: dict | None = None, regrade: bool = False) -> list[Outcome]:
    """Grade every entry of `submissions` (one folder per student); a bad one is reported and the batch goes on.

    An upload already graded and recorded by this command (same bytes, same release, reference
    and limits) is not run again, so a batch interrupted by a crash resumes; `regrade` runs
    every submission anyway.

    `profile`, if given, receives the trusted side's seconds and the run timings per submission.
    """
    check_assignment(name)
    limits = limits or sandbox.Limits()
    release_path = course / "release" / name / f"{name}.ipynb"
    if not release_path.is_file():
        raise GraderError(f"{name} has not been released in {course}: run `python -m grader release {name}` first")
    executor = executor or LocalPool(workers)
    # Runs on other machines are sandboxed there (each worker checks its own sandbox).
    reason = sandbox.unavailable_reason() if getattr(executor, "local", True) else None
    if reason and not allow_unsandboxed:
        raise GraderError(f"refusing to run untrusted notebooks without a sandbox: {reason}. "
                          "Install bubblewrap, or pass --unsafe-no-sandbox to grade work you trust.")
    submissions = Path(submissions).resolve()
    if not submissions.is_dir():
        raise GraderError(f"the submissions folder {submissions} does not exist")
    check_database(db_url(course))  # before any work: a batch that cannot be recorded is not started
    try:
        getattr(executor, "check", lambda: None)()
    except ConnectionError as err:
        raise GraderError(str(err)) from None
    assignment = intake.Assignment(name, nbformat.read(release_path, as_version=4),
                                   nbformat.read(course / "source" / name / f"{name}.ipynb", as_version=4))
    batch = Batch(name, course, assignment, read_reference(course, name), limits, sandboxed=reason is None,
                  regrade=regrade)
    folders = sorted(submissions.iterdir())
    with GradebookWriter(db_url(course), name) as writer:
        queued, last = [], time.perf_counter()
        try:
            # Every submission once; then, once more, each whose run was lost (a second loss is scored as it is).
            for requests in (batch.requests_for(folders, writer), batch.retries):
                for result in executor.map_unordered(requests):
                    if (outcome := batch.score(result, writer)) is not None:
                        queued.append(outcome)
                    if len(queued) >= BATCH_SIZE or time.perf_counter() - last > BATCH_SECONDS:
                        batch.record(queued, writer)
                        queued, last = [], time.perf_counter()
        finally:  # what was scored is recorded, even when the executor gives up (a rerun resumes from it)
            batch.record(queued, writer)
    for student in list(batch.requests):  # an executor that never answered for these
        outcome = batch.outcomes[student]
        outcome.status = "error"
        outcome.notes.append("no result came back from the executor; grade again to retry")
    ordered = [batch.outcomes.get(f.name) or Outcome(student=f.name, status="error") for f in folders]
    write_report(course, name, ordered)
    if profile is not None:
        profile.update(trusted_seconds=batch.trusted_seconds, timings=batch.timings)
    return ordered
