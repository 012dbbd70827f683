"""Grades out of the gradebook, in a form an LMS imports.

    python -m grader export NAME [--lms plain|canvas|moodle] [--missing empty|zero] [--to FILE]

One row per student of the last autograde report, and, when the course has a roster
(COURSE/roster.csv, kept by collect), one for each roster student with nothing handed in. The
score is read from the gradebook now, so manual grades entered in formgrader count, minus the
late penalty kept there (grader.late), never below 0. A submission that was not graded
(ungradable, missing, error) has an empty score and the reason: an LMS imports an empty cell as
"no grade", where a 0 would be a grade. `--missing zero` gives roster students with no
submission a 0 instead.

- plain: student_id, assignment, status, score, max_score, late_penalty, submitted_at,
  needs_manual_grade, notes.
- canvas: the columns of Canvas's gradebook import (Student, ID, SIS User ID, SIS Login ID,
  Section, then the assignment's column; a "Points Possible" row). Canvas matches a column
  headed "Name (ID)" to the assignment with that id; pass `--column` to name it so.
- moodle: the columns of Moodle's assignment grading worksheet ("Upload grading worksheet"):
  Identifier ("Participant ID"), Full name, Email address, Status, Grade, Maximum Grade,
  Grade can be changed, Last modified (submission), Last modified (grade), Feedback comments.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .lms import Roster
from .pipeline import db_url
from .report import GraderError, read_report

FORMATS = ("plain", "canvas", "moodle")


@dataclass
class Row:
    student: str
    status: str  # graded | ungradable | missing | error | no submission
    score: float | None  # after the late penalty; None: no grade to import
    max_score: float
    late_penalty: float = 0.0
    submitted_at: str = ""
    needs_manual_grade: bool = False
    reason: str = ""  # why there is no score, or the notes


def roster_rows(course: Path) -> dict[str, dict[str, str]]:
    path = course / "roster.csv"
    return Roster.read(path).rows if path.is_file() else {}


def rows(name: str, course: Path, missing: str = "empty") -> list[Row]:
    """Every student's row: the report's, with the gradebook's scores now, then the roster's absent."""
    if missing not in ("empty", "zero"):
        raise GraderError(f"--missing must be empty or zero, not {missing!r}")
    outcomes = read_report(course, name)
    from nbgrader.api import Gradebook, MissingEntry

    out = []
    with Gradebook(db_url(course)) as gb:
        max_score = float(gb.find_assignment(name).max_score)
        for o in outcomes:
            row = Row(o.student, o.status, None, max_score, submitted_at=o.submitted_at, reason="; ".join(o.notes))
            if o.status == "graded":
                try:  # read again: manual grades entered after autograding count
                    sub = gb.find_submission(name, o.student)
                    penalty = float(sub.late_submission_penalty or 0.0)
                    row.score = max(0.0, float(sub.score) - penalty)
                    row.late_penalty, row.needs_manual_grade = penalty, bool(sub.needs_manual_grade)
                except MissingEntry:
                    row.status, row.reason = "error", f"not in the gradebook; {row.reason}"
            out.append(row)
    seen = {r.student for r in out}
    for student in roster_rows(course):
        if student not in seen:
            out.append(Row(student, "no submission", 0.0 if missing == "zero" else None, max_score,
                           reason="on the roster, nothing handed in"))
    return out


def _number(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def write_plain(name: str, table: list[Row], out) -> None:
    writer = csv.writer(out)
    writer.writerow(["student_id", "assignment", "status", "score", "max_score", "late_penalty", "submitted_at",
                     "needs_manual_grade", "notes"])
    for r in table:
        writer.writerow([r.student, name, r.status, _number(r.score), _number(r.max_score), _number(r.late_penalty),
                         r.submitted_at, r.needs_manual_grade, r.reason])


def write_canvas(name: str, table: list[Row], out, roster: dict, column: str) -> None:
    writer = csv.writer(out)
    writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column])
    # as Canvas's own export writes it: the row Canvas reads the points possible from
    writer.writerow(["    Points Possible", "", "", "", "", _number(table[0].max_score if table else None)])
    for r in table:
        who = roster.get(r.student, {})
        writer.writerow([who.get("name", r.student), who.get("canvas_id", ""), who.get("sis_user_id", ""),
                         who.get("sis_login_id", ""), who.get("section", ""), _number(r.score)])


def write_moodle(name: str, table: list[Row], out, roster: dict) -> None:
    writer = csv.writer(out)
    writer.writerow(["Identifier", "Full name", "Email address", "Status", "Grade", "Maximum Grade",
                     "Grade can be changed", "Last modified (submission)", "Last modified (grade)",
                     "Feedback comments"])
    for r in table:
        who = roster.get(r.student, {})
        comment = f"late: {r.late_penalty:g} points off" if r.late_penalty else ""
        if r.score is None:
            comment = f"not graded: {r.status}"
        writer.writerow([f"Participant {who.get('moodle_id', '')}", who.get("name", r.student), who.get("email", ""),
                         r.status, _number(r.score), _number(r.max_score), "Yes", r.submitted_at, "", comment])


def export(name: str, course: Path, to: Path | None = None, lms: str = "plain", missing: str = "empty",
           column: str | None = None) -> Path:
    """Write the grades of `name` as CSV for `lms`; returns the file."""
    if lms not in FORMATS:
        raise GraderError(f"--lms must be one of {', '.join(FORMATS)}, not {lms!r}")
    table = rows(name, course, missing)
    roster = roster_rows(course)
    if lms != "plain" and (unknown := [r.student for r in table if r.student not in roster]):
        raise GraderError(f"a {lms} export needs every student on the roster (COURSE/roster.csv, kept by collect); "
                          f"not on it: {', '.join(unknown[:10])}")
    ids = ("canvas_id", "sis_user_id", "sis_login_id")
    if lms == "canvas" and (no_id := [r.student for r in table if not any(roster[r.student].get(c) for c in ids)]):
        raise GraderError(f"a canvas export needs a canvas_id, sis_user_id or sis_login_id in the roster for every "
                          f"student; missing for {', '.join(no_id[:10])}")
    if lms == "moodle" and (no_id := [s for s in (r.student for r in table) if not roster[s].get("moodle_id")]):
        raise GraderError(f"a moodle export needs the roster's moodle_id of every student; missing for {', '.join(no_id[:10])}")
    to = Path(to) if to else course / "exports" / (f"{name}.csv" if lms == "plain" else f"{name}.{lms}.csv")
    to.parent.mkdir(parents=True, exist_ok=True)
    with to.open("w", newline="", encoding="utf-8") as f:
        if lms == "plain":
            write_plain(name, table, f)
        elif lms == "canvas":
            write_canvas(name, table, f, roster, column or name)
        else:
            write_moodle(name, table, f, roster)
    return to
