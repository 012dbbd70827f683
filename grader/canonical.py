"""Rebuild a submission on the canonical assignment, and fold a sandboxed run back into it.

Only the answers come from the student: the cells the assignment marks as solutions
(matched by grade_id, first copy wins) and any cells the student added. Everything else,
test cells, points and metadata included, comes from the instructor's release and source,
so deleted, duplicated, moved, re-typed or edited test cells change nothing.
"""
from __future__ import annotations

import secrets

import nbformat
from nbformat import NotebookNode
from nbformat.corpus.words import generate_corpus_id

from .redact import split_hidden

TAG = "dlcourse"


def _nbg(cell: NotebookNode) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _is_test(cell: NotebookNode) -> bool:
    return bool(_nbg(cell).get("grade")) and not _nbg(cell).get("solution")


def _copy(node: dict) -> NotebookNode:
    """A deep copy of notebook JSON data (nbformat.from_dict builds new dicts and lists all the
    way down; several times faster than copy.deepcopy of NotebookNodes)."""
    return nbformat.from_dict(node)


def _tag(cell: NotebookNode, role: str, grade_id: str | None = None) -> NotebookNode:
    """cell, tagged with its role in the run (in place: for cells made for this run only)."""
    cell.metadata[TAG] = {"role": role, "grade_id": grade_id}
    return cell


def _tagged(cell: NotebookNode, role: str, grade_id: str | None = None) -> NotebookNode:
    return _tag(_copy(cell), role, grade_id)


def _code(source: str, role: str, grade_id: str | None = None) -> NotebookNode:
    return _tag(_code_cell(source), role, grade_id)


# nbformat v4 nodes as nbformat.v4.new_* make them, without checking each against the schema
# (that check was a quarter of the trusted side's time): their parts are the grader's own, or
# were validated on the way in, and the unit tests validate the notebooks made of them.
def _code_cell(source: str) -> NotebookNode:
    return NotebookNode(id=generate_corpus_id(), cell_type="code", metadata=NotebookNode(), execution_count=None,
                        source=source, outputs=[])


def _markdown_cell(source: str) -> NotebookNode:
    return NotebookNode(id=generate_corpus_id(), cell_type="markdown", metadata=NotebookNode(), source=source)


def _stdout(text: str) -> NotebookNode:
    return NotebookNode(output_type="stream", name="stdout", text=text)


def _notebook(cells: list[NotebookNode], metadata: dict) -> NotebookNode:
    return NotebookNode(nbformat=4, nbformat_minor=nbformat.v4.nbformat_minor, metadata=_copy(metadata),
                        cells=cells)


def student_parts(student: NotebookNode, release: NotebookNode) -> tuple[dict, dict]:
    """(answers by grade_id, extra cells by the grade_id of the known cell they follow)."""
    known = {_nbg(c).get("grade_id") for c in release.cells} - {None}
    solutions = {_nbg(c)["grade_id"] for c in release.cells if _nbg(c).get("solution")}
    answers: dict[str, str] = {}
    extras: dict[str | None, list[NotebookNode]] = {}
    after: str | None = None
    for cell in student.cells:
        gid = _nbg(cell).get("grade_id")
        if gid in solutions and gid not in answers:
            answers[gid] = cell.get("source", "") if isinstance(cell.get("source"), str) else ""
            after = gid
        elif gid in known and gid not in answers:
            after = gid
        elif cell.get("cell_type") in ("code", "markdown"):
            extra = _code_cell(cell.source) if cell.cell_type == "code" else _markdown_cell(cell.source)
            extras.setdefault(after, []).append(extra)
    return answers, extras


def to_run(student: NotebookNode, release: NotebookNode, source: NotebookNode) -> tuple[NotebookNode, dict]:
    """The notebook to execute in the sandbox, and the canary nonces to look for afterwards."""
    answers, extras = student_parts(student, release)
    tests = {_nbg(c)["grade_id"]: c.source for c in source.cells if _is_test(c)}
    cells = [_tag(c, "extra") for c in extras.get(None, [])]  # student_parts made them for this run
    for cell in release.cells:
        gid = _nbg(cell).get("grade_id")
        if _nbg(cell).get("solution"):
            answer = _tagged(cell, "answer", gid)
            answer.source = answers.get(gid, cell.source)
            cells.append(answer)
        elif _is_test(cell):
            visible, probes = split_hidden(tests[gid])
            cells += [_code(visible, "visible", gid), _code(probes, "probe", gid)]
        else:
            cells.append(_tagged(cell, "locked", gid))
        cells += [_tag(c, "extra") for c in extras.get(gid, [])]
    nonce = {"assert": secrets.token_hex(8), "print": secrets.token_hex(8)}
    cells.append(_code(f'assert 1 + 1 == 3, "canary {nonce["assert"]}"', "canary"))
    cells.append(_code(f'print("canary", "{nonce["print"]}")', "canary"))
    for i, cell in enumerate(cells):  # only the canonical cells carry nbgrader metadata
        cell["id"] = f"cell-{i}"  # unique, whatever the student duplicated
        if cell.metadata[TAG]["role"] in ("extra", "visible", "probe", "canary"):
            cell.metadata.pop("nbgrader", None)
    run = _notebook(cells, release.metadata)
    return run, nonce


