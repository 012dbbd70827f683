"""Unit tests of the grader's stages on small, hand-made notebooks: no sandbox, no nbgrader app,
seconds in all. (The round trips on real assignments are in test_grader.py and test_redteam.py.)"""
import ast
import base64
import copy
import json
import os
import pickle
import subprocess
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import nbformat
import pytest
import torch

from grader import canonical, gradebook, intake, pipeline, records, redact, scoring, stagepool, trusted
from grader.messages import BadMessage, RunRequest, RunResult
from grader.sandbox import Limits
from utils import checks, wire

V4 = nbformat.v4


def nbg(grade_id, *, grade=False, solution=False, locked=False, points=0):
    meta = {"grade_id": grade_id, "grade": grade, "solution": solution, "locked": locked, "schema_version": 3,
            "task": False}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


HIDDEN = """### BEGIN HIDDEN TESTS
x_hidden = torch.arange(6.0).reshape(2, 3) * 0.5
checks.record("ex1_tests/hidden", lambda: double(x_hidden))
checks.record("ex1_tests/hidden_int", lambda: double(torch.arange(4)))
### END HIDDEN TESTS"""


def assignment():
    """(source, release) of a two-exercise assignment: one function, one written answer."""
    source = V4.new_notebook(cells=[
        V4.new_code_cell("import torch\nfrom utils import checks", metadata=nbg("setup", locked=True)),
        V4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                         metadata=nbg("ex1_solution", solution=True)),
        V4.new_code_cell('assert double(torch.ones(1)).item() == 2\nprint("ok")\n' + HIDDEN,
                         metadata=nbg("ex1_tests", grade=True, locked=True, points=3)),
        V4.new_markdown_cell("Why?", metadata=nbg("ex2_text", locked=True)),
        V4.new_markdown_cell("YOUR ANSWER HERE", metadata=nbg("ex2_answer", grade=True, solution=True, points=2)),
    ])
    release = copy.deepcopy(source)
    release.cells[1].source = "def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    release.cells[2].source = 'assert double(torch.ones(1)).item() == 2\nprint("ok")'
    return source, release


def student(release, answer="def double(x):\n    return x + x"):
    nb = copy.deepcopy(release)
    nb.cells[1].source = answer
    nb.cells[4].source = "Because."
    return nb


def roles(run_nb):
    return [(c.metadata[canonical.TAG]["role"], c.metadata[canonical.TAG]["grade_id"]) for c in run_nb.cells]


# --- canonicalization ----------------------------------------------------------------------------

def test_canonical_run_takes_only_answers_and_added_cells_from_the_student():
    source, release = assignment()
    honest, nonce = canonical.to_run(student(release), release, source)
    assert roles(honest) == [("locked", "setup"), ("answer", "ex1_solution"), ("visible", "ex1_tests"),
                             ("probe", "ex1_tests"), ("locked", "ex2_text"), ("answer", "ex2_answer"),
                             ("canary", None), ("canary", None)]
    assert honest.cells[1].source == "def double(x):\n    return x + x"
    assert "x_hidden" in honest.cells[3].source and "BEGIN HIDDEN" not in honest.cells[3].source
    assert nonce["assert"] in honest.cells[-2].source and nonce["print"] in honest.cells[-1].source

    tampered = student(release)
    tampered.cells[2].source = "pass"  # the visible test replaced
    tampered.cells[2].metadata.nbgrader["points"] = 100
    tampered.cells.insert(0, copy.deepcopy(tampered.cells[2]))  # duplicated, moved to the top
    tampered.cells[3] = V4.new_markdown_cell("x", metadata=tampered.cells[3].metadata)  # re-typed
    del tampered.cells[4]  # the markdown text deleted
    run, _ = canonical.to_run(tampered, release, source)
    assert roles(run) == roles(honest)
    assert [c.source for c in run.cells[:-2]] == [c.source for c in honest.cells[:-2]]


def test_added_cells_follow_the_cell_they_were_after_and_carry_no_nbgrader_metadata():
    source, release = assignment()
    nb = student(release)
    nb.cells.insert(0, V4.new_code_cell("top = 1"))
    nb.cells.insert(3, V4.new_code_cell("mine = 2"))  # right after the answer to exercise 1
    run, _ = canonical.to_run(nb, release, source)
    sources = [c.source for c in run.cells]
    assert sources[0] == "top = 1"
    assert roles(run)[0] == ("extra", None)
    extra = next(c for c in run.cells if c.source == "mine = 2")
    assert "nbgrader" not in extra.metadata and roles(run)[run.cells.index(extra) - 1] == ("answer", "ex1_solution")
    assert len({c["id"] for c in run.cells}) == len(run.cells)
    # built without nbformat's per-node checks: both notebooks must still be valid nbformat
    nbformat.validate(run)
    nbformat.validate(canonical.to_graded(run, release, {"ex1_tests": 1.0}, {"ex1_tests": ["hidden case a: passed"]}))


