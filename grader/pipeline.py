"""The instructor pipeline around autograde: the course directory, release, feedback, export.

A course directory is nbgrader's: source/, release/, submitted/, autograded/, feedback/ and
gradebook.db, plus uploads/ (every original upload, byte for byte), runs/ (every sandboxed
run), reference/ (the solution's records) and reports/ (one JSON report per assignment). It
lives outside the repository, where the instructor chooses. (autograde: grader.autograde.)
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import jupytext
import nbformat
from nbgrader import utils as nbutils
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from utils import wire

from . import canonical, execution, scoring
from .intake import KERNEL
from .messages import RunRequest
from .redact import SECRET_MARKERS
from .report import GraderError, Outcome, read_report, redacted, write_report  # noqa: F401  (the pipeline's API)
from .sandbox import Limits, unavailable_reason

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
CONFIG_FILE = Path(__file__).resolve().parent / "nbgrader_config.py"
DB_ENV = "DLCOURSE_DB_URL"
DB_FILE = "gradebook.url"  # in a course directory: its gradebook's URL, when not the SQLite default

# nbgrader's own SQLAlchemy session warnings say nothing an instructor can act on.
warnings.filterwarnings("ignore", message=".*not in session.*")


@contextlib.contextmanager
def venv_on_path():
    """nbgrader runs the `alembic` command of its environment when it creates a gradebook: find it
    without an activated virtual environment, for the duration of the call only."""
    saved, bin_dir = os.environ.get("PATH", ""), str(Path(sys.executable).parent)
    if bin_dir not in saved.split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + saved
    try:
        yield
    finally:
        os.environ["PATH"] = saved


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
    """An NbGraderAPI for `course`, configured by grader/nbgrader_config.py. The course gets an
    nbgrader_config.py of its own (written once) so that plain nbgrader commands run there agree."""
    from nbgrader.apps import NbGraderAPI

    config = PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()
    config.merge(Config({"CourseDirectory": {"root": str(course), "db_url": db_url(course)}}))
    text = ("# Written by `python -m grader`: plain nbgrader commands run here use the course's configuration.\n"
            f"load_subconfig({str(CONFIG_FILE)!r})\n"
            f"c.CourseDirectory.root = {str(course)!r}\n")
    if (course / DB_FILE).is_file():  # formgrader and nbgrader's commands use the same gradebook
        text += f"c.CourseDirectory.db_url = open({str(course / DB_FILE)!r}).read().strip()\n"
    local = course / "nbgrader_config.py"
    if not local.is_file() or local.read_text() != text:
        local.write_text(text)
    return NbGraderAPI(config=config)


def db_url(course: Path) -> str:
    """The course's gradebook: the database recorded with `--db` (COURSE/gradebook.url), else
    SQLite in the course directory (nbgrader's default place)."""
    recorded = course / DB_FILE
    if recorded.is_file():
        return recorded.read_text().strip()
    return f"sqlite:///{course / 'gradebook.db'}"


def use_database(course: Path, url: str) -> None:
    """Make `url` (e.g. postgresql://user@host/db) the course's gradebook, once it answers; every
    later command on the course, and formgrader, use it."""
    check_database(url)
    recorded = course / DB_FILE
    if not recorded.is_file() or recorded.read_text().strip() != url:
        recorded.touch(mode=0o600)  # it may hold a password
        recorded.write_text(url + "\n")


def check_database(url: str) -> None:
    """Raise GraderError, before any work, if the gradebook's database does not answer."""
    if url.startswith("sqlite:"):
        return
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url, connect_args={"connect_timeout": 10} if url.startswith("postgresql") else {})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as err:  # the driver's own errors: no route, refused, authentication, no such database
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0][:300]
        raise GraderError(f"cannot reach the gradebook database at {redacted(url)}: {reason}") from None


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
    request = RunRequest(id="solution", filename=f"{name}.ipynb", notebook=run_nb, limits=asdict(Limits()),
                         nonce=nonce, sandboxed=unavailable_reason() is None)
    result = execution.run(request)
    scored = scoring.score(request, result, {"records": {}, "points": {}})
    reference_records = scored.records
    problems = [n for n in scored.notes if not n.startswith("process count")]
    for cell in scored.notebook.cells:
        tag = cell.metadata.get(canonical.TAG, {})
        if tag.get("role") in ("answer", "visible", "probe", "locked"):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    problems.append(f"cell {tag.get('grade_id')}: {out.get('ename')}: {out.get('evalue')}")
    points = {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"]) for c in nb.cells
              if nbutils.is_grade(c) and not nbutils.is_solution(c)}
    for grade_id in points:
        if not any(wire.grade_id(n) == grade_id for n in reference_records):
            problems.append(f"test {grade_id} records nothing: its hidden part must call checks.record(...)")
    for rec_name, rec in reference_records.items():
        if rec["kind"] not in ("tensor", "json"):
            problems.append(f"record {rec_name} of the solution is {rec['kind']}: {rec.get('value')}")
        if wire.grade_id(rec_name) not in points:
            problems.append(f"record {rec_name} does not name an autograded test cell")
    return problems, {"records": reference_records, "points": points}


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
    with venv_on_path():
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


# --- feedback and export -----------------------------------------------------------------------

def feedback(name: str, course: Path) -> tuple[list[Path], list[str]]:
    """One HTML feedback file per graded student, with no hidden test source and no traceback.

    Returns the files written and a line for each student whose feedback could not be written
    or was withheld; one student's problem never stops the others' feedback.
    """
    graded = [o.student for o in read_report(course, name) if o.status == "graded"]
    api = nbgrader_api(course)
    files, problems = [], []
    for student in graded:
        result = api.generate_feedback(name, student, force=True)
        html = course / "feedback" / student / name / f"{name}.html"
        if not result["success"] or not html.is_file():
            log = (result.get("error") or result.get("log") or "").strip().splitlines()
            problems.append(f"{student}: feedback could not be made ({log[-1] if log else 'no log'})")
            continue
        # Student text had its markers redacted (grader.preprocessors): one here came from the grader.
        if any(m in html.read_text() for m in SECRET_MARKERS):
            html.unlink()
            problems.append(f"{student}: feedback withheld, it showed an nbgrader marker (a grader bug: report it)")
            continue
        files.append(html)
    return files, problems
