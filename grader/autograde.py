"""Grade a class: intake -> run -> score -> record, with plain data between the stages.

    for each student folder   trusted.Stages.take    (trusted)  upload kept, hashed, canonical RunRequest
    on an executor            execution.run          (sandbox)  RunRequest -> RunResult
    as each result arrives    trusted.Stages.judge   (trusted)  RunResult + reference -> scores, files, notes
    in batches                gradebook.GradebookWriter         scores -> nbgrader's gradebook, one writer

Intake and scoring run in this process, or for a large class in several processes of this
machine (grader.stagepool); recording is this process's alone.

The executor is a parameter (grader.executors.Executor); the local pool is the default. Only
RunRequests reach it: the reference results, the gradebook and the course directory stay in
this process. Every run is kept as COURSE/runs/NAME/STUDENT/TIME.ipynb, the report in
COURSE/reports/NAME.json.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

import nbformat
from tqdm import tqdm

from utils import system

from . import intake, sandbox, stagepool
from .executors import Executor, LocalPool
from .gradebook import GradebookWriter
from .late import Deadlines
from .messages import RunRequest, RunResult
from .pipeline import check_assignment, check_database, db_url, read_reference
from .report import GraderError, Outcome, write_report
from .trusted import Judged, Stages

BATCH_SIZE = 32  # submissions per gradebook transaction
BATCH_SECONDS = 10.0  # or fewer, when results come in slowly


def recorded_log(course: Path, name: str) -> Path:
    """COURSE/runs/NAME.recorded.jsonl: a line per outcome written to the gradebook, the last one
    per student counts. (Beside the students' folders, not among them: any name could be a student's.)"""
    return course / "runs" / f"{name}.recorded.jsonl"


def recorded(course: Path, name: str) -> dict[str, dict]:
    """student -> {"key": ..., "outcome": {...}}: what this command last wrote to the gradebook for
    each student. Lines are appended after each commit; a line torn by a crash is skipped (its
    submissions are simply graded again)."""
    path = recorded_log(course, name)
    entries = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            entry = json.loads(line)
            entries[entry["outcome"]["student"]] = entry
        except (ValueError, KeyError, TypeError):
            continue
    return entries


def late_fields(outcome: Outcome) -> dict:
    return {"submitted_at": outcome.submitted_at, "days_late": outcome.days_late, "late_penalty": outcome.late_penalty}


def lost(result: RunResult) -> bool:
    """Did the run end without a report, though not at its time limit? (The runner was killed: by
    the student's code, or by the host, e.g. its out-of-memory killer or an operator.)"""
    return not result.error and not result.report_ok and result.returncode is not None


class Batch:
    """One autograde run of one assignment: the coordinator's state between the stages."""

    def __init__(self, stages: Stages, regrade: bool = False) -> None:
        self.stages, self.regrade = stages, regrade
        self.name, self.course = stages.name, stages.course
        # What a recorded grade depends on besides the upload: the same key, the same grade.
        self.key = intake.sha256(json.dumps({"release": stages.assignment.release, "source": stages.assignment.source,
                                             "reference": stages.reference, "limits": asdict(stages.limits)},
                                            sort_keys=True).encode())
        self.outcomes: dict[str, Outcome] = {}
        self.requests: dict[str, RunRequest] = {}
        self.retries: list[RunRequest] = []  # runs that came back without a report, to run once more
        self.trusted_seconds: dict[str, float] = {}  # CPU seconds per submission: intake + score + record
        self.timings: dict[str, dict] = {}  # per submission: where the run's time went
        self.recorded = {} if regrade else recorded(self.course, self.name)

    def _charge(self, student: str, seconds: float) -> None:
        self.trusted_seconds[student] = self.trusted_seconds.get(student, 0.0) + seconds

    def requests_for(self, taken: Iterable[tuple[Path, intake.Intake, float]], writer: GradebookWriter) -> Iterator[RunRequest]:
        """The intake stage's results (folder, Intake, CPU seconds), lazily: one request per notebook worth running."""
        for folder, took, seconds in taken:
            self.outcomes[folder.name] = took.outcome
            if took.request is not None and (earlier := self._recorded(took.outcome, writer)) is not None:
                self.outcomes[folder.name] = earlier  # graded and recorded by an earlier, interrupted run
                took.request = None
            self._charge(folder.name, seconds)
            if took.request is not None:
                self.requests[took.request.id] = took.request
                yield took.request

    def _recorded(self, outcome: Outcome, writer: GradebookWriter) -> Outcome | None:
        """The outcome already in the gradebook for this very upload, if this command recorded one,
        with the gradebook's totals as they are now (a grader may have added manual points)."""
        kept = self.recorded.get(outcome.student)
        try:
            if kept is None or kept["key"] != self.key or kept["outcome"]["upload_sha256"] != outcome.upload_sha256:
                return None
            if [kept["outcome"].get(k, v) for k, v in late_fields(outcome).items()] != list(late_fields(outcome).values()):
                return None  # handed in at another time, or the due date or policy changed: graded again
            earlier = Outcome(**kept["outcome"])
        except (KeyError, TypeError):
            return None
        if not (total := writer.totals([outcome.student]).get(outcome.student)):
            return None  # no longer in the gradebook
        earlier.score, earlier.max_score = total.score, total.max_score
        earlier.needs_manual_grade = total.needs_manual_grade
        earlier.notes = [*earlier.notes, "already graded for this upload: not run again (--regrade runs it)"]
        return earlier

    def admit(self, result: RunResult) -> tuple[Outcome, RunRequest] | None:
        """A result worth scoring, with its outcome and request; None if it is not ours, is to run
        again, or never ran (its outcome says so)."""
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
        self.timings[result.id] = result.timings
        return outcome, request

    def accept(self, outcome: Outcome, judged: Judged, writer: GradebookWriter) -> Outcome | None:
        """The score stage's verdict into the outcome; its gradebook values queued in the writer."""
        outcome.notes += judged.notes
        outcome.flagged, outcome.seconds = judged.flagged, judged.seconds
        self._charge(outcome.student, judged.cpu)
        if judged.pending is None:
            outcome.status = "error"
            return None
        writer.add(judged.pending)
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
        # In the gradebook now: a rerun of this command after a crash need not run them again.
        log = recorded_log(self.course, self.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            out.write("".join(json.dumps({"key": self.key, "outcome": o.row()}) + "\n" for o in queued))
        share = (time.thread_time() - start) / len(queued)
        for outcome in queued:
            self._charge(outcome.student, share)



def autograde(name: str, submissions: Path, course: Path, limits: sandbox.Limits | None = None,
              workers: int | None = None, allow_unsandboxed: bool = False,
              executor: Executor | None = None, profile: dict | None = None, regrade: bool = False,
              trusted_processes: int | None = None) -> list[Outcome]:
    """Grade every entry of `submissions` (one folder per student); a bad one is reported and the batch goes on.

    An upload already graded and recorded by this command (same bytes, same release, reference
    and limits) is not run again, so a batch interrupted by a crash resumes; `regrade` runs
    every submission anyway.

    Intake and scoring run in `trusted_processes` processes of this machine (default: one per
    core, at most 4, for a class of 200 or more; else in this process).

    `profile`, if given, receives the trusted side's CPU seconds and the run timings per submission.
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
        raise GraderError(f"the submissions folder {submissions} does not exist (for an LMS download, run "
                          f"`python -m grader collect {name} --download ZIP --roster CSV` first)")
    check_database(db_url(course))  # before any work: a batch that cannot be recorded is not started
    try:
        getattr(executor, "check", lambda: None)()
    except ConnectionError as err:
        raise GraderError(str(err)) from None
    assignment = intake.Assignment(name, nbformat.read(release_path, as_version=4),
                                   nbformat.read(course / "source" / name / f"{name}.ipynb", as_version=4))
    folders = sorted(submissions.iterdir())
    with GradebookWriter(db_url(course), name) as writer:
        deadlines = Deadlines.read(course)
        writer.set_duedate(deadlines.due.get(name))
        stages = Stages(name, course, assignment, read_reference(course, name), writer.layout, limits,
                        sandboxed=reason is None, deadlines=deadlines, max_score=writer.max_score)
        batch = Batch(stages, regrade)
        runner = stagepool.runner(stages, stagepool.processes_for(len(folders), trusted_processes))
        queued, last = [], time.perf_counter()
        bar = tqdm(total=len(folders), desc=f"grading {name}", unit="submission", disable=system.is_quiet(),
                   file=sys.stderr, smoothing=0.1)

        def accept(block: bool = False) -> None:
            for outcome, judged in runner.judged(block):
                if batch.accept(outcome, judged, writer) is not None:
                    queued.append(outcome)

        try:
            # Every submission once; then, once more, each whose run was lost (a second loss is scored as it is).
            for requests in (batch.requests_for(runner.take(folders), writer), batch.retries):
                for result in executor.map_unordered(requests):
                    retries = len(batch.retries)
                    if (admitted := batch.admit(result)) is not None:
                        runner.judge(*admitted, result)
                    accept()
                    bar.update(len(batch.retries) == retries)  # a run sent again is not done yet
                    if len(queued) >= BATCH_SIZE or time.perf_counter() - last > BATCH_SECONDS:
                        batch.record(queued, writer)
                        queued, last = [], time.perf_counter()
        finally:  # what was scored is recorded, even when the executor gives up (a rerun resumes from it)
            try:
                accept(block=True)
            finally:
                runner.close()
                batch.record(queued, writer)
                bar.update(bar.total - bar.n)  # those with nothing to run
                bar.close()
    for student in list(batch.requests):  # an executor that never answered for these
        outcome = batch.outcomes[student]
        outcome.status = "error"
        outcome.notes.append("no result came back from the executor; grade again to retry")
    ordered = [batch.outcomes.get(f.name) or Outcome(student=f.name, status="error") for f in folders]
    write_report(course, name, ordered)
    if profile is not None:
        profile.update(trusted_seconds=batch.trusted_seconds, timings=batch.timings)
    return ordered