def test_canaries_flag_a_silent_assert_but_not_a_kernel_out_of_memory():
    nonce = {"assert": "a1", "print": "p1"}

    def run(assert_outputs, earlier=()):
        tag = {canonical.TAG: {"role": "canary"}}
        printed = [V4.new_output("stream", name="stdout", text="canary p1\n")]
        return V4.new_notebook(cells=[V4.new_code_cell("work", outputs=list(earlier)),
                                      V4.new_code_cell("assert", metadata=tag, outputs=assert_outputs),
                                      V4.new_code_cell("print", metadata=dict(tag), outputs=printed)])

    raised = V4.new_output("error", ename="AssertionError", evalue="canary a1", traceback=[])
    assert canonical.canaries_ok(run([raised]), nonce) == []
    assert len(canonical.canaries_ok(run([]), nonce)) == 1  # the assert was silenced
    forged = V4.new_output("error", ename="AssertionError", evalue="canary guessed", traceback=[])
    assert len(canonical.canaries_ok(run([forged]), nonce)) == 1  # a canary without the nonce
    starved = V4.new_output("error", ename="MemoryError", evalue="", traceback=[])
    assert canonical.canaries_ok(run([], earlier=[starved]), nonce) == []


# --- the wire format -----------------------------------------------------------------------------

def test_utils_never_imports_the_grader():
    for path in (Path(__file__).resolve().parent.parent / "utils").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(n == "grader" or n.startswith("grader.") for n in names), path.name


@pytest.mark.parametrize("value", [torch.arange(6.0).reshape(2, 3), torch.tensor([True, False]),
                                   torch.arange(5, dtype=torch.int16), {"a": [1, 2.5, None]}, "text"])
def test_a_record_written_by_checks_is_read_back_exactly(value, tmp_path, monkeypatch):
    monkeypatch.setenv(wire.RECORDS_ENV, str(tmp_path))
    checks.record("ex1_tests/case", lambda: value, atol=1e-3)
    path = tmp_path / wire.filename("ex1_tests/case")
    files = {path.name: {"b64": base64.b64encode(path.read_bytes()).decode()}}
    recs, problems = records.load_bundle_records(files)
    assert problems == [] and recs["ex1_tests/case"]["atol"] == 1e-3
    entry = recs["ex1_tests/case"]
    if isinstance(value, torch.Tensor):
        assert (records.tensor(entry) == value.numpy()).all() and entry["dtype"] == str(value.dtype)[6:]
    else:
        assert entry["value"] == value


def test_a_failing_or_unsupported_answer_is_recorded_as_such(tmp_path, monkeypatch):
    monkeypatch.setenv(wire.RECORDS_ENV, str(tmp_path))
    checks.record("ex1_tests/raises", lambda: 1 / 0)
    checks.record("ex1_tests/complex", lambda: torch.ones(2, dtype=torch.complex64))
    checks.record("ex1_tests/object", lambda: object())
    read = {p.name: json.loads(p.read_text())["kind"] for p in tmp_path.iterdir()}
    assert read == {"ex1_tests~raises.json": "error", "ex1_tests~complex.json": "unsupported",
                    "ex1_tests~object.json": "unsupported"}
    with pytest.raises(ValueError):
        checks.record("no-slash", lambda: 1)


def b64(obj) -> dict:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return {"b64": base64.b64encode(raw).decode()}


def tensor_record(name, array, **extra):
    entry = checks.encode(torch.as_tensor(array))
    return {**entry, "name": name, "atol": 1e-6, "rtol": 1e-5, **extra}


def test_malformed_and_hostile_records_are_refused_one_by_one():
    good = tensor_record("ex1_tests/a", [1.0, 2.0])
    files = {
        wire.filename("ex1_tests/a"): b64(good),
        "ex1_tests~pickle.json": b64(b"\x80\x04\x95..."),  # a pickle, not JSON
        "ex1_tests~list.json": b64([1, 2]),  # JSON, not a record
        "ex1_tests~kind.json": b64({**good, "name": "ex1_tests/kind", "kind": "pickle"}),
        "other~name.json": b64({**good, "name": "ex1_tests/a"}),  # file and record names disagree
        "ex1_tests~b64.json": {"b64": "not base64!"},
        "ex1_tests~big.json": {"too_large": 2**30},
        "ex1_tests~nest.json": b64(b"[" * 100000),
        "../escape~x.json": b64({**good, "name": "../escape/x"}),
    }
    recs, problems = records.load_bundle_records(files)
    assert list(recs) == ["ex1_tests/a"] and len(problems) == len(files) - 1
    assert records.load_bundle_records(["not", "a", "mapping"]) == ({}, ["records are not a mapping"])


@pytest.mark.parametrize("change", [{"dtype": "object"}, {"shape": [-1]}, {"shape": [3]}, {"shape": [2, "1"]},
                                    {"shape": [5000, 5000]}, {"data": "%%%"}])
def test_a_malformed_tensor_never_matches(change):
    ref = tensor_record("ex1_tests/a", [1.0, 2.0])
    bad = {**ref, **change}
    assert not records.matches(bad, ref)
    assert records.explain(bad, ref) != "passed"


