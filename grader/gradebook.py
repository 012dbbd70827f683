"""The record stage (trusted): the one writer of scores into nbgrader's gradebook.

Scores go straight from the score stage into the tables of nbgrader's own gradebook models
(nbgrader.api: Student, SubmittedAssignment, Grade, Comment), many submissions per transaction
in a few set-based statements, so that
formgrader, manual grading, feedback and export work as they do after `nbgrader autograde`:
the rows are the ones nbgrader's SaveAutoGrades and AssignLatePenalties write, and the
notebook kept in autograded/ is the one its OverwriteCells and LimitOutput make. No nbgrader
app is started per student, and nothing is read back out of a notebook's text.

Regrading is idempotent: the submission's rows are updated in place, manual scores and
comments are kept, and a cell with a manual score stays marked for review (nbgrader's rule).
"""
from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass

from nbformat import NotebookNode
from nbgrader import utils as nbutils
from nbgrader.api import Comment, Grade, Gradebook, Student, SubmittedAssignment, SubmittedNotebook
from nbgrader.preprocessors import LimitOutput
from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update

# How much output an autograded notebook keeps (grader/nbgrader_config.py gives nbgrader's own apps the same)
OUTPUT_LINES, TRACEBACK_LINES = 500, 50
_LIMIT_OUTPUT = LimitOutput(max_lines=OUTPUT_LINES, max_traceback=TRACEBACK_LINES)  # made once: traitlets are slow to build


def new_uuids(n: int) -> list[str]:
    """n ids as nbgrader's new_uuid makes them (random UUID4, hex), from one read of the OS's randomness."""
    data = os.urandom(16 * n)
    return [uuid.UUID(bytes=data[16 * i:16 * i + 16], version=4).hex for i in range(n)]


@dataclass(frozen=True)
class SourceCell:
    """A cell of the assignment as nbgrader stored it at release (hidden tests included)."""

    source: str
    checksum: str
    locked: bool


@dataclass
class Total:
    """A submission's totals as the gradebook computes them (manual grades included)."""

    score: float
    max_score: float
    needs_manual_grade: bool


def source_cells(gb: Gradebook, name: str) -> dict[str, SourceCell]:
    """The release's cells as the gradebook has them, by grade_id (assignment and notebook share `name`)."""
    return {c.name: SourceCell(c.source, c.checksum, bool(c.locked)) for c in gb.find_notebook(name, name).source_cells}


def overwrite_cells(graded: NotebookNode, cells: dict[str, SourceCell]) -> NotebookNode:
    """What nbgrader's OverwriteCells and LimitOutput make of a graded notebook, in place: every
    known cell carries the stored checksum, locked cells the stored source, outputs are cut to size."""
    for cell in graded.cells:
        meta = cell.metadata.get("nbgrader", {})
        stored = cells.get(meta.get("grade_id"))
        if stored is None:
            continue
        meta["checksum"] = stored.checksum
        # OverwriteCells puts back the stored source where the checksum differs; the checksum
        # covers the source, so that is where the source differs (comparing costs no hashing)
        if stored.locked and cell.source != stored.source:
            cell.source = stored.source
    nb, _ = _LIMIT_OUTPUT.preprocess(graded, {})
    return nb


@dataclass
class Pending:
    """One submission's automatic values, as the writer will record them."""

    student: str
    auto_scores: dict[str, float | None]  # grade row's cell id -> auto_score (None: a grader must look)
    auto_comments: dict[str, str | None]  # comment row's cell id -> auto_comment
    timestamp: dt.datetime | None = None  # when it was handed in, naive UTC (nbgrader's convention)
    extension: dt.timedelta | None = None  # the student's extension of the due date
    late_penalty: float | None = None  # points off for lateness (None: not late, or no due date)


