"""nbgrader preprocessors of the course: fair scoring and feedback that leaks nothing."""
from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor

from .redact import hide_hidden, is_test_cell, rewrite_outputs, without_markers


class HideHiddenTests(NbGraderPreprocessor):
    """For feedback: replace the hidden-test code of every test cell with one comment line, and
    redact nbgrader's marker comments wherever a student wrote them (their own cells and outputs).

    (Test-cell outputs are plain text by then: grader.canonical.to_graded turns errors into
    their message, so no traceback can quote hidden code; grader.redact has scrubbed hidden-test
    lines from every output.)
    """

    def preprocess_cell(self, cell, resources, index):
        if is_test_cell(cell):
            hide_hidden(cell)
        else:
            cell.source = without_markers(cell.source)
        rewrite_outputs(cell, without_markers)
        return cell, resources