def test_matching_uses_only_the_reference_tolerances_and_exact_types():
    ref = tensor_record("ex1_tests/a", [1.0, 2.0], atol=1e-3, rtol=0.0)
    assert records.matches(tensor_record("ex1_tests/a", [1.0005, 2.0]), ref)
    assert not records.matches(tensor_record("ex1_tests/a", [1.002, 2.0]), ref)
    loose = tensor_record("ex1_tests/a", [1.5, 2.0], atol=10.0, rtol=10.0)  # the student's own tolerance is ignored
    assert not records.matches(loose, ref)
    as64 = {**checks.encode(torch.tensor([1.0, 2.0], dtype=torch.float64)), "name": "ex1_tests/a"}
    assert not records.matches(as64, ref) and "float64" in records.explain(as64, ref)
    shaped = tensor_record("ex1_tests/a", [[1.0, 2.0]])
    assert "(1, 2)" in records.explain(shaped, ref)
    nan_ref = tensor_record("ex1_tests/n", [float("nan"), 1.0])
    assert records.matches(tensor_record("ex1_tests/n", [float("nan"), 1.0]), nan_ref)
    assert not records.matches(tensor_record("ex1_tests/n", [0.0, 1.0]), nan_ref)
    as_json = lambda v: {"name": "ex1_tests/j", "kind": "json", "value": v}
    ref_json = {**as_json([1.0, "a", True]), "atol": 0.01, "rtol": 0.0}
    assert records.matches(as_json([1.001, "a", True]), ref_json)
    assert not records.matches(as_json([1, "a", True]), ref_json)  # an int is not a float
    assert not records.matches(as_json([1.0, "a", 1]), ref_json)  # nor is an int a bool
    error = {"name": "ex1_tests/j", "kind": "error", "value": "ZeroDivisionError: division by zero"}
    assert records.explain(error, ref_json) == "raised ZeroDivisionError: division by zero"
    assert records.explain(None, ref_json).startswith("no result")


def test_partial_credit_is_the_share_of_hidden_cases_passed():
    ref = {f"ex1_tests/{k}": tensor_record(f"ex1_tests/{k}", [float(i)]) for i, k in enumerate("abc")}
    ref["ex2_tests/only"] = tensor_record("ex2_tests/only", [0.0])
    student = {"ex1_tests/a": ref["ex1_tests/a"], "ex1_tests/b": tensor_record("ex1_tests/b", [9.0])}
    scores, details = records.cell_scores(student, ref, {"ex1_tests": 3.0, "ex2_tests": 2.0, "ex3_tests": 1.0})
    assert scores == {"ex1_tests": 1.0, "ex2_tests": 0.0, "ex3_tests": 0.0}
    assert details["ex1_tests"] == ["hidden case a: passed", "hidden case b: wrong values",
                                    "hidden case c: no result (the cell did not get this far, or the record was removed)"]


# --- messages ------------------------------------------------------------------------------------

def request_for(nb_student=None):
    source, release = assignment()
    run_nb, nonce = canonical.to_run(nb_student or student(release), release, source)
    return RunRequest(id="alice", filename="a1.ipynb", notebook=run_nb, limits=asdict(Limits()), nonce=nonce)


def test_messages_serialize_to_bytes_and_back_without_loss():
    request = request_for()
    again = RunRequest.from_bytes(request.to_bytes())
    assert again == request and again.sandbox_limits() == Limits()
    result = RunResult(id="alice", notebook=dict(request.notebook), records={"x~y.json": {"b64": "e30="}},
                       events=[{"event": "timeout", "cell": 3}], seconds=1.5, log="tail", returncode=None,
                       report_ok=True, processes_limited=True, timings={"kernel": 0.7, "cells": {"probe": 0.1}})
    assert RunResult.from_bytes(result.to_bytes()) == result
    failed = RunResult.failed("bob", "no sandbox on worker h1: bubblewrap is not installed")
    assert RunResult.from_bytes(failed.to_bytes()) == failed
    # between the coordinator's own processes a request crosses as the same JSON, never as pickled objects
    crossed = pickle.loads(pickle.dumps(request))
    assert crossed == request and type(crossed.notebook) is dict
    assert pickle.dumps(request).count(request.to_bytes()) == 1
    # a request that arrived as bytes goes on as those very bytes (to an executor, to a scoring process)
    raw = request.to_bytes()
    assert RunRequest.from_bytes(raw).to_bytes() is raw and pickle.loads(pickle.dumps(crossed)) == request


def test_the_coordinator_does_not_import_torch():
    """Runs need torch, inside the sandbox; the trusted side reads records with NumPy alone, and
    torch would cost every grader command over a second to start and every forked process its heap."""
    code = "import sys, grader.__main__, grader.autograde, grader.broker; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_intake_and_scoring_run_in_processes_only_for_a_class_worth_it():
    assert stagepool.processes_for(stagepool.MIN_FOLDERS - 1) == 1
    assert stagepool.processes_for(10_000) == min(os.cpu_count(), stagepool.MAX_PROCESSES)
    assert stagepool.processes_for(10, processes=3) == 3
    with pytest.raises(ValueError, match="at least 1"):
        stagepool.processes_for(500, processes=0)


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("notebook"), lambda d: d.update(id=7), lambda d: d.update(seconds="1"),
    lambda d: d.update(report_ok=1), lambda d: d.update(returncode=True), lambda d: d.update(records=[]),
])
def test_a_malformed_result_is_refused(mutate):
    data = asdict(RunResult.failed("alice", "x"))
    mutate(data)
    with pytest.raises(BadMessage):
        RunResult.from_bytes(json.dumps(data).encode())
    with pytest.raises(BadMessage):
        RunResult.from_bytes(b"\xff not json")


def test_a_request_with_foreign_limits_is_refused():
    data = json.loads(request_for().to_bytes())
    data["limits"]["memory_bytes"] = "all of it"
    with pytest.raises(BadMessage):
        RunRequest.from_bytes(json.dumps(data).encode())
    data["limits"] = {"cell_seconds": 1}
    with pytest.raises(BadMessage):
        RunRequest.from_bytes(json.dumps(data).encode())


