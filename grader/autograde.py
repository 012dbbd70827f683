"""Grade a class: every submission runs in its own sandbox on a bounded pool; scores are
decided here, in the trusted process, by comparing its records with the reference run's.

For each student folder: keep the upload byte for byte, read the notebook as data, rebuild
it on the canonical assignment, execute it in the sandbox, score it, keep the run (executed
notebook, events, log), and hand nbgrader a pre-scored notebook so that the gradebook,
manual grading, feedback and export work as usual. nbgrader never executes student code.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import canonical, execution, records, sandbox
from .pipeline import KERNEL, GraderError, Outcome, check_assignment, nbgrader_api, read_reference, write_report

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _linked(path: Path, folder: Path) -> bool:
    """Is path, or a folder between it and `folder`, a symbolic link? (Never followed: one could
    point at the solutions.)"""
    return any(p.is_symlink() for p in [path, *path.parents] if p == folder or folder in p.parents)


def find_notebook(folder: Path, name: str, outcome: Outcome) -> Path | None:
    expected = folder / f"{name}.ipynb"
    links = [p for p in folder.rglob("*.ipynb") if _linked(p, folder)]
    if links:
        outcome.notes.append("symbolic links ignored: " + ", ".join(str(p.relative_to(folder)) for p in links))
    if expected.is_file() and not _linked(expected, folder):
        return expected
    found = sorted(p for p in folder.rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts and p.is_file() and not _linked(p, folder))
    if len(found) == 1:
        outcome.notes.append(f"notebook was named {found[0].relative_to(folder)}; graded as {name}.ipynb")
        return found[0]
    outcome.status = "missing"
    if found:
        outcome.notes.append(f"{len(found)} notebooks and none named {name}.ipynb: "
                             + ", ".join(str(p.relative_to(folder)) for p in found))
    else:
        outcome.notes.append(f"no notebook in the submission (expected {name}.ipynb)")
    return None


def load_submission(path: Path, outcome: Outcome) -> nbformat.NotebookNode | None:
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        outcome.status = "ungradable"
        outcome.notes.append(f"notebook is {size / 2**20:.1f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit")
        return None
    try:
        with warnings.catch_warnings():  # duplicated cell ids are fixed on the way in
            warnings.simplefilter("ignore")
            nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
            nbformat.validate(nb)
    except Exception as err:  # invalid JSON, invalid UTF-8, not a notebook
        outcome.status = "ungradable"
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        outcome.notes.append(f"not a valid notebook file ({type(err).__name__}: {first[:200]})")
        return None
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        outcome.notes.append(f"kernel was {kernel!r}; graded with python3")
        nb.metadata["kernelspec"] = dict(KERNEL)
    return nb


@dataclass
class Job:
    student: str
    outcome: Outcome
    run_nb: nbformat.NotebookNode | None = None
    nonce: dict | None = None


def _prepare(folder: Path, name: str, course: Path, release: nbformat.NotebookNode,
             source: nbformat.NotebookNode) -> Job:
    outcome = Outcome(student=folder.name)
    job = Job(folder.name, outcome)
    if not folder.is_dir() or folder.is_symlink():
        outcome.status = "ungradable"
        outcome.notes.append("a file, not a student folder: an upload must sit in a folder named by the student id")
        return job
    if not STUDENT_ID.match(folder.name):
        outcome.status = "ungradable"
        outcome.notes.append("the folder name is not a valid student id (letters, digits, _ . @ + -)")
        return job
    kept = course / "uploads" / name / folder.name
    if kept.exists():
        shutil.rmtree(kept)
    shutil.copytree(folder, kept, symlinks=True)  # the original upload, byte for byte
    path = find_notebook(kept, name, outcome)
    if path is None:
        return job
    outcome.upload, outcome.upload_sha256 = str(path), sha256(path)
    nb = load_submission(path, outcome)
    if nb is not None:
        job.run_nb, job.nonce = canonical.to_run(nb, release, source)
    return job


def _execute(job: Job, name: str, limits: sandbox.Limits, sandboxed: bool,
             reference: dict) -> tuple[nbformat.NotebookNode, dict[str, float]]:
    """Runs in a worker thread: execute in the sandbox and score from the records."""
    run = execution.execute(job.run_nb, f"{name}.ipynb", limits, sandboxed=sandboxed)
    scores, details = records.cell_scores(run.records, reference["records"], reference["points"])
    job.outcome.notes += run.events
    if not run.processes_limited and sandboxed:
        job.outcome.notes.append("process count not capped (no writable pids cgroup on this machine)")
    if not run.report_ok and not run.stopped:
        tampering = ["the grading process inside the sandbox was killed or sent a malformed report"]
    else:  # a run cut short never reaches the canaries
        tampering = [] if run.stopped else canonical.canaries_ok(run.notebook, job.nonce)
    if tampering:
        job.outcome.flagged = True
        job.outcome.notes += [f"tampering suspected: {t}" for t in tampering]
    job.outcome.seconds = round(run.seconds, 1)
    return run.notebook, scores, details, run.log


def _keep_run(course: Path, name: str, job: Job, executed: nbformat.NotebookNode, log: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    folder = course / "runs" / name / job.student / stamp
    folder.mkdir(parents=True)
    (folder / "executed.ipynb").write_text(json.dumps(executed, indent=1))  # as it ran, unvalidated
    (folder / "run.json").write_text(json.dumps({"notes": job.outcome.notes, "seconds": job.outcome.seconds,
                                                 "upload_sha256": job.outcome.upload_sha256}, indent=2))
    (folder / "runner.log").write_text(log)
    return folder


def autograde(name: str, submissions: Path, course: Path, limits: sandbox.Limits | None = None,
              workers: int | None = None, allow_unsandboxed: bool = False) -> list[Outcome]:
    """Grade every student folder in `submissions`; a bad one is reported and the batch goes on."""
    check_assignment(name)
    limits = limits or sandbox.Limits()
    release_path = course / "release" / name / f"{name}.ipynb"
    if not release_path.is_file():
        raise GraderError(f"{name} has not been released in {course}: run `python -m grader release {name}` first")
    reason = sandbox.unavailable_reason()
    if reason and not allow_unsandboxed:
        raise GraderError(f"refusing to run untrusted notebooks without a sandbox: {reason}. "
                          "Install bubblewrap, or pass --unsafe-no-sandbox to grade work you trust.")
    submissions = Path(submissions).resolve()
    if not submissions.is_dir():
        raise GraderError(f"the submissions folder {submissions} does not exist")
    release = nbformat.read(release_path, as_version=4)
    source = nbformat.read(course / "source" / name / f"{name}.ipynb", as_version=4)
    reference = read_reference(course, name)
    folders = sorted(submissions.iterdir())
    outcomes = {folder.name: Outcome(student=folder.name) for folder in folders}
    api = nbgrader_api(course)
    pool = sandbox.LocalPool(workers)

    def work(folder: Path):  # in a worker thread: intake, then the sandboxed run
        job = _prepare(folder, name, course, release, source)
        return job, (_execute(job, name, limits, reason is None, reference) if job.run_nb is not None else None)

    for folder, result in pool.map_unordered(work, folders):
        if isinstance(result, Exception):
            outcome = outcomes[folder.name]
            outcome.status = "error"
            outcome.notes.append(f"the grader failed on this submission: {type(result).__name__}: {result}")
            continue
        job, ran = result
        outcomes[folder.name] = job.outcome
        if ran is None:
            continue
        executed, scores, details, log = ran
        _keep_run(course, name, job, executed, log)
        graded = canonical.to_graded(executed, release, scores, details)
        target = course / "submitted" / job.student / name / f"{name}.ipynb"
        if target.parent.exists():
            shutil.rmtree(target.parent)
        target.parent.mkdir(parents=True)
        nbformat.write(graded, target)
        done = api.autograde(name, job.student, force=True, create=True)  # book-keeping only: no execution
        if not done["success"]:
            job.outcome.status = "error"
            lines = (done.get("log") or "").strip().splitlines()
            job.outcome.notes.append("nbgrader could not record the grades: " + (lines[-1] if lines else "no log"))
            continue
        _read_scores(api, name, job.outcome)
    ordered = [outcomes[folder.name] for folder in folders]
    write_report(course, name, ordered)
    return ordered


def _read_scores(api, name: str, outcome: Outcome) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(api.coursedir.db_url) as gb:
        sub = gb.find_submission(name, outcome.student)
        outcome.score, outcome.max_score = float(sub.score), float(sub.max_score)
        outcome.needs_manual_grade = bool(sub.needs_manual_grade)
