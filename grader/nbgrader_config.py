"""nbgrader configuration of the course, loaded by `python -m grader` for every course directory.

It can also be used with plain nbgrader: `nbgrader <command> --config grader/nbgrader_config.py`
together with `--CourseDirectory.root=<your course directory>`.
"""
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties, CheckCellMetadata, DeduplicateIds, GetGrades, LimitOutput, OverwriteCells,
    OverwriteKernelspec, SaveAutoGrades,
)

from grader.gradebook import OUTPUT_LINES, TRACEBACK_LINES
from grader.preprocessors import HideHiddenTests

c = get_config()  # noqa: F821  (provided by traitlets when the file is loaded)

c.CourseDirectory.course_id = "dlcourse"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", ".DS_Store"]

# The stub a student sees in place of each solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# nbgrader never runs student code here: `python -m grader autograde` executes each
# submission in a sandbox, decides the scores in a trusted process and writes them into the
# gradebook itself (grader.gradebook). Should someone run plain `nbgrader autograde` on this
# course anyway, it executes nothing: it only restores the canonical cells and reads the score
# each test cell of the graded notebook ends in.
c.Autograde.sanitize_preprocessors = [DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata]
c.Autograde.autograde_preprocessors = [LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
c.LimitOutput.max_lines = OUTPUT_LINES
c.LimitOutput.max_traceback = TRACEBACK_LINES

# Feedback shows neither hidden test source nor tracebacks that would quote it.
c.GenerateFeedback.preprocessors = [HideHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]