# --- scoring -------------------------------------------------------------------------------------

def executed(request, outputs_by_role=None, canaries=True):
    """The request's notebook as a well-behaved runner would report it."""
    nb = copy.deepcopy(request.notebook)
    for cell in nb.cells:
        role = cell.metadata[canonical.TAG]["role"]
        if cell.cell_type == "code":
            cell.outputs = list((outputs_by_role or {}).get(role, []))
    if canaries:
        nb.cells[-2].outputs = [V4.new_output("error", ename="AssertionError",
                                              evalue=f"canary {request.nonce['assert']}", traceback=[])]
        nb.cells[-1].outputs = [V4.new_output("stream", name="stdout", text=f"canary {request.nonce['print']}\n")]
    return nb


REFERENCE = {"records": {"ex1_tests/hidden": tensor_record("ex1_tests/hidden", [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]),
                         "ex1_tests/hidden_int": tensor_record("ex1_tests/hidden_int", [0, 2, 4, 6])},
             "points": {"ex1_tests": 3.0}}


def result_for(request, recs, **kw):
    files = {wire.filename(r["name"]): b64(r) for r in recs}
    return RunResult(id=request.id, notebook=kw.pop("notebook", executed(request)), records=files,
                     events=kw.pop("events", []), seconds=2.0, processes_limited=True, **kw)


def test_scores_come_from_the_records_and_canaries_only_flag():
    request = request_for()
    right = list(REFERENCE["records"].values())
    scored = scoring.score(request, result_for(request, right), REFERENCE)
    assert scored.scores == {"ex1_tests": 3.0} and not scored.flagged and scored.notes == []
    half = scoring.score(request, result_for(request, right[:1]), REFERENCE)
    assert half.scores == {"ex1_tests": 1.5}
    silenced = scoring.score(request, result_for(request, right, notebook=executed(request, canaries=False)), REFERENCE)
    assert silenced.flagged and silenced.scores == {"ex1_tests": 3.0}
    assert any("assertions or error reporting were tampered with" in n for n in silenced.notes)


def test_only_safe_outputs_survive_and_our_sources_are_kept():
    request = request_for()
    html = V4.new_output("display_data", data={"text/html": "<script>steal()</script>", "text/plain": "x"})
    nb = executed(request, {"answer": [html]})
    nb.cells[1].source = "forged source"
    scored = scoring.score(request, result_for(request, [], notebook=nb), REFERENCE)
    assert scored.notebook.cells[1].source == request.notebook.cells[1].source
    assert scored.notebook.cells[1].outputs[0]["data"] == {"text/plain": "x"}


def test_broken_runs_are_explained_in_words():
    request = request_for()
    died = result_for(request, list(REFERENCE["records"].values())[:1], events=[{"event": "kernel_died", "cell": 3}])
    scored = scoring.score(request, died, REFERENCE)
    assert scored.notes == ["kernel died in cell ex1_tests (a crash, os._exit, or the memory limit); "
                            "the tests after it score 0"] and not scored.flagged and scored.scores["ex1_tests"] == 1.5
    killed = RunResult(id="alice", notebook=None, records={}, events=[], seconds=5.0, returncode=-9,
                       report_ok=False, processes_limited=True)
    scored = scoring.score(request, killed, REFERENCE)
    assert scored.flagged and scored.scores == {"ex1_tests": 0.0} and "killed" in scored.notes[0]
    timed_out = RunResult(id="alice", notebook=None, records={}, events=[], seconds=300.0, returncode=None,
                          report_ok=False, processes_limited=True)
    scored = scoring.score(request, timed_out, REFERENCE)
    assert not scored.flagged and scored.notes == ["the notebook was stopped at its time limit"]
    grown = executed(request)
    grown.cells.append(V4.new_code_cell("smuggled"))
    scored = scoring.score(request, result_for(request, [], notebook=grown), REFERENCE)
    assert "could not be read back" in scored.notes[0] and len(scored.notebook.cells) == len(request.notebook.cells)
    never = scoring.score(request, RunResult.failed("alice", "no sandbox on worker h1: no bwrap"), REFERENCE)
    assert never.notes == ["not run: no sandbox on worker h1: no bwrap"] and never.scores == {"ex1_tests": 0.0}


# --- redaction -----------------------------------------------------------------------------------

def test_hidden_test_code_is_scrubbed_from_every_output_however_printed():
    source, release = assignment()
    lines = redact.hidden_lines(source)
    assert 'checks.record("ex1_tests/hidden", lambda: double(x_hidden))' in lines
    assert not any("BEGIN" in line or "assert double" in line for line in lines)  # visible code stays
    captured = source.cells[2].source.split("### BEGIN HIDDEN TESTS\n")[1]
    nb = V4.new_notebook(cells=[V4.new_code_cell("print(In)", outputs=[
        V4.new_output("stream", name="stdout", text=str(["", captured])),
        V4.new_output("execute_result", data={"text/plain": repr(captured)}, execution_count=1),
        V4.new_output("stream", name="stdout", text=json.dumps(captured)),
        V4.new_output("error", ename="E", evalue=captured, traceback=[captured]),
        V4.new_output("stream", name="stdout", text="ok: exercise 1, visible checks\n"),
    ])])
    assert redact.scrub_outputs(nb, lines) == 4
    text = json.dumps(nb)
    assert "x_hidden = torch" not in text and "hidden_int" not in text and redact.HIDDEN in text
    assert "ok: exercise 1, visible checks" in text