def canaries_ok(executed: NotebookNode, nonce: dict) -> list[str]:
    """What the canary cells reveal about a tampered kernel (empty when all is well)."""
    canary = [c for c in executed.cells if c.metadata.get(TAG, {}).get("role") == "canary"]
    problems = []
    outs = [o for c in canary[:1] for o in c.get("outputs", [])]
    if any(o.get("ename") == "MemoryError" or "MemoryError" in str(o.get("text", ""))
           for c in executed.cells for o in c.get("outputs", [])):
        # a kernel that ran out of memory may fail to raise or to report the canary's error (seen
        # under load: the memory bomb of the red-team tests); that is not evidence of tampering, and
        # the flag never changes a score anyway
        return []
    if not any(o.get("output_type") == "error" and o.get("ename") == "AssertionError"
               and nonce["assert"] in str(o.get("evalue")) for o in outs):
        problems.append("a failing assert did not raise AssertionError (assertions or error reporting were tampered with)")
    outs = [o for c in canary[1:2] for o in c.get("outputs", [])]
    if not any(o.get("output_type") == "stream" and nonce["print"] in str(o.get("text")) for o in outs):
        problems.append("a print did not reach the output (execution or output was tampered with)")
    return problems


def _as_text(output: dict) -> dict | None:
    """Any output of a test cell as plain stdout text: no output of a test cell can score it."""
    kind = output.get("output_type")
    if kind == "stream":
        return _stdout(str(output.get("text", "")))
    if kind == "error":
        msg = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
        return _stdout(f"A check failed. {msg}\n")
    if kind in ("execute_result", "display_data"):
        text = output.get("data", {}).get("text/plain", "")
        return _stdout(str(text) + "\n") if text else None
    return None


def to_graded(executed: NotebookNode, release: NotebookNode, scores: dict[str, float],
              details: dict[str, list[str]]) -> NotebookNode:
    """The notebook kept for formgrader and feedback: canonical cells with the run's outputs,
    each test cell ending in what each hidden case gave and its score. (The score is shown, not
    read back: grader.gradebook writes the scores into the gradebook directly.)"""
    by_role: dict[tuple[str, str | None], list[NotebookNode]] = {}
    extras_after: dict[str | None, list[NotebookNode]] = {}
    last: str | None = None
    for cell in executed.cells:
        tag = cell.metadata.get(TAG, {})
        if tag.get("role") == "extra":
            extras_after.setdefault(last, []).append(cell)
        elif tag.get("role") != "canary":
            by_role.setdefault((tag.get("role"), tag.get("grade_id")), []).append(cell)
            last = tag.get("grade_id") if tag.get("role") != "visible" else last
    cells = list(extras_after.get(None, []))
    for cell in release.cells:
        gid = _nbg(cell).get("grade_id")
        out = _copy(cell)
        if cell.cell_type == "code":
            out.outputs, out.execution_count = [], None
        if _is_test(cell):
            parts = by_role.get(("visible", gid), []) + by_role.get(("probe", gid), [])
            texts = [t for p in parts for o in p.get("outputs", []) if (t := _as_text(o))]
            score = NotebookNode(output_type="execute_result", metadata=NotebookNode(), execution_count=None,
                                 data=NotebookNode({"text/plain": repr(float(scores.get(gid, 0.0)))}))
            summary = "\n".join(details.get(gid, [])) + "\n"
            out.outputs = texts + [_stdout(summary), score]
        else:
            role = "answer" if _nbg(cell).get("solution") else "locked"
            ran = by_role.get((role, gid), [])
            if ran:
                out.source = ran[0].source
                if cell.cell_type == "code" and ran[0].cell_type == "code":
                    out.outputs = ran[0].get("outputs", [])
        cells.append(out)
        for extra in extras_after.get(gid, []):
            extra = _copy(extra)
            extra.metadata.pop(TAG, None)
            cells.append(extra)
    for cell in cells:
        cell.metadata.pop(TAG, None)
    return _notebook(cells, release.metadata)