@dataclass(frozen=True)
class Layout:
    """The assignment's cells as the gradebook keeps them, read once per batch: plain data, so
    that the score stage can use it in any process, without a database connection."""

    cells: dict[str, SourceCell]  # grade_id -> the release's cell as stored at release
    graded: dict[str, str]  # grade_id -> cell id, for each row of the grade table (grade and task cells)
    commented: dict[str, str]  # grade_id -> cell id, for each row of the comment table (solution and task cells)

    def pending(self, student: str, autograded: NotebookNode, scores: dict[str, float]) -> Pending:
        """A submission's values: `scores` are the trusted points of the autograded test cells;
        written answers get nbgrader's treatment (0 if untouched, else waiting for a grader)."""
        cells = {c.metadata["nbgrader"]["grade_id"]: c for c in autograded.cells
                 if c.metadata.get("nbgrader", {}).get("grade_id")}
        auto_scores: dict[str, float | None] = {}
        for name, cell_id in self.graded.items():
            cell = cells.get(name)
            if name in scores:
                auto_scores[cell_id] = float(scores[name])
            elif cell is not None and nbutils.is_grade(cell):
                auto_scores[cell_id] = nbutils.determine_grade(cell)[0]
            else:
                auto_scores[cell_id] = None
        auto_comments: dict[str, str | None] = {}
        for name, cell_id in self.commented.items():
            cell = cells.get(name)
            unanswered = cell is not None and not nbutils.is_task(cell) and \
                cell.metadata["nbgrader"].get("checksum") == nbutils.compute_checksum(cell)
            auto_comments[cell_id] = "No response." if unanswered else None
        return Pending(student, auto_scores, auto_comments)