def test_markers_in_a_students_own_text_are_redacted():
    assert redact.without_markers("no BEGIN SOLUTION here") == f"no {redact.MARKER} here"


# --- intake --------------------------------------------------------------------------------------

def test_intake_keeps_the_upload_byte_for_byte_and_builds_a_request(tmp_path):
    source, release = assignment()
    folder = tmp_path / "subs" / "alice"
    folder.mkdir(parents=True)
    data = nbformat.writes(student(release)).encode() + b"\n\n"  # any bytes: kept as they are
    (folder / "homework (2).ipynb").write_bytes(data)
    (folder / "link.ipynb").symlink_to("/etc/hostname")
    taken = intake.intake(folder, intake.Assignment("a1", release, source), tmp_path / "uploads", Limits())
    kept = tmp_path / "uploads" / "alice"
    assert (kept / "homework (2).ipynb").read_bytes() == data and (kept / "link.ipynb").is_symlink()
    assert taken.outcome.upload_sha256 == intake.sha256(data)
    assert taken.outcome.notes[:2] == ["symbolic links ignored: link.ipynb",
                                       "notebook was named homework (2).ipynb; graded as a1.ipynb"]
    assert taken.request.id == "alice" and taken.request.filename == "a1.ipynb"
    assert "reference" not in json.dumps(asdict(taken.request))


def _nodes(value) -> bool:
    """Is every dict in value a NotebookNode, as nbformat's reader makes them?"""
    if isinstance(value, dict):
        return isinstance(value, nbformat.NotebookNode) and all(_nodes(v) for v in value.values())
    return all(_nodes(v) for v in value) if isinstance(value, list) else True


_V4 = {"nbformat": 4, "nbformat_minor": 5,
       "metadata": {"orig_nbformat": 3, "signature": "x", "kernelspec": {"name": "python3", "display_name": "P"}},
       "cells": [{"cell_type": "markdown", "id": "a", "metadata": {"trusted": True}, "source": ["# T\n", "text"],
                  "attachments": {"i.png": {"text/plain": ["a\n", "b"]}}},
                 {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": 1, "source": ["x = 1\n", "x"],
                  "outputs": [{"output_type": "stream", "name": "stdout", "text": ["1\n", "2"]},
                              {"output_type": "execute_result", "execution_count": 1, "metadata": {},
                               "data": {"text/plain": ["1\n", "2"], "application/json": {"k": [1, {"n": 2}]}}}]}]}


@pytest.mark.parametrize("text", [
    json.dumps(_V4),
    json.dumps({**_V4, "nbformat": 3, "nbformat_minor": 0, "worksheets": [{"cells": []}]}),  # older: nbformat's own
    json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}}),  # no cells
    json.dumps([_V4]), "{", json.dumps({"nbformat": 9}),
])
def test_a_notebook_is_read_as_nbformats_reader_reads_it(text):
    try:
        expected = nbformat.reader.reads(text)
    except Exception as err:
        with pytest.raises(type(err)):
            intake.read_notebook(text)
        return
    got = intake.read_notebook(text)
    assert got == expected and _nodes(got) == _nodes(expected)  # (a v4 notebook: nodes all the way down)


def test_a_graded_notebook_is_the_only_file_of_its_folder_and_a_regrade_rewrites_it_in_place(tmp_path):
    folder = tmp_path / "submitted" / "alice" / "a1"
    first, second = ({"cells": [], "metadata": {"n": n}, "nbformat": 4, "nbformat_minor": 5} for n in (1, 2))
    trusted.write_notebook(first, folder / "a1.ipynb")
    seen = tmp_path / "seen.ipynb"
    seen.hardlink_to(folder / "a1.ipynb")  # the same file, whatever its name
    (folder / "old.ipynb").write_text("{}")  # what an earlier tool may have left
    (folder / "extra").mkdir()
    (folder / "extra" / "data.txt").write_text("x")
    trusted.write_notebook(second, folder / "a1.ipynb")
    assert [p.name for p in folder.iterdir()] == ["a1.ipynb"]
    assert json.loads((folder / "a1.ipynb").read_text()) == second
    assert json.loads(seen.read_text()) == second  # rewritten, not deleted and made again
    elsewhere = tmp_path / "elsewhere.ipynb"
    elsewhere.write_text("{}")
    (folder / "a1.ipynb").unlink()
    (folder / "a1.ipynb").symlink_to(elsewhere)  # never written through
    trusted.write_notebook(first, folder / "a1.ipynb")
    assert not (folder / "a1.ipynb").is_symlink() and elsewhere.read_text() == "{}"


