"""An instructor's whole term on one assignment, with real parts: a Canvas and a Moodle download
made here in their naming schemes (late, re-uploaded, unattributable and, first, a hostile one), collect,
autograde in the sandbox with a late policy, nbgrader's formgrader driven in Chromium to grade a
written answer, feedback, the similarity report, and the exports Canvas and Moodle import."""
import csv
import json
import re
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import nbformat
import pytest

import submissions as S
from grader import formgrader, pipeline, redact
from grader.__main__ import main
from servers import free_port

NAME = "01_embeddings"
ROSTER = """student_id,name,canvas_id,moodle_id,email,sis_user_id
s001,Ada Lovelace,1001,501,ada@example.org,SIS-1
s002,Alan Turing,1002,502,alan@example.org,SIS-2
s003,Grace Hopper,1003,503,grace@example.org,SIS-3
s004,Kurt Godel,1004,504,kurt@example.org,SIS-4
s005,Emmy Noether,1005,505,emmy@example.org,SIS-5
"""
DEADLINES = """[policy]
percent_per_day = 10
max_percent = 50

[due]
01_embeddings = 2026-10-01T23:59:00+02:00
"""
TIMES = """id,submitted_at
1001,2026-10-01T20:00:00+02:00
1002,2026-10-03T08:00:00+02:00
1003,2026-10-01T23:00:00+02:00
1004,2026-10-01T23:30:00+02:00
"""
COMMENT = "Clear, and it cites the measured accuracy."


def notebook_bytes(nb) -> bytes:
    return nbformat.writes(nb).encode()


def renamed_copy(nb):
    """Ada's notebook with the variables renamed and a comment added: the same code."""
    text = nbformat.writes(nb)
    for old, new in (("mask", "keep"), ("summed", "total"), ("target", "goal"), ("sims", "scores"),
                     ("expected", "baseline")):
        text = text.replace(old, new)
    return text.encode()


def lms_name(lms: str, student: tuple[str, str, str], filename: str, late: bool = False) -> str:
    """The path the LMS gives a student's file in its download."""
    first, last, lms_id = student
    if lms == "canvas":
        return f"{last}{first}_{'LATE_' * late}{lms_id}_7{lms_id}_{filename}"
    return f"{first.title()} {last.title()}_{int(lms_id) - 500}_assignsubmission_file_/{filename}"


ADA, ALAN, GRACE, KURT, NOBODY = (("ada", "lovelace", "1001"), ("alan", "turing", "1002"), ("grace", "hopper", "1003"),
                                  ("kurt", "godel", "1004"), ("no", "body", "1999"))