class GradebookWriter:
    """Writes autograded submissions of one assignment into the gradebook at `db_url`, in batches.

        with GradebookWriter(db_url, name) as writer:
            writer.add(writer.layout.pending("alice", autograded_notebook, {"ex1_tests": 4.0, ...}))
            totals = writer.commit()   # {"alice": Total(...)}

    A batch is a handful of set-based statements on nbgrader's tables (a new submission's rows
    created holding its values; a regraded one's updated in place), not one ORM object per row:
    the coordinator's share of a run must stay a few milliseconds.
    """

    def __init__(self, db_url: str, name: str) -> None:
        self.gb = Gradebook(db_url)
        self.name = name
        self.assignment = self.gb.find_assignment(name)
        self.assignment_id = self.assignment.id  # (the object's attributes are read again after each commit)
        if [nb.name for nb in self.assignment.notebooks] != [name]:
            raise ValueError(f"assignment {name} must hold exactly one notebook, {name}.ipynb")
        notebook = self.assignment.notebooks[0]
        self.notebook_id = notebook.id
        self.layout = Layout(source_cells(self.gb, name),
                             {c.name: c.id for c in [*notebook.grade_cells, *notebook.task_cells]},
                             {c.name: c.id for c in [*notebook.solution_cells, *notebook.task_cells]})
        self.max_score = float(self.assignment.max_score)
        self.pending: list[Pending] = []

    def __enter__(self) -> "GradebookWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self.gb.db.rollback()
        self.gb.close()

    def set_duedate(self, due: dt.datetime | None) -> None:
        """The assignment's due date (naive UTC) in the gradebook, where formgrader shows it."""
        if self.assignment.duedate != due:
            self.assignment.duedate = due
            self.gb.db.commit()

    def add(self, pending: Pending) -> None:
        """Queue one submission's values for the next commit."""
        self.pending.append(pending)

    def _submitted_notebooks(self, db, latest: dict[str, Pending]) -> tuple[dict[str, str], set[str]]:
        """student -> id of their submitted notebook, and the students whose rows are new. For
        those, the rows nbgrader's Gradebook.add_submission would make (without its commit) are
        created here already holding the submission's values, so that they need no update."""
        sub, nb = SubmittedAssignment.__table__, SubmittedNotebook.__table__
        ids = dict(db.execute(select(sub.c.student_id, nb.c.id).join(nb, nb.c.assignment_id == sub.c.id).where(
            sub.c.assignment_id == self.assignment_id, nb.c.notebook_id == self.notebook_id,
            sub.c.student_id.in_(list(latest)))).all())
        new = [s for s in latest if s not in ids]
        if not new:
            return ids, set()
        known = set(db.scalars(select(Student.__table__.c.id).where(Student.__table__.c.id.in_(new))))
        if unknown := [s for s in new if s not in known]:
            db.execute(insert(Student.__table__), [{"id": s} for s in unknown])
        graded, commented = list(self.layout.graded.values()), list(self.layout.commented.values())
        uuids = iter(new_uuids(len(new) * (2 + len(graded) + len(commented))))
        assignments = {s: next(uuids) for s in new}
        ids.update({s: next(uuids) for s in new})
        db.execute(insert(sub), [{"id": assignments[s], "assignment_id": self.assignment_id, "student_id": s,
                                  "timestamp": latest[s].timestamp, "extension": latest[s].extension} for s in new])
        db.execute(insert(nb), [{"id": ids[s], "assignment_id": assignments[s], "notebook_id": self.notebook_id,
                                 "late_submission_penalty": latest[s].late_penalty} for s in new])
        if graded:  # no manual score yet: a grader must look exactly where there is no automatic one
            db.execute(insert(Grade.__table__), [
                {"id": next(uuids), "notebook_id": ids[s], "cell_id": c, "auto_score": (v := latest[s].auto_scores.get(c)),
                 "needs_manual_grade": v is None} for s in new for c in graded])
        if commented:
            db.execute(insert(Comment.__table__), [
                {"id": next(uuids), "notebook_id": ids[s], "cell_id": c, "auto_comment": latest[s].auto_comments.get(c)}
                for s in new for c in commented])
        return ids, set(new)

    def commit(self) -> dict[str, Total]:
        """Write every queued submission in one transaction; their totals, manual grades included."""
        if not self.pending:
            return {}
        db = self.gb.db.connection()  # Core statements in the session's transaction: no ORM work per row
        latest = {p.student: p for p in self.pending}  # a student queued twice: the later values count
        ids, new = self._submitted_notebooks(db, latest)
        if old := [p for s, p in latest.items() if s not in new]:
            self._update(db, ids, old)
        self.gb.db.commit()
        totals = self.totals(list(latest))
        self.pending = []
        return totals

    @staticmethod
    def _update(db, ids: dict[str, str], pending: list[Pending]) -> None:
        """A submission's values over the rows it already has, in place (a regrade)."""
        grade, comment = Grade.__table__, Comment.__table__
        scores = [{"nb": ids[p.student], "cell": c, "auto": v, "unscored": v is None}
                  for p in pending for c, v in p.auto_scores.items()]
        if scores:  # nbgrader's rule: a manual score stays up for review; no automatic score needs one
            db.execute(update(grade).where(grade.c.notebook_id == bindparam("nb"), grade.c.cell_id == bindparam("cell"))
                       .values(auto_score=bindparam("auto"),
                               needs_manual_grade=or_(grade.c.manual_score.is_not(None), bindparam("unscored"))),
                       scores)
        comments = [{"nb": ids[p.student], "cell": c, "text": v} for p in pending for c, v in p.auto_comments.items()]
        if comments:
            db.execute(update(comment).where(comment.c.notebook_id == bindparam("nb"),
                                             comment.c.cell_id == bindparam("cell")).values(auto_comment=bindparam("text")),
                       comments)
        nb, sub = SubmittedNotebook.__table__, SubmittedAssignment.__table__
        db.execute(update(nb).where(nb.c.id == bindparam("nb")).values(late_submission_penalty=bindparam("penalty")),
                   [{"nb": ids[p.student], "penalty": p.late_penalty} for p in pending])
        db.execute(update(sub).where(sub.c.id == select(nb.c.assignment_id).where(nb.c.id == bindparam("nb"))
                                     .scalar_subquery())
                   .values(timestamp=bindparam("when"), extension=bindparam("extension")),
                   [{"nb": ids[p.student], "when": p.timestamp, "extension": p.extension} for p in pending])

    def totals(self, students: list[str]) -> dict[str, Total]:
        """The recorded totals, manual grades included, of those of `students` with a submission:
        nbgrader's SubmittedAssignment.score, max_score and needs_manual_grade, summed in one
        grouped query over this notebook's grade rows (nbgrader's own per-row subqueries scan the
        whole grade table for each student, which grows with the class)."""
        sub, nb = SubmittedAssignment, SubmittedNotebook
        manual = func.max(case((Grade.needs_manual_grade, 1), else_=0))
        rows = self.gb.db.connection().execute(
            select(sub.student_id, func.coalesce(func.sum(Grade.score), 0.0), func.coalesce(manual, 0))
            .join(nb, and_(nb.assignment_id == sub.id, nb.notebook_id == self.notebook_id))
            .outerjoin(Grade, and_(Grade.notebook_id == nb.id, Grade.cell_id.in_(list(self.layout.graded.values()))))
            .where(sub.assignment_id == self.assignment_id, sub.student_id.in_(students))
            .group_by(sub.student_id))
        return {s: Total(float(score), self.max_score, bool(flag)) for s, score, flag in rows}
