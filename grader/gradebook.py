"""The record stage (trusted): the one writer of scores into nbgrader's gradebook.

Scores go straight from the score stage into nbgrader's own gradebook models (nbgrader.api:
Student, SubmittedAssignment, Grade, Comment), many submissions per transaction, so that
formgrader, manual grading, feedback and export work as they do after `nbgrader autograde`:
the rows are the ones nbgrader's SaveAutoGrades and AssignLatePenalties write, and the
notebook kept in autograded/ is the one its OverwriteCells and LimitOutput make. No nbgrader
app is started per student, and nothing is read back out of a notebook's text.

Regrading is idempotent: the submission's rows are updated in place, manual scores and
comments are kept, and a cell with a manual score stays marked for review (nbgrader's rule).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from nbformat import NotebookNode
from nbgrader import utils as nbutils
from nbgrader.api import (Comment, Grade, Gradebook, MissingEntry, Student, SubmittedAssignment,
                          SubmittedNotebook)
from nbgrader.preprocessors import LimitOutput

# How much output an autograded notebook keeps (grader/nbgrader_config.py gives nbgrader's own apps the same)
OUTPUT_LINES, TRACEBACK_LINES = 500, 50


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
    """What nbgrader's OverwriteCells and LimitOutput make of a graded notebook: every known cell
    carries the stored checksum, locked cells the stored source, outputs are cut to size."""
    nb = copy.deepcopy(graded)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        stored = cells.get(meta.get("grade_id"))
        if stored is None:
            continue
        meta["checksum"] = stored.checksum
        if stored.locked and nbutils.compute_checksum(cell) != stored.checksum:
            cell.source = stored.source
    nb, _ = LimitOutput(max_lines=OUTPUT_LINES, max_traceback=TRACEBACK_LINES).preprocess(nb, {})
    return nb


class GradebookWriter:
    """Writes autograded submissions of one assignment into the gradebook at `db_url`, in batches.

        with GradebookWriter(db_url, name) as writer:
            writer.add("alice", autograded_notebook, {"ex1_tests": 4.0, ...})
            totals = writer.commit()   # {"alice": Total(...)}
    """

    def __init__(self, db_url: str, name: str) -> None:
        self.gb = Gradebook(db_url)
        self.name = name
        self.cells = source_cells(self.gb, name)
        notebook = self.gb.find_notebook(name, name)
        # cell id -> grade_id, read once: nbgrader's Grade.name and Comment.name each load their cell
        self.cell_names = {c.id: c.name for c in [*notebook.grade_cells, *notebook.solution_cells,
                                                  *notebook.task_cells]}
        self.pending: list[str] = []

    def __enter__(self) -> "GradebookWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self.gb.db.rollback()
        self.gb.close()

    def _submission(self, student: str) -> SubmittedNotebook:
        db = self.gb.db
        if db.get(Student, student) is None:
            db.add(Student(id=student))
        try:
            submission = self.gb.find_submission(self.name, student)
        except MissingEntry:  # mirrors Gradebook.add_submission, without its commit
            submission = SubmittedAssignment(assignment=self.gb.find_assignment(self.name),
                                             student=db.get(Student, student))
            for notebook in submission.assignment.notebooks:
                nb = SubmittedNotebook(notebook=notebook, assignment=submission)
                for cell in notebook.grade_cells:
                    Grade(cell_id=cell.id, notebook=nb)
                for cell in notebook.solution_cells:
                    Comment(cell_id=cell.id, notebook=nb)
                for cell in notebook.task_cells:
                    Comment(cell_id=cell.id, notebook=nb)
                    Grade(cell_id=cell.id, notebook=nb)
            db.add(submission)
            db.flush()  # so that each new grade and comment knows its cell
        return next(nb for nb in submission.notebooks if nb.name == self.name)

    def add(self, student: str, autograded: NotebookNode, scores: dict[str, float]) -> None:
        """Queue one submission: `scores` are the trusted points of the autograded test cells;
        written answers get nbgrader's treatment (0 if untouched, else waiting for a grader)."""
        notebook = self._submission(student)
        cells = {c.metadata["nbgrader"]["grade_id"]: c for c in autograded.cells
                 if c.metadata.get("nbgrader", {}).get("grade_id")}
        for grade in notebook.grades:
            name = self.cell_names[grade.cell_id]
            cell = cells.get(name)
            if name in scores:
                grade.auto_score = float(scores[name])
            elif cell is not None and nbutils.is_grade(cell):
                grade.auto_score, _ = nbutils.determine_grade(cell)
            else:
                grade.auto_score = None
            grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        for comment in notebook.comments:
            cell = cells.get(self.cell_names[comment.cell_id])
            unanswered = cell is not None and not nbutils.is_task(cell) and \
                cell.metadata["nbgrader"].get("checksum") == nbutils.compute_checksum(cell)
            comment.auto_comment = "No response." if unanswered else None
        notebook.late_submission_penalty = None  # no timestamps yet: nothing is late
        self.pending.append(student)

    def commit(self) -> dict[str, Total]:
        """Write every queued submission in one transaction; their totals, manual grades included."""
        self.gb.db.commit()
        totals = self.totals(self.pending)
        self.pending = []
        return totals

    def totals(self, students: list[str]) -> dict[str, Total]:
        """The recorded totals, manual grades included, of those of `students` with a submission."""
        totals = {}
        for student in students:
            try:
                sub = self.gb.find_submission(self.name, student)
            except MissingEntry:
                continue
            totals[student] = Total(float(sub.score), float(sub.max_score), bool(sub.needs_manual_grade))
        return totals
