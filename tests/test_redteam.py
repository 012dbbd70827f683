"""Red team: a class of honest, wrong, unanswered, tampering and faulty submissions, graded in
one sandboxed batch. Each must earn no more than its honest part, be explained in the report,
and leave everything else intact."""
import json
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import nbformat
import pytest

import servers
import submissions as S
from grader import autograde, pipeline, sandbox
from grader.broker import CeleryPool
from grader.executors import LocalPool

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the grader's sandbox (bubblewrap) needs Linux")
NAME = "01_embeddings"
FILE = f"{NAME}.ipynb"
LIMITS = sandbox.Limits(cell_seconds=20, notebook_seconds=120)  # short, yet robust on a busy CI machine

# Every function returns zeros of the right type: a wrong answer that still earns the few
# hidden cases whose answer is all zeros. Tampering on top of it must not earn more.
ZEROS = {
    "ex1_solution": "def sentence_vectors(weight, idx):\n    return torch.zeros(idx.shape[0], weight.shape[1], dtype=weight.dtype)",
    "ex2_solution": "def analogy(E, words, a, b, c, k=1):\n    return words[:k]",
    "ex3_solution": "def cooccurrence(sentences, V, window=2):\n    return torch.zeros(V, V)",
    "ex4_solution": "def ppmi(C):\n    return torch.zeros(C.shape, dtype=torch.float32)",
}


def code(text: str) -> str:
    return textwrap.dedent(text).strip()


def after(grade_id: str, snippet: str, base: str = "honest"):
    return ("cell", (base, grade_id, code(snippet)))