@pytest.fixture(scope="module", params=["canvas", "moodle"])
def term(request, tmp_path_factory):
    """The course after release, with the downloads the instructor got from the LMS."""
    lms = request.param
    tmp = tmp_path_factory.mktemp(f"term-{lms}")
    course = pipeline.course_dir(tmp / "course")
    assert main(["--course", str(course), "release", NAME]) == 0
    release = course / "release" / NAME / f"{NAME}.ipynb"
    ada = S.solved(release, NAME)
    only_quiz = nbformat.read(release, as_version=4)  # Grace's last upload: the quiz only
    for cell in only_quiz.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "quiz_answers":
            cell.source = "q1 = True\nq2 = False\nq3 = True\nq4 = False"
    # Grace uploaded twice: first the untouched release, then the quiz; Canvas numbers the second
    # upload, Moodle keeps both files under their own names
    grace_first, grace_last = (f"{NAME}.ipynb", f"{NAME}-1.ipynb") if lms == "canvas" else ("draft.ipynb", f"{NAME}.ipynb")
    with zipfile.ZipFile(tmp / "submissions.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(lms_name(lms, ADA, f"{NAME}.ipynb"), notebook_bytes(ada))
        z.writestr(lms_name(lms, ALAN, f"{NAME}.ipynb", late=True), notebook_bytes(S.solved(release, NAME, S.OWN_ANSWERS)))
        z.writestr(lms_name(lms, GRACE, grace_first), notebook_bytes(nbformat.read(release, as_version=4)))
        z.writestr(lms_name(lms, GRACE, grace_last), notebook_bytes(only_quiz))
        z.writestr(lms_name(lms, KURT, f"{NAME}.ipynb"), renamed_copy(ada))
        z.writestr(lms_name(lms, NOBODY, f"{NAME}.ipynb"), notebook_bytes(ada))
    with zipfile.ZipFile(tmp / "hostile.zip", "w") as z:
        z.writestr(lms_name(lms, ADA, f"{NAME}.ipynb"), notebook_bytes(ada))
        z.writestr("../../../course/reference/01_embeddings.json", b"{}")
    for name, text in (("roster.csv", ROSTER), ("times.csv", TIMES)):
        (tmp / name).write_text(text)
    (course / "deadlines.toml").write_text(DEADLINES)
    return tmp, course, lms


def test_a_hostile_download_is_refused_and_nothing_collected(term, capsys):
    tmp, course, _ = term
    assert main(["--course", str(course), "collect", NAME, "--download", str(tmp / "hostile.zip"),
                 "--roster", str(tmp / "roster.csv")]) == 1
    assert "climbs out of the folder" in capsys.readouterr().err
    assert not (course / "collected").exists() and not (course / "lms").exists()


@pytest.fixture(scope="module")
def graded(term):
    tmp, course, lms = term
    assert main(["--course", str(course), "collect", NAME, "--download", str(tmp / "submissions.zip"),
                 "--roster", str(tmp / "roster.csv"), "--times", str(tmp / "times.csv")]) == 0
    unsafe = [] if sys.platform == "linux" else ["--unsafe-no-sandbox"]
    assert main(["--course", str(course), "autograde", NAME, *unsafe]) == 0  # reads what collect made
    return tmp, course, {o.student: o for o in pipeline.read_report(course, NAME)}, lms


def test_collect_and_autograde_apply_the_late_policy(graded):
    tmp, course, o, lms = graded
    report = json.loads((course / "reports" / f"{NAME}.collect.json").read_text())
    assert report["lms"] == lms and report["missing"] == ["s005"] and report["several"] == ["s003"]
    assert [u["file"] for u in report["unattributed"]] == [lms_name(lms, NOBODY, f"{NAME}.ipynb")]
    assert set(o) == {"s001", "s002", "s003", "s004"} and all(x.status == "graded" for x in o.values())
    full = o["s001"].max_score
    assert o["s002"].score == o["s001"].score, "the second student's own answers are right"
    assert o["s002"].days_late == 2 and o["s002"].late_penalty == pytest.approx(0.2 * full)
    assert "2 days late" in " ".join(o["s002"].notes)
    assert o["s001"].late_penalty == 0 and o["s001"].submitted_at == "2026-10-01T18:00:00Z"
    assert 0 < o["s003"].score < 3, "Grace's later upload (the quiz only) is the one graded"
    kept = course / "uploads" / NAME / "s003" / f"{NAME}.ipynb"
    assert S.sha256(kept) == report["students"]["s003"]["sha256"] == o["s003"].upload_sha256


def test_status_says_who_is_late_missing_and_waiting_for_a_grader(graded, capsys):
    tmp, course, *_ = graded
    assert main(["--course", str(course), "status", NAME]) == 0
    out = capsys.readouterr().out
    assert "4 graded" in out and "1 no submission" in out and "nothing handed in: 1 (s005)" in out
    assert re.search(r"late: 1\n  s002: handed in 2026-10-03T06:00:00Z, 4 off", out)
    assert "needs manual grading: 3 (s001, s002, s004)" in out  # Grace left the written answer untouched


@pytest.fixture(scope="module")
def formgraded(graded, browser):
    """s001's written answer graded, and commented, in formgrader, by a browser."""
    tmp, course, outcomes, _ = graded
    port, token = free_port(), "term-test-token"
    server = subprocess.Popen([sys.executable, "-m", "grader", "--course", str(course), "formgrader",
                               "--port", str(port), "--token", token],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/formgrader/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        from nbgrader.api import Gradebook

        with Gradebook(pipeline.db_url(course)) as gb:
            submission = gb.find_submission_notebook(NAME, NAME, "s001").id
        page = browser.new_page()
        page.goto(formgrader.login_url(port, token, f"/formgrader/submissions/{submission}"))
        page.wait_for_selector("#ex5_answer")
        shown = page.content()
        for view in (f"/formgrader/gradebook/{NAME}/{NAME}", "/formgrader/manage_assignments",
                     f"/formgrader/manage_students/s001/{NAME}"):
            page.goto(f"http://127.0.0.1:{port}{view}")
            page.wait_for_load_state("networkidle")
            shown += page.content()
        page.goto(f"http://127.0.0.1:{port}/formgrader/submissions/{submission}")
        page.wait_for_selector("#ex5_answer")
        page.fill("#ex5_answer", "2")
        page.press("#ex5_answer", "Tab")
        page.fill("#ex5_answer-comment", COMMENT)
        page.press("#ex5_answer-comment", "Tab")
        deadline = time.time() + 20
        while time.time() < deadline:  # formgrader saves in the background
            with Gradebook(pipeline.db_url(course)) as gb:
                grade = gb.find_grade("ex5_answer", NAME, NAME, "s001").manual_score
                comment = gb.find_comment("ex5_answer", NAME, NAME, "s001").manual_comment
            if grade == 2 and comment == COMMENT:
                break
            time.sleep(0.3)
        page.close()
    finally:
        server.terminate()  # SIGTERM, as `kill` or a service manager sends it
        server.wait(timeout=30)
    try:  # the Jupyter server that `grader formgrader` started has stopped with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/formgrader/api/status?token={token}", timeout=2)
        still_serving = True
    except OSError:
        still_serving = False
    return tmp, course, outcomes, shown, grade, comment, still_serving


def test_formgrader_grades_a_written_answer_without_showing_hidden_tests(formgraded):
    tmp, course, outcomes, shown, grade, comment, still_serving = formgraded
    assert not still_serving, "the formgrader's Jupyter server outlived `grader formgrader`"
    assert (grade, comment) == (2, COMMENT)
    source = nbformat.read(course / "source" / NAME / f"{NAME}.ipynb", as_version=4)
    hidden = [line for line in redact.hidden_lines(source) if line in shown]
    assert not hidden and "BEGIN HIDDEN TESTS" not in shown, f"formgrader showed hidden tests: {hidden[:3]}"
    assert "hidden case" in shown and redact.HIDDEN_NOTE.strip("# ") in shown  # the per-case results, not the code


def test_feedback_carries_the_comment_and_the_penalty(formgraded):
    tmp, course, *_ = formgraded
    assert main(["--course", str(course), "feedback", NAME]) == 0
    ada = (course / "feedback" / "s001" / NAME / f"{NAME}.html").read_text()
    alan = (course / "feedback" / "s002" / NAME / f"{NAME}.html").read_text()
    assert COMMENT in ada
    assert re.search(r"late submission penalty", alan, re.I)


def csv_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open(encoding="utf-8")))