@pytest.mark.parametrize("files,found,notes", [
    (["sub/deep/x.ipynb", "notes.txt"], "sub/deep/x.ipynb", ["notebook was named sub/deep/x.ipynb; graded as a1.ipynb"]),
    (["x.ipynb", ".ipynb_checkpoints/x-checkpoint.ipynb"], "x.ipynb", ["notebook was named x.ipynb; graded as a1.ipynb"]),
    (["x.ipynb", "y/z.ipynb", "y/w.ipynb"], None, ["3 notebooks and none named a1.ipynb: x.ipynb, y/w.ipynb, y/z.ipynb"]),
    (["r.ipynb", "in.ipynb@", "folder@"], "r.ipynb", ["symbolic links ignored: in.ipynb",  # a linked folder: not entered
                                                     "notebook was named r.ipynb; graded as a1.ipynb"]),
    (["a1.ipynb/inner.ipynb"], "a1.ipynb/inner.ipynb", ["notebook was named a1.ipynb/inner.ipynb; graded as a1.ipynb"]),
])
def test_the_notebook_is_found_in_any_folder_of_the_upload_but_never_through_a_link(tmp_path, files, found, notes):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.ipynb").write_text("{}")
    folder = tmp_path / "alice"
    for rel in files:
        path = folder / rel.rstrip("@")
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("@"):
            path.symlink_to(outside if rel == "folder@" else outside / "o.ipynb")
        else:
            path.write_text("{}")
    outcome = intake.Outcome(student="alice")
    assert intake.find_notebook(folder, "a1", outcome) == (found and folder / found)
    assert outcome.notes == notes and outcome.status == ("graded" if found else "missing")


@pytest.mark.parametrize("name,content,status,note", [
    ("bob", b'{"cells": [', "ungradable", "not a valid notebook"),
    ("bob", b"\xff\xfe", "ungradable", "not a valid notebook"),
    ("bob", b"{" + b" " * (21 * 2**20) + b"}", "ungradable", "over the 20 MB limit"),
    ("bob", None, "missing", "no notebook"),
    ("-bob", b"{}", "ungradable", "not a valid student id"),
])
def test_intake_explains_what_it_cannot_grade(tmp_path, name, content, status, note):
    source, release = assignment()
    folder = tmp_path / name
    folder.mkdir()
    if content is not None:
        (folder / "a1.ipynb").write_bytes(content)
    taken = intake.intake(folder, intake.Assignment("a1", release, source), tmp_path / "uploads", Limits())
    assert taken.request is None and taken.outcome.status == status and note in taken.outcome.notes[-1]


def every_kind_of_notebook(minor=5):
    """A notebook with every kind of cell and of output, as nbformat writes it (lines split)."""
    outputs = [V4.new_output("stream", name="stdout", text="hi\n"),
               V4.new_output("error", ename="ValueError", evalue="no", traceback=["line"]),
               V4.new_output("display_data", data={"text/plain": "x", "image/png": "iVBOR"}),
               V4.new_output("execute_result", data={"text/plain": "3"}, execution_count=1)]
    nb = V4.new_notebook(cells=[V4.new_markdown_cell("# a"), V4.new_raw_cell("raw"),
                                V4.new_code_cell("1 + 2", outputs=outputs, execution_count=1)])
    nb = json.loads(nbformat.writes(nb))
    nb["nbformat_minor"] = minor
    if minor < 5:
        for cell in nb["cells"]:
            del cell["id"]
    return nb


BREAKS = {
    "a cell without source": lambda nb: nb["cells"][0].pop("source"),
    "an unknown cell type": lambda nb: nb["cells"][1].update(cell_type="cod"),
    "a code cell without outputs": lambda nb: nb["cells"][2].pop("outputs"),
    "a negative execution count": lambda nb: nb["cells"][2].update(execution_count=-1),
    "a markdown cell with outputs": lambda nb: nb["cells"][0].update(outputs=[]),
    "a cell id with a space": lambda nb: nb["cells"][0].update(id="a b"),
    "a stream without a name": lambda nb: nb["cells"][2]["outputs"][0].pop("name"),
    "an unknown output type": lambda nb: nb["cells"][2]["outputs"][0].update(output_type="strem"),
    "an error without a traceback": lambda nb: nb["cells"][2]["outputs"][1].pop("traceback"),
    "an output with a key of its own": lambda nb: nb["cells"][2]["outputs"][2].update(foo=1),
    "an execute result counted in words": lambda nb: nb["cells"][2]["outputs"][3].update(execution_count="one"),
    "metadata that is a list": lambda nb: nb.update(metadata=[]),
    "a minor version in words": lambda nb: nb.update(nbformat_minor="5"),
    "cells that are not a list": lambda nb: nb.update(cells={}),
    "a cell that is a string": lambda nb: nb["cells"].append("cell"),
    "a key of its own at the top": lambda nb: nb.update(extra=True),
}


@pytest.mark.parametrize("minor", [4, 5])
@pytest.mark.parametrize("change", [None, *BREAKS])
def test_the_schema_checked_cell_by_cell_gives_nbformats_verdict(minor, change):
    from grader import nbschema

    nb = every_kind_of_notebook(minor)
    if change:
        BREAKS[change](nb)
    try:
        with warnings.catch_warnings():  # nbformat's own note that a broken cell has no id
            warnings.simplefilter("ignore")
            nbformat.validate(copy.deepcopy(nb))
        theirs = True
    except Exception:
        theirs = False
    try:
        nbschema.check_notebook(nb)
        ours = True
    except nbschema.Invalid:
        ours = False
    assert ours == theirs == (change is None)


# --- the gradebook writer ------------------------------------------------------------------------

