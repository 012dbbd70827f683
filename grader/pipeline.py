"""The instructor pipeline: release, autograde, feedback, export, each a function of a course directory.

A course directory is nbgrader's: source/, release/, submitted/, autograded/, feedback/ and
gradebook.db, plus uploads/ (every original upload, byte for byte) and reports/ (one JSON
report per autograde run). It lives outside the repository, where the instructor chooses.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jupytext
import nbformat
from nbgrader import utils as nbutils
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from . import canonical, execution, sandbox

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
CONFIG_FILE = Path(__file__).resolve().parent / "nbgrader_config.py"
SECRET_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
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


def check_assignment(name: str, solutions: Path = SOLUTIONS) -> Path:
    md = solutions / f"{name}.md"
    if not md.is_file():
        raise GraderError(f"unknown assignment {name!r}; the repository has {', '.join(assignments()) or 'none'}")
    return md


# --- release -----------------------------------------------------------------------------------

def source_notebook(name: str, solutions: Path = SOLUTIONS) -> nbformat.NotebookNode:
    """solutions/NAME.md as an nbgrader source notebook, without jupytext metadata."""
    nb = jupytext.read(check_assignment(name, solutions))
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = dict(KERNEL)
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def self_test(nb: nbformat.NotebookNode, name: str) -> tuple[list[str], dict]:
    """Run a source notebook (with its solutions) through the grading runner, in the sandbox when
    there is one. Returns the problems (every test must pass and record at least one value) and
    the reference: the records of every probe and the points of every autograded test cell."""
    run_nb, nonce = canonical.to_run(nb, nb, nb)
    run = execution.execute(run_nb, f"{name}.ipynb", sandbox.Limits(), sandboxed=sandbox.unavailable_reason() is None)
    problems = list(run.events) + canonical.canaries_ok(run.notebook, nonce)
    for cell in run.notebook.cells:
        tag = cell.metadata.get(canonical.TAG, {})
        if tag.get("role") in ("answer", "visible", "probe", "locked"):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    problems.append(f"cell {tag.get('grade_id')}: {out.get('ename')}: {out.get('evalue')}")
    points = {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"]) for c in nb.cells
              if nbutils.is_grade(c) and not nbutils.is_solution(c)}
    for grade_id in points:
        if not any(n.split("/", 1)[0] == grade_id for n in run.records):
            problems.append(f"test {grade_id} records nothing: its hidden part must call checks.record(...)")
    for rec_name, rec in run.records.items():
        if rec["kind"] not in ("tensor", "json"):
            problems.append(f"record {rec_name} of the solution is {rec['kind']}: {rec.get('value')}")
        if rec_name.split("/", 1)[0] not in points:
            problems.append(f"record {rec_name} does not name an autograded test cell")
    return problems, {"records": run.records, "points": points}


def read_reference(course: Path, name: str) -> dict:
    path = course / "reference" / f"{name}.json"
    if not path.is_file():
        raise GraderError(f"no reference results for {name}: run `python -m grader release {name}` again")
    return json.loads(path.read_text())


def release(name: str, course: Path, solutions: Path = SOLUTIONS) -> Path:
    """Build the student version of assignment `name`; refuse if its solution fails its own tests."""
    nb = source_notebook(name, solutions)
    problems, reference = self_test(nb, name)
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
    ref = course / "reference" / f"{name}.json"
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(json.dumps(reference))
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
    flagged: bool = False  # the kernel was tampered with (the score is unaffected: it gains nothing)
    seconds: float = 0.0


def write_report(course: Path, name: str, outcomes: list[Outcome]) -> Path:
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