def test_exports_carry_manual_points_and_penalties_and_no_false_zero(formgraded, tmp_path):
    tmp, course, o, *_ = formgraded
    full = o["s001"].max_score
    assert main(["--course", str(course), "export", NAME, "--to", str(tmp_path / "plain.csv")]) == 0
    plain = {r["student_id"]: r for r in csv_rows(tmp_path / "plain.csv")}
    assert float(plain["s001"]["score"]) == o["s001"].score + 2 == full  # the manual points count
    assert float(plain["s002"]["score"]) == pytest.approx(o["s002"].score - 0.2 * full)
    assert plain["s005"]["status"] == "no submission" and plain["s005"]["score"] == ""
    assert main(["--course", str(course), "export", NAME, "--lms", "canvas", "--column", "Embeddings (4242)",
                 "--to", str(tmp_path / "canvas.csv")]) == 0
    canvas = csv_rows(tmp_path / "canvas.csv")
    assert list(canvas[0]) == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Embeddings (4242)"]
    assert canvas[0]["Student"].strip() == "Points Possible" and float(canvas[0]["Embeddings (4242)"]) == full
    by_id = {r["ID"]: r for r in canvas[1:]}
    assert float(by_id["1001"]["Embeddings (4242)"]) == full and by_id["1005"]["Embeddings (4242)"] == ""
    assert main(["--course", str(course), "export", NAME, "--lms", "moodle", "--missing", "zero",
                 "--to", str(tmp_path / "moodle.csv")]) == 0
    moodle = {r["Identifier"]: r for r in csv_rows(tmp_path / "moodle.csv")}
    assert float(moodle["Participant 502"]["Grade"]) == pytest.approx(o["s002"].score - 0.2 * full)
    assert "late" in moodle["Participant 502"]["Feedback comments"]
    assert moodle["Participant 505"]["Grade"] == "0" and moodle["Participant 501"]["Email address"] == "ada@example.org"


def test_the_similarity_report_flags_the_renamed_copy_only(graded, capsys):
    tmp, course, *_ = graded
    from grader.exports import rows

    before = [(r.student, r.score) for r in rows(NAME, course)]
    assert main(["--course", str(course), "similarity", NAME]) == 0
    assert [(r.student, r.score) for r in rows(NAME, course)] == before, "a similarity report never changes a score"
    result = json.loads((course / "reports" / f"{NAME}.similarity.json").read_text())
    assert [p["students"] for p in result["pairs"]] == [["s001", "s004"]]
    assert "s001 and s004" in capsys.readouterr().out