@pytest.fixture
def book(tmp_path):
    """A gradebook with assignment a1 as nbgrader's generate_assignment would record it."""
    from nbgrader import utils as nbutils
    from nbgrader.api import Gradebook

    source, release = assignment()
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with pipeline.venv_on_path(), Gradebook(url) as gb:
        gb.add_assignment("a1")
        gb.add_notebook("a1", "a1")
        for given, full in zip(release.cells, source.cells):
            stored = given if given.metadata.nbgrader["solution"] else full  # as nbgrader's SaveCells keeps it
            meta = given.metadata.nbgrader
            meta["checksum"] = nbutils.compute_checksum(given)
            gb.add_source_cell(meta["grade_id"], "a1", "a1", cell_type=given.cell_type, locked=meta["locked"],
                               source=stored.source, checksum=nbutils.compute_checksum(stored))
            if meta["grade"]:
                gb.add_grade_cell(meta["grade_id"], "a1", "a1", max_score=meta["points"], cell_type=given.cell_type)
            if meta["solution"]:
                gb.add_solution_cell(meta["grade_id"], "a1", "a1")
    return url, release


def graded_for(release, answer=True):
    nb = copy.deepcopy(release)
    if answer:
        nb.cells[4].source = "Because."
    return nb


def test_the_writer_records_trusted_scores_and_nbgraders_rules(book):
    url, release = book
    with gradebook.GradebookWriter(url, "a1") as writer:
        auto = gradebook.overwrite_cells(graded_for(release), writer.layout.cells)
        assert "x_hidden" in auto.cells[2].source  # locked cells as stored: hidden tests for formgrader
        writer.add(writer.layout.pending("alice", auto, {"ex1_tests": 1.5}))
        writer.add(writer.layout.pending("bob", gradebook.overwrite_cells(graded_for(release, answer=False), writer.layout.cells), {"ex1_tests": 3.0}))
        totals = writer.commit()
    assert totals["alice"] == gradebook.Total(1.5, 5.0, True)  # the written answer waits for a grader
    assert totals["bob"] == gradebook.Total(3.0, 5.0, False)  # an untouched answer scores 0, no review
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:
        assert gb.find_comment("ex2_answer", "a1", "a1", "bob").auto_comment == "No response."
        assert gb.find_comment("ex2_answer", "a1", "a1", "alice").auto_comment is None
        # the rows are the ones nbgrader's own Gradebook.add_submission makes
        gb.add_student("carol")
        gb.add_submission("a1", "carol")
        rows = lambda student: {kind: sorted((r.name, r.notebook.name) for r in getattr(
            gb.find_submission_notebook("a1", "a1", student), kind)) for kind in ("grades", "comments")}
        assert rows("alice") == rows("carol") and rows("alice")["grades"] and rows("alice")["comments"]
        assert not gb.find_submission_notebook("a1", "a1", "alice").late_submission_penalty


def test_regrading_updates_in_place_and_keeps_manual_grades(book):
    url, release = book
    from nbgrader.api import Gradebook

    with gradebook.GradebookWriter(url, "a1") as writer:
        writer.add(writer.layout.pending("alice", gradebook.overwrite_cells(graded_for(release), writer.layout.cells), {"ex1_tests": 1.5}))
        writer.commit()
    with Gradebook(url) as gb:
        grade = gb.find_grade("ex2_answer", "a1", "a1", "alice")
        grade.manual_score = 2.0
        gb.db.commit()
    with gradebook.GradebookWriter(url, "a1") as writer:
        writer.add(writer.layout.pending("alice", gradebook.overwrite_cells(graded_for(release), writer.layout.cells), {"ex1_tests": 3.0}))
        totals = writer.commit()
    assert totals["alice"] == gradebook.Total(5.0, 5.0, True)  # nbgrader: a manual grade stays up for review
    with Gradebook(url) as gb:
        assert len(gb.find_assignment("a1").submissions) == 1 and len(gb.students) == 1


def test_new_rows_hold_the_values_a_regrade_writes_over_them(book):
    """A first recording creates the rows with their values; a regrade updates them in place.
    Both give the same rows, also in one transaction that holds both kinds."""
    import datetime as dt

    from nbgrader.api import Gradebook

    url, release = book

    def pending(writer, student, answer, late):
        made = writer.layout.pending(student, gradebook.overwrite_cells(graded_for(release, answer), writer.layout.cells),
                                     {"ex1_tests": 1.5})
        if late:
            made.timestamp, made.extension, made.late_penalty = dt.datetime(2026, 10, 2), dt.timedelta(hours=5), 0.5
        return made

    def rows(student):
        with Gradebook(url) as gb:
            notebook, submission = gb.find_submission_notebook("a1", "a1", student), gb.find_submission("a1", student)
            return (sorted((g.name, g.auto_score, g.needs_manual_grade) for g in notebook.grades),
                    sorted((c.name, c.auto_comment) for c in notebook.comments),
                    notebook.late_submission_penalty, submission.timestamp, submission.extension)

    with gradebook.GradebookWriter(url, "a1") as writer:
        writer.add(pending(writer, "alice", True, True))
        writer.add(pending(writer, "bob", False, False))
        writer.commit()
    first = {s: rows(s) for s in ("alice", "bob")}
    assert first["alice"][0] != first["bob"][0] and first["alice"][2] == 0.5
    with gradebook.GradebookWriter(url, "a1") as writer:  # bob and alice again, carol new: both paths at once
        for student, answer, late in (("bob", False, False), ("carol", True, True), ("alice", True, True)):
            writer.add(pending(writer, student, answer, late))
        writer.commit()
    assert {s: rows(s) for s in ("alice", "bob")} == first and rows("carol") == first["alice"]


