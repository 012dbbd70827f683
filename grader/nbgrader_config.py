"""nbgrader configuration of the course, loaded by `python -m grader` for every course directory.

It can also be used with plain nbgrader: `nbgrader <command> --config grader/nbgrader_config.py`
together with `--CourseDirectory.root=<your course directory>`.
"""
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties, CheckCellMetadata, Execute, GetGrades, IgnorePattern, LimitOutput, SaveAutoGrades,
)

from grader.preprocessors import HideHiddenTests, StderrToStdout

c = get_config()  # noqa: F821  (provided by traitlets when the file is loaded)

c.CourseDirectory.course_id = "dlcourse"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", ".DS_Store"]

# The stub a student sees in place of each solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Execution limits per cell; the whole assignment runs in seconds when it is right.
c.Execute.timeout = 120
c.Execute.startup_timeout = 60
c.Execute.interrupt_on_timeout = True
c.LimitOutput.max_lines = 500
c.LimitOutput.max_traceback = 50

# Honest answers must not lose points to warnings or progress bars: nbgrader scores a test
# cell 0 when anything reaches stderr, so stderr of every cell is turned into stdout after
# execution and before the grades are saved. Errors (exceptions) still score 0.
c.Autograde.autograde_preprocessors = [
    Execute, StderrToStdout, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
    AssignLatePenalties, CheckCellMetadata,
]

# Feedback shows neither hidden test source nor tracebacks that would quote it.
c.GenerateFeedback.preprocessors = [HideHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]
