"""nbgrader preprocessors of the course: fair scoring and feedback that leaks nothing."""
from __future__ import annotations

from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor

HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
HIDDEN_NOTE = "# (hidden tests run here; their code is not shown)"


def _is_test_cell(cell: NotebookNode) -> bool:
    return utils.is_grade(cell) and not utils.is_solution(cell)


def strip_hidden(source: str) -> str:
    """The source with every hidden-test region replaced by one comment line."""
    lines, out, hidden = source.split("\n"), [], False
    for line in lines:
        if HIDDEN_BEGIN in line:
            hidden = True
            out.append(HIDDEN_NOTE)
        elif HIDDEN_END in line:
            hidden = False
        elif not hidden:
            out.append(line)
    return "\n".join(out)


class HideHiddenTests(NbGraderPreprocessor):
    """For feedback: remove hidden-test code from test cells and tracebacks from their errors.

    A failing test keeps its exception type and message (written by the course's checks to
    say what is wrong), but not the traceback, whose frames would quote the hidden code.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and _is_test_cell(cell):
            cell.source = strip_hidden(cell.source)
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    message = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
                    output["traceback"] = [f"A test failed. {message}"]
        return cell, resources