def test_lateness_goes_into_nbgraders_own_columns(book):
    """Due date, timestamp, extension and penalty where nbgrader's formgrader and feedback read them."""
    import datetime as dt

    from nbgrader.api import Gradebook

    url, release = book
    due = dt.datetime(2026, 10, 1, 21, 59)
    with gradebook.GradebookWriter(url, "a1") as writer:
        writer.set_duedate(due)
        for student, when, extension, penalty in (("alice", due + dt.timedelta(days=3), dt.timedelta(days=2), 0.5),
                                                  ("bob", due - dt.timedelta(hours=1), None, None)):
            pending = writer.layout.pending(student, gradebook.overwrite_cells(graded_for(release), writer.layout.cells),
                                            {"ex1_tests": 3.0})
            pending.timestamp, pending.extension, pending.late_penalty = when, extension, penalty
            writer.add(pending)
        writer.commit()
    with Gradebook(url) as gb:
        alice, bob = gb.find_submission("a1", "alice"), gb.find_submission("a1", "bob")
        assert gb.find_assignment("a1").duedate == due
        assert alice.total_seconds_late == 86400 and alice.late_submission_penalty == 0.5  # late by a day after the extension
        assert bob.total_seconds_late == 0 and bob.late_submission_penalty == 0 and bob.extension is None


# --- the local executor --------------------------------------------------------------------------

def test_the_local_pool_runs_requests_and_answers_each_one_even_when_broken():
    """A real kernel (unsandboxed: the code is ours), and a request no run can satisfy."""
    from grader.executors import LocalPool

    tag = lambda role: {canonical.TAG: {"role": role, "grade_id": None}}
    nb = V4.new_notebook(cells=[
        V4.new_code_cell("from utils import checks\nprint('hello')", metadata=tag("locked")),
        V4.new_code_cell('checks.record("ex1_tests/one", lambda: 1.5)', metadata=tag("probe"))])
    good = RunRequest(id="good", filename="a1.ipynb", notebook=nb, limits=asdict(Limits(notebook_seconds=60)),
                      nonce={}, sandboxed=False)
    bad = RunRequest(id="bad", filename="a1.ipynb", notebook=nb, limits={"cell_seconds": 1}, nonce={}, sandboxed=False)
    results = {r.id: r for r in LocalPool(2).map_unordered([good, bad])}
    assert set(results) == {"good", "bad"}
    assert "limits are not grader.sandbox.Limits" in results["bad"].error and not results["bad"].report_ok
    ran = results["good"]
    assert ran.report_ok and ran.error == "" and ran.notebook["cells"][0]["outputs"][0]["text"] == "hello\n"
    recs, _ = records.load_bundle_records(ran.records)
    assert recs["ex1_tests/one"]["value"] == 1.5
    assert ran.timings["kernel"] > 0 and set(ran.timings["cells"]) == {"locked", "probe"}
    assert ran.timings["sandbox"] > 0  # from starting the runner to its first line


def test_the_resume_log_keeps_the_last_line_per_student_and_skips_a_torn_one(tmp_path):
    from grader.autograde import recorded, recorded_log

    assert recorded(tmp_path, "a1") == {}
    log = recorded_log(tmp_path, "a1")
    log.parent.mkdir(parents=True)
    line = lambda student, key: json.dumps({"key": key, "outcome": {"student": student}}) + "\n"
    log.write_text(line("alice", "k1") + line("bob", "k1") + line("alice", "k2") + line("carol", "k2")[:20])
    kept = recorded(tmp_path, "a1")
    assert set(kept) == {"alice", "bob"} and kept["alice"]["key"] == "k2"


def test_only_a_run_that_ended_without_a_report_is_run_again():
    from grader.autograde import lost

    killed = RunResult(id="a", notebook=None, records={}, events=[], seconds=1.0, returncode=-9, report_ok=False)
    timed_out = RunResult(id="a", notebook=None, records={}, events=[], seconds=9.0, returncode=None, report_ok=False)
    reported = RunResult(id="a", notebook={}, records={}, events=[{"event": "kernel_died", "cell": 2}], seconds=1.0)
    assert lost(killed) and not lost(timed_out) and not lost(reported)
    assert not lost(RunResult.failed("a", "no sandbox on worker h1"))


def test_the_broker_is_redis_or_rabbitmq_and_results_always_go_to_redis(monkeypatch):
    from grader.broker import VISIBILITY_ENV, make_app
    from grader.report import GraderError

    app = make_app("redis://:secret@queue:6379/0")
    assert app.conf.result_backend == "redis://:secret@queue:6379/0"  # the broker's Redis keeps the results
    assert app.conf.broker_transport_options["visibility_timeout"] == 600
    monkeypatch.setenv(VISIBILITY_ENV, "30")
    assert make_app("redis://queue/0").conf.broker_transport_options["visibility_timeout"] == 30
    assert make_app("amqp://u:p@mq:5672//", "redis://store/1").conf.result_backend == "redis://store/1"
    with pytest.raises(GraderError, match=r"need a Redis server: give its URL with --results"):
        make_app("amqp://u:secret@mq:5672//")
    with pytest.raises(GraderError, match=r"Redis .* or RabbitMQ") as refused:
        make_app("sqs://u:secret@aws")
    assert "secret" not in str(refused.value)  # the password is never printed
