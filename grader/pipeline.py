"""The instructor pipeline: release, autograde, feedback, export, each a function of a course directory.

A course directory is nbgrader's: source/, release/, submitted/, autograded/, feedback/ and
gradebook.db, plus uploads/ (every original upload, byte for byte) and reports/ (one JSON
report per autograde run). It lives outside the repository, where the instructor chooses.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError
from nbgrader import utils as nbutils
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
CONFIG_FILE = Path(__file__).resolve().parent / "nbgrader_config.py"
SECRET_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}

# nbgrader's own SQLAlchemy session warnings say nothing an instructor can act on.
warnings.filterwarnings("ignore", message=".*not in session.*")

# nbgrader runs the `alembic` command of its environment; find it without an activated venv.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")


class GraderError(RuntimeError):
    """A step cannot go on; the message says why and what to do."""


# --- course directory and nbgrader ---------------------------------------------------------

def course_dir(path: str | os.PathLike | None) -> Path:
    """The course directory: the path given, else $DLCOURSE_COURSE_DIR; never inside the repo."""
    raw = path or os.environ.get("DLCOURSE_COURSE_DIR")
    if not raw:
        raise GraderError("no course directory: pass --course DIR or set DLCOURSE_COURSE_DIR")
    root = Path(raw).expanduser().resolve()
    if root == REPO or REPO in root.parents:
        raise GraderError(f"the course directory {root} is inside the repository; choose a folder outside it, "
                          "so that gradebooks and submissions never end up in git")
    root.mkdir(parents=True, exist_ok=True)
    return root


def nbgrader_api(course: Path):
    """An NbGraderAPI for `course`, configured by grader/nbgrader_config.py."""
    from nbgrader.apps import NbGraderAPI

    config = PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()
    config.merge(Config({"CourseDirectory": {"root": str(course)}}))
    (course / "nbgrader_config.py").write_text(
        "# Written by `python -m grader`: plain nbgrader commands run here use the course's configuration.\n"
        f"load_subconfig({str(CONFIG_FILE)!r})\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
    )
    return NbGraderAPI(config=config)


def assignments() -> list[str]:
    """Every assignment in the repository: the names of solutions/*.md."""
    return sorted(p.stem for p in SOLUTIONS.glob("*.md"))


def _check_assignment(name: str, solutions: Path = SOLUTIONS) -> Path:
    md = solutions / f"{name}.md"
    if not md.is_file():
        raise GraderError(f"unknown assignment {name!r}; the repository has {', '.join(assignments()) or 'none'}")
    return md


# --- release -----------------------------------------------------------------------------------

def source_notebook(name: str, solutions: Path = SOLUTIONS) -> nbformat.NotebookNode:
    """solutions/NAME.md as an nbgrader source notebook, without jupytext metadata."""
    nb = jupytext.read(_check_assignment(name, solutions))
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = dict(KERNEL)
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def self_test(nb: nbformat.NotebookNode, timeout: int = 300) -> list[str]:
    """Run a source notebook (with its solutions) and list every test that does not give full marks."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # a deep copy
    with tempfile.TemporaryDirectory() as tmp, _environ(NBGRADER_EXECUTION="validate"):
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                           resources={"metadata": {"path": tmp}}).execute()
        except (CellExecutionError, DeadKernelError, TimeoutError) as err:
            return [f"the solution notebook did not run to the end: {type(err).__name__}: {err}"]
    problems = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                if out.output_type == "error":
                    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "?")
                    problems.append(f"cell {grade_id}: {out.ename}: {out.evalue}")
        if nbutils.is_grade(cell) and not nbutils.is_solution(cell):
            score, max_score = nbutils.determine_grade(cell)
            if score != max_score:
                problems.append(f"test {cell.metadata.nbgrader['grade_id']} gives {score} of {max_score} points")
    return problems


@contextmanager
def _environ(**values: str):
    """Set environment variables for the kernels started inside the block."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def release(name: str, course: Path, solutions: Path = SOLUTIONS) -> Path:
    """Build the student version of assignment `name`; refuse if its solution fails its own tests."""
    nb = source_notebook(name, solutions)
    problems = self_test(nb)
    if problems:
        raise GraderError(f"{name}: the solution fails its own tests, nothing released:\n  " + "\n  ".join(problems))
    src = course / "source" / name / f"{name}.ipynb"
    src.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, src)
    result = nbgrader_api(course).generate_assignment(name, force=True, create=True)
    if not result["success"]:
        raise GraderError(f"{name}: nbgrader could not generate the release:\n{result.get('error') or result.get('log')}")
    out = course / "release" / name / f"{name}.ipynb"
    text = out.read_text()
    leaked = [m for m in SECRET_MARKERS if m in text]
    if leaked or "jupytext" in nbformat.reads(text, 4).metadata:
        raise GraderError(f"{name}: the release still holds {leaked or 'jupytext metadata'}; it was not published")
    return out


# --- autograde ---------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What happened to one student's submission."""

    student: str
    status: str = "graded"  # graded | ungradable | missing | error
    score: float = 0.0
    max_score: float = 0.0
    needs_manual_grade: bool = False
    notes: list[str] = field(default_factory=list)
    upload_sha256: str = ""
    upload: str = ""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _find_notebook(folder: Path, name: str, outcome: Outcome) -> Path | None:
    expected = folder / f"{name}.ipynb"
    if expected.is_file():
        return expected
    found = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
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


def _load_submission(path: Path, outcome: Outcome) -> nbformat.NotebookNode | None:
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        outcome.status = "ungradable"
        outcome.notes.append(f"notebook is {size / 2**20:.1f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit")
        return None
    try:
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


def _kernel_death(course: Path, name: str, student: str) -> str | None:
    """Where the kernel died, read from the autograded notebook, if it did."""
    path = course / "autograded" / student / name / f"{name}.ipynb"
    if not path.is_file():
        return None
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and out.get("ename") in ("DeadKernelError", "CellTimeoutError"):
                return f"{out.ename} at cell {i}: {out.get('evalue', '')}".strip()
    return None


def autograde(name: str, submissions: Path, course: Path) -> list[Outcome]:
    """Grade every student folder in `submissions`; a bad one is reported and the batch goes on.

    The uploads are copied byte for byte into course/uploads/NAME/STUDENT first and never
    changed. Returns one Outcome per folder and writes course/reports/NAME.json.
    """
    _check_assignment(name)
    if not (course / "release" / name / f"{name}.ipynb").is_file():
        raise GraderError(f"{name} has not been released in {course}: run `python -m grader release {name}` first")
    submissions = Path(submissions).resolve()
    if not submissions.is_dir():
        raise GraderError(f"the submissions folder {submissions} does not exist")
    api = nbgrader_api(course)
    outcomes = []
    for folder in sorted(p for p in submissions.iterdir()):
        outcome = Outcome(student=folder.name)
        outcomes.append(outcome)
        if not folder.is_dir():
            outcome.status = "ungradable"
            outcome.notes.append("a file, not a student folder: an upload must sit in a folder named by the student id")
            continue
        if not STUDENT_ID.match(folder.name):
            outcome.status = "ungradable"
            outcome.notes.append("the folder name is not a valid student id (letters, digits, _ . @ + -)")
            continue
        kept = course / "uploads" / name / folder.name
        if kept.exists():
            shutil.rmtree(kept)
        shutil.copytree(folder, kept, symlinks=True)
        path = _find_notebook(kept, name, outcome)
        if path is None:
            continue
        outcome.upload, outcome.upload_sha256 = str(path), _sha256(path)
        nb = _load_submission(path, outcome)
        if nb is None:
            continue
        target = course / "submitted" / folder.name / name / f"{name}.ipynb"
        if target.parent.exists():
            shutil.rmtree(target.parent)
        target.parent.mkdir(parents=True)
        nbformat.write(nb, target)
        result = api.autograde(name, folder.name, force=True, create=True)
        death = _kernel_death(course, name, folder.name)
        if death:
            outcome.notes.append(f"the kernel died or timed out ({death}); the tests after it score 0")
        if not result["success"]:
            outcome.status = "error"
            outcome.notes.append(_failure_reason(result.get("log", "") + (result.get("error") or "")))
            continue
        _read_scores(api, name, outcome)
    _write_report(course, name, outcomes)
    return outcomes


FAILURES = {  # what nbgrader's log says -> what the report says
    "DeadKernelError": "the kernel died while running the notebook (os._exit, a crash or running out of memory); "
                       "nothing could be graded",
    "CellTimeoutError": "a cell ran longer than the time limit; nothing could be graded",
    "TimeoutError": "a cell ran longer than the time limit; nothing could be graded",
    "MissingEntry": "the notebook does not match the released assignment (cells were deleted or renamed)",
}


def _failure_reason(log: str) -> str:
    for needle, reason in FAILURES.items():
        if needle in log:
            return reason
    lines = [ln.strip() for ln in log.strip().splitlines() if ln.strip() and "Please see the" not in ln]
    return "autograding failed: " + (lines[-1][:300] if lines else "no log")


def _read_scores(api, name: str, outcome: Outcome) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(api.coursedir.db_url) as gb:
        sub = gb.find_submission(name, outcome.student)
        outcome.score, outcome.max_score = float(sub.score), float(sub.max_score)
        outcome.needs_manual_grade = bool(sub.needs_manual_grade)


def _write_report(course: Path, name: str, outcomes: list[Outcome]) -> Path:
    path = course / "reports" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    return path


def read_report(course: Path, name: str) -> list[Outcome]:
    path = course / "reports" / f"{name}.json"
    if not path.is_file():
        raise GraderError(f"no autograde report for {name} in {course}: run `python -m grader autograde {name}` first")
    return [Outcome(**row) for row in json.loads(path.read_text())]


# --- feedback and export -----------------------------------------------------------------------

def feedback(name: str, course: Path) -> list[Path]:
    """One HTML feedback file per graded student, with no hidden test source and no traceback."""
    graded = [o.student for o in read_report(course, name) if o.status == "graded"]
    api = nbgrader_api(course)
    files = []
    for student in graded:
        result = api.generate_feedback(name, student, force=True)
        if not result["success"]:
            raise GraderError(f"feedback for {student} failed:\n{result.get('error') or result.get('log')}")
        html = course / "feedback" / student / name / f"{name}.html"
        text = html.read_text()
        if any(m in text for m in SECRET_MARKERS):
            html.unlink()
            raise GraderError(f"feedback for {student} still showed hidden test markers; it was deleted")
        files.append(html)
    return files


def export(name: str, course: Path, to: Path | None = None) -> Path:
    """Grades of every submission in the last autograde report as CSV (one row per student)."""
    outcomes = read_report(course, name)
    api = nbgrader_api(course)
    to = Path(to) if to else course / "exports" / f"{name}.csv"
    to.parent.mkdir(parents=True, exist_ok=True)
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(api.coursedir.db_url) as gb, to.open("w", newline="") as f:
        max_score = float(gb.find_assignment(name).max_score)
        writer = csv.writer(f)
        writer.writerow(["student_id", "assignment", "status", "score", "max_score", "needs_manual_grade", "notes"])
        for o in outcomes:
            score, manual = 0.0, False
            if o.status == "graded":
                try:  # read again: manual grades entered after autograding count
                    sub = gb.find_submission(name, o.student)
                    score, manual = float(sub.score), bool(sub.needs_manual_grade)
                except MissingEntry:
                    pass
            writer.writerow([o.student, name, o.status, f"{score:g}", f"{max_score:g}", manual, "; ".join(o.notes)])
    return to