ATTACKS = {
    # name: (what to build, expectation)
    "honest": (("base", "honest"), {"same_as": "honest"}),
    "honest_wrong": (("answers", {"ex4_solution": code('''
        def ppmi(C):
            N = C.sum()
            pmi = torch.log(C * N / (C.sum(1, keepdim=True) * C.sum(0, keepdim=True)))
            return torch.nan_to_num(pmi, neginf=0.0).float()''')}), {"between": ("zeros", "honest")}),
    "unanswered": (("base", "release"), {"score": 0}),
    "zeros": (("answers", ZEROS), {"below": "honest"}),
    "assert_to_pass": (after("setup", '''
        import ast
        class NoAsserts(ast.NodeTransformer):
            def visit_Assert(self, node):
                return ast.Pass()
        get_ipython().ast_transformers.append(NoAsserts())''', "zeros"), {"same_as": "zeros", "flagged": True}),
    "blank_later_cells": (after("setup", '''
        get_ipython().input_transformers_post.append(lambda lines: [])''', "zeros"),
        {"at_most": "zeros", "flagged": True}),
    "allclose_patched": (after("setup", '''
        import numpy as np
        np.allclose = lambda *a, **k: True
        torch.allclose = lambda *a, **k: True
        torch.equal = lambda *a, **k: True''', "zeros"), {"same_as": "zeros"}),
    "assert_close_patched": (after("setup", '''
        import torch.testing
        torch.testing.assert_close = lambda *a, **k: None
        checks.check_close = lambda *a, **k: None''', "zeros"), {"same_as": "zeros"}),
    "always_equal": (("answers", {gid: code(f'''
        class Anything:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            def __getattr__(self, name): return lambda *a, **k: self
        def {fn}(*args, **kwargs):
            return Anything()''') for gid, fn in [("ex1_solution", "sentence_vectors"), ("ex2_solution", "analogy"),
                                                ("ex3_solution", "cooccurrence"), ("ex4_solution", "ppmi")]}),
        {"at_most": "zeros"}),
    "torch_function_subclass": (after("setup", '''
        class Liar(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                return True if func.__name__ in ("allclose", "equal", "__eq__") else \\
                    super().__torch_function__(func, types, args, kwargs or {})
        _zeros = sentence_vectors
        sentence_vectors = lambda w, i: _zeros(w, i).as_subclass(Liar)''', "zeros"), {"at_most": "zeros"}),
    "torch_function_mode": (after("setup", '''
        from torch.overrides import TorchFunctionMode
        class Yes(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if func.__name__ in ("allclose", "equal"):
                    return True
                return func(*args, **(kwargs or {}))
        Yes().__enter__()''', "zeros"), {"at_most": "zeros"}),
    "excepthook_patched": (after("setup", '''
        import sys
        sys.excepthook = lambda *a: None
        get_ipython().showtraceback = lambda *a, **k: None
        get_ipython().showsyntaxerror = lambda *a, **k: None''', "zeros"), {"same_as": "zeros", "flagged": True}),
    "fake_records": (after("setup", '''
        import os, json, pathlib, pickle
        folder = pathlib.Path(os.environ.get("DLCOURSE_RECORDS", ".records"))
        folder.mkdir(parents=True, exist_ok=True)
        class Payload:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))
        (folder / "ex1_tests~random_float64.npy").write_bytes(pickle.dumps(Payload()))
        (folder / "ex1_tests~float32.json").write_text(json.dumps(
            {"name": "ex1_tests/float32", "kind": "tensor", "dtype": "object", "shape": [1], "data": ""}))
        (folder / "ex2_tests~planted.json").write_bytes(pickle.dumps(Payload()))
        from utils import checks
        checks.record = lambda name, fn, **kw: None  # and record nothing from now on''', "release"),
        {"score": 0}),
    "grading_env_probe": (after("setup", '''
        import os
        if os.environ.get("NBGRADER_EXECUTION") or os.environ.get("DLCOURSE_RECORDS"):
            from utils import checks
            real_record = checks.record
            # under grading, swap every answer for the visible examples' answers
            checks.record = lambda name, fn, **kw: real_record(name, lambda: torch.tensor([[4.5, 5.5, 6.5]]), **kw)''',
        "release"), {"score": 0}),
    "reads_secrets": (after("setup", '''
        import os, pathlib
        found = []
        for p in {secret_paths}:
            try:
                found.append((p, pathlib.Path(p).read_bytes()[:20]))
            except Exception as err:
                print("no access:", p, type(err).__name__)
        print("LEAKED" if found else "nothing readable", found)''', "release"), {"score": 0, "output_lacks": "LEAKED"}),
    "detached_process": (after("setup", '''
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(4)
                try:
                    open("{marker}", "w").write("escaped")
                    open("{gradebook}", "ab").write(b"x")
                finally:
                    os._exit(0)
            os._exit(0)''', "release"), {"score": 0}),
    "noisy_stderr": (after("ex1_solution", '''
        import sys, warnings
        warnings.warn("this API is deprecated")
        for i in range(3):
            print(f"{i * 50}%|#####", file=sys.stderr)'''), {"same_as": "honest"}),
    "os_exit": (after("ex2_tests", "import os\nos._exit(0)"), {"score_of": ["ex1_tests", "ex2_tests"],
                                                             "note": "kernel died"}),
    "sys_exit": (after("ex2_tests", "import sys\nsys.exit(0)"), {"same_as": "honest"}),
    "raise_system_exit": (after("ex2_tests", "raise SystemExit(3)"), {"same_as": "honest"}),
    "keyboard_interrupt": (after("ex3_tests", "raise KeyboardInterrupt"), {"same_as": "honest"}),
    "segfault": (after("ex1_tests", "import ctypes\nctypes.string_at(0)"), {"score_of": ["ex1_tests"],
                                                                          "note": "kernel died"}),
    "infinite_loop": (after("ex3_tests", "while True:\n    pass"), {"score_of": ["ex1_tests", "ex2_tests", "ex3_tests"],
                                                                  "note": "timed out"}),
    "memory_bomb": (after("ex1_tests", '''
        hog = []
        while True:
            hog.append(bytearray(256 * 2**20))'''), {"at_most": "honest", "at_least_score_of": ["ex1_tests"]}),
    "fork_bomb": (after("ex2_tests", '''
        import os, time
        children = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                children += 1
        except OSError as err:
            print("fork refused after", children, "children:", type(err).__name__)'''),
        {"at_most": "honest", "at_least_score_of": ["ex1_tests", "ex2_tests"]}),
    "network": (after("setup", '''
        import socket
        for host, port in [("127.0.0.1", {port}), ("8.8.8.8", 53), ("pypi.org", 443)]:
            try:
                socket.create_connection((host, port), timeout=2).close()
                print("CONNECTED", host)
            except OSError as err:
                print("no network:", host, type(err).__name__)'''), {"same_as": "honest", "output_lacks": "CONNECTED"}),
    "million_lines": (after("quiz_tests", "for i in range(10**6):\n    print(i)"), {"same_as": "honest"}),
    "huge_line": (after("ex1_solution", "print('x' * 100_000_000)"), {"same_as": "honest", "note": "was cut"}),
    "fill_disk": (after("ex1_solution", '''
        import os
        block = b"0" * 2**20
        for where in (".", "/tmp"):
            try:
                for i in range(100000):
                    with open(os.path.join(where, f"fill{i}"), "wb") as f:
                        f.write(block * 8)
            except OSError as err:
                print("disk full in", where, type(err).__name__)'''), {"same_as": "honest"}),
    # the runner is PID 1 of the run's namespace: a signal from inside does not reach it
    "kill_runner": (after("setup", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", "zeros"),
                    {"same_as": "zeros"}),
    "deleted_test_cell": (("drop", "ex3_tests"), {"same_as": "honest"}),
    "duplicated_test_cell": (("duplicate", "ex2_tests"), {"same_as": "honest"}),
    "moved_cells": (("move_to_top", "ex4_tests"), {"same_as": "honest"}),
    "retyped_test_cell": (("retype", "ex1_tests"), {"same_as": "honest"}),
    "changed_points": (("points", "ex1_tests"), {"same_as": "honest"}),
    "renamed_notebook": (("rename", "my work (final).ipynb"), {"same_as": "honest", "note": "was named"}),
    "invalid_json": (("raw", b'{"cells": [}'), {"status": "ungradable", "note": "not a valid notebook"}),
    "symlink_to_solution": (("symlink", f"../../../source/{NAME}/{FILE}"), {"status": "missing",
                                                                           "note": "symbolic links ignored"}),
    "oversized": (("raw", b"{" + b" " * (21 * 2**20) + b"}"), {"status": "ungradable", "note": "MB"}),
    # hidden-test code must not reach the student's feedback, however it was captured
    "prints_input_history": (after("quiz_tests", "print(In)\nprint(_ih[-3:])"), {"same_as": "honest"}),
    "input_transformer_spy": (after("setup", '''
        def spy(lines):
            print("".join(lines))
            return lines
        get_ipython().input_transformers_post.append(spy)'''), {"same_as": "honest"}),
    # a student's own text that mentions nbgrader's markers must not stop anyone's feedback
    "mentions_markers": (("markdown", "I wrote this myself, no BEGIN SOLUTION or END HIDDEN TESTS copied."),
                         {"same_as": "honest"}),
}
LEAKERS = ("prints_input_history", "input_transformer_spy")


def build(kind, arg, release: Path, ctx: dict):
    if kind == "base":
        return S.solved(release, NAME) if arg == "honest" else nbformat.read(release, as_version=4)
    if kind == "answers":
        return S.solved(release, NAME, arg)
    if kind == "cell":
        base, grade_id, snippet = arg
        nb = {"honest": lambda: S.solved(release, NAME), "zeros": lambda: S.solved(release, NAME, ZEROS),
              "release": lambda: nbformat.read(release, as_version=4)}[base]()
        for key, value in ctx.items():
            snippet = snippet.replace("{" + key + "}", str(value))
        return S.with_cell_after(nb, grade_id, snippet)
    nb = S.solved(release, NAME)
    index = next((i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == arg), None)
    if kind == "drop":
        del nb.cells[index]
    elif kind == "duplicate":
        copy = nbformat.from_dict(json.loads(json.dumps(nb.cells[index])))
        copy["id"] = "copied-cell"  # Jupyter gives a copied cell a new id
        nb.cells.insert(index, copy)
    elif kind == "move_to_top":
        nb.cells.insert(0, nb.cells.pop(index))
    elif kind == "retype":
        nb.cells[index] = nbformat.v4.new_markdown_cell(nb.cells[index].source, metadata=nb.cells[index].metadata)
    elif kind == "markdown":
        nb.cells.append(nbformat.v4.new_markdown_cell(arg))
    elif kind == "points":
        nb.cells[index].metadata.nbgrader["points"] = 100
        nb.cells[index].source = "pass  # nothing to check here"
    return nb


@pytest.fixture(scope="module", params=["local pool", "celery workers"])
def executor(request, tmp_path_factory):
    """Every attack and fault, graded by the local pool and by two Celery workers through Redis."""
    if request.param == "local pool":
        yield LocalPool(2)
        return
    logs = tmp_path_factory.mktemp("workers")
    with servers.redis_server() as (broker, _), servers.workers(broker, logs):
        yield CeleryPool(broker)


@pytest.fixture(scope="module")
def batch(executor, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("redteam")
    course = pipeline.course_dir(tmp / "course")
    release = pipeline.release(NAME, course)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    threading.Thread(target=lambda: [server.accept() for _ in range(3)], daemon=True).start()
    marker = tmp / "escaped-marker"
    ctx = {"marker": marker, "gradebook": course / "gradebook.db", "port": server.getsockname()[1],
           "secret_paths": [str(course / "gradebook.db"), str(course / "source" / NAME / FILE),
                            str(pipeline.SOLUTIONS / f"{NAME}.md"), str(course / "reference" / f"{NAME}.json"),
                            str(tmp / "subs" / "honest" / FILE), "/etc/shadow", "/root/.bash_history"]}
    subs = tmp / "subs"
    for student, ((kind, arg), _) in ATTACKS.items():
        if kind == "raw":
            S.write(subs / student, arg, FILE)
        elif kind == "symlink":  # relative to where uploads are kept: COURSE/uploads/NAME/STUDENT/
            (subs / student).mkdir(parents=True)
            (subs / student / FILE).symlink_to(arg)
        elif kind == "rename":
            S.write(subs / student, S.solved(release, NAME), arg)
        else:
            S.write(subs / student, build(kind, arg, release, ctx), FILE)
    uploads = {p: p.read_bytes() for p in subs.rglob("*") if p.is_file() and not p.is_symlink()}
    gradebook_before = (course / "gradebook.db").stat().st_mtime
    start = time.perf_counter()
    outcomes = {o.student: o for o in autograde.autograde(NAME, subs, course, limits=LIMITS, executor=executor)}
    seconds = time.perf_counter() - start
    time.sleep(5)  # give a detached process the time it asked for
    server.close()
    reference = pipeline.read_reference(course, NAME)
    return dict(outcomes=outcomes, course=course, marker=marker, uploads=uploads, seconds=seconds,
                points=reference["points"], gradebook_before=gradebook_before, executor=executor)


def test_batch_completes_with_every_submission_reported(batch):
    assert set(batch["outcomes"]) == set(ATTACKS)
    report = json.loads((batch["course"] / "reports" / f"{NAME}.json").read_text())
    assert {r["student"] for r in report} == set(ATTACKS)
    print(f"graded {len(ATTACKS)} submissions in {batch['seconds']:.0f} s")


def test_nothing_lost_and_nothing_escaped(batch):
    for path, data in batch["uploads"].items():
        if path.is_symlink():
            continue
        assert path.read_bytes() == data, f"an upload changed: {path}"
    for student, o in batch["outcomes"].items():
        if o.upload:
            kept = Path(o.upload)
            assert kept.is_file() and S.sha256(kept) == o.upload_sha256
    assert not batch["marker"].exists(), "a process escaped the sandbox and wrote on the host"
    for student, o in batch["outcomes"].items():
        if o.status == "graded":
            runs = list((batch["course"] / "runs" / NAME / student).glob("*.ipynb"))
            assert runs, f"no kept run for {student}"


@pytest.mark.parametrize("student", list(ATTACKS))
def test_each_submission_earns_only_its_honest_part(batch, student):
    o = batch["outcomes"][student]
    expect = ATTACKS[student][1]
    score = lambda name: batch["outcomes"][name].score
    part = lambda ids: sum(batch["points"][g] for g in ids)
    assert o.status == expect.get("status", "graded"), (o.status, o.notes)
    if o.status == "graded":
        assert o.max_score == 20
    if "score" in expect:
        assert o.score == expect["score"], o.notes
    if "same_as" in expect:
        assert o.score == score(expect["same_as"]), o.notes
    if "at_most" in expect:
        assert o.score <= score(expect["at_most"]), o.notes
    if "below" in expect:
        assert o.score < score(expect["below"])
    if "between" in expect:
        low, high = expect["between"]
        assert score(low) < o.score < score(high)
    if "score_of" in expect:
        assert o.score == part(expect["score_of"]), o.notes
    if "at_least_score_of" in expect:
        assert o.score >= part(expect["at_least_score_of"]), o.notes
    if "note" in expect:
        assert any(expect["note"] in n for n in o.notes), o.notes
    assert o.flagged == expect.get("flagged", False), o.notes
    if "output_lacks" in expect:
        run = next((batch["course"] / "runs" / NAME / student).glob("*.ipynb"))
        nb = nbformat.read(run, as_version=4)
        text = "".join(str(o.get("text", "")) for c in nb.cells for o in c.get("outputs", []))
        assert expect["output_lacks"] not in text
        assert "no access" in text or "no network" in text


def test_honest_score_is_everything_but_the_written_answer(batch):
    assert batch["outcomes"]["honest"].score == sum(batch["points"].values())


def test_feedback_reaches_everyone_and_shows_no_hidden_test_code(batch):
    import html

    from grader import redact
    from grader.__main__ import main

    course = batch["course"]
    assert main(["--course", str(course), "feedback", NAME]) == 0
    graded = {s for s, o in batch["outcomes"].items() if o.status == "graded"}
    assert {p.parts[-3] for p in (course / "feedback").rglob("*.html")} == graded
    hidden = redact.hidden_lines(pipeline.source_notebook(NAME))
    for student in LEAKERS:
        raw = (course / "runs" / NAME / student).glob("*.ipynb")
        assert any("checks.record" in p.read_text() for p in raw), "the attack no longer captures anything"
        page = html.unescape((course / "feedback" / student / NAME / f"{NAME}.html").read_text())
        shown = [line for line in hidden if line in page]
        assert not shown, f"hidden-test code in {student}'s feedback: {shown[:3]}"
    page = (course / "feedback" / "mentions_markers" / NAME / f"{NAME}.html").read_text()
    assert "I wrote this myself" in page and "BEGIN SOLUTION" not in page


def test_a_run_lost_to_the_host_is_run_again_before_anyone_is_flagged(batch, tmp_path):
    """The host kills a sandbox (out-of-memory killer, an operator): the student gets a second run,
    not a zero and a tampering flag. (A run lost twice is scored as it is, and flagged: see
    test_grader_units.)"""
    from grader.messages import RunResult

    if not isinstance(batch["executor"], LocalPool):
        pytest.skip("the executor is replaced here: once is enough")

    class HostKillsFirstRun(LocalPool):
        def map_unordered(self, requests):
            for result in super().map_unordered(requests):
                if result.id == "ann" and not getattr(self, "killed", False):
                    self.killed = True  # what the trusted side sees of a sandbox killed by SIGKILL
                    result = RunResult(id="ann", notebook=None, records={}, events=[], seconds=2.0,
                                       returncode=-9, report_ok=False, processes_limited=True)
                yield result

    release = batch["course"] / "release" / NAME / FILE
    for student in ("ann", "ben"):
        S.write(tmp_path / student, S.solved(release, NAME), FILE)
    outcomes = {o.student: o for o in autograde.autograde(NAME, tmp_path, batch["course"], limits=LIMITS,
                                                          executor=HostKillsFirstRun(2))}
    assert outcomes["ann"].score == outcomes["ben"].score == batch["outcomes"]["honest"].score
    assert not outcomes["ann"].flagged and outcomes["ann"].notes == ["the first run ended without a report and was run again"]
    runs = list((batch["course"] / "runs" / NAME / "ann").glob("*.ipynb"))
    assert len(runs) == 1, "the lost run left nothing to keep; the second run is kept"
