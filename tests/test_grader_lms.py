"""From the LMS's download to the grader's folders, and back to the LMS's import: unit tests on
zips and CSVs made here in Canvas's and Moodle's real naming schemes (no sandbox, seconds).
The whole term with real runs and formgrader is tests/test_term.py."""
import datetime as dt
import json
import stat
import zipfile
from pathlib import Path

import nbformat
import pytest

import submissions as S
from grader import archive, collect, lms
from grader.late import Deadlines, Policy, read_timestamp
from grader.report import GraderError

NAME = "01_embeddings"
NOTEBOOK = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])).encode()
ROSTER = """student_id,name,canvas_id,moodle_id,email
s001,Ada Lovelace,1001,501,ada@example.org
s002,Alan Turing,1002,502,alan@example.org
s003,Grace Hopper,1003,503,grace@example.org
s004,Kurt Gödel,1004,504,kurt@example.org
s005,Jane Smith,1005,505,jane1@example.org
s006,Jane Smith,1006,506,jane2@example.org
"""


def make_zip(path: Path, members: dict, **info) -> Path:
    """A zip with `members` (name -> bytes); names are stored UTF-8-flagged like LMS downloads."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, (2026, 10, 1, 12, 0, 0)), data)
    return path


@pytest.fixture
def roster(tmp_path) -> Path:
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER)
    return path


# --- names and the roster ----------------------------------------------------------------------

def test_canvas_and_moodle_names_are_read_as_the_lms_writes_them():
    late = lms.canvas_file("lovelaceada_LATE_1001_88001_01_embeddings-2.ipynb")
    assert (late.lms_id, late.name, late.late, late.attempt, late.original) == \
        ("1001", "lovelaceada", True, 2, "01_embeddings-2.ipynb")
    on_time = lms.canvas_file("turingalan_1002_88002_homework.ipynb")
    assert (on_time.lms_id, on_time.late, on_time.attempt) == ("1002", False, 0)
    assert lms.canvas_file("notes.txt") is None and lms.canvas_file("a_b_c.ipynb") is None
    moodle = lms.moodle_folder("Grace Hopper_503_assignsubmission_file_")
    assert (moodle.lms_id, moodle.name) == ("503", "Grace Hopper")
    assert lms.moodle_folder("Grace Hopper_503") is None


def test_the_roster_attributes_by_lms_id_then_by_name_and_refuses_to_guess(roster):
    r = lms.Roster.read(roster)
    assert r.attribute(lms.Named("1002", "whoever"), "canvas_id")[0] == "s002"
    assert r.attribute(lms.Named("9999", "hopper grace"), "canvas_id")[0] == "s003"  # name, either order
    assert r.attribute(lms.Named("9999", "godelkurt"), "canvas_id")[0] == "s004"  # accents dropped, as Canvas does
    student, why = r.attribute(lms.Named("9999", "smithjane"), "canvas_id")
    assert student is None and "fits 2 students" in why
    student, why = r.attribute(lms.Named("9999", "nobody"), "canvas_id")
    assert student is None and "no roster row" in why


@pytest.mark.parametrize("text, error", [
    ("name\nAda\n", "student_id column"),
    ("student_id\ns1\ns1\n", "listed twice"),
    ("student_id\n../etc\n", "not a valid student id"),
    ("student_id,canvas_id\ns1,7\ns2,7\n", "belongs to two students"),
])
def test_a_bad_roster_is_refused_with_the_line(tmp_path, text, error):
    (tmp_path / "r.csv").write_text(text)
    with pytest.raises(GraderError, match=error):
        lms.Roster.read(tmp_path / "r.csv")


# --- hostile archives ---------------------------------------------------------------------------

def test_a_plain_download_is_read_and_nothing_is_written(tmp_path):
    z = make_zip(tmp_path / "ok.zip", {"a/b.ipynb": NOTEBOOK, "c.txt": b"hi"})
    entries, skipped = archive.read_download(z)
    assert {e.path: e.data for e in entries} == {"a/b.ipynb": NOTEBOOK, "c.txt": b"hi"} and not skipped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.zip"]


def symlink_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        info = zipfile.ZipInfo("link.ipynb")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, "/work/solutions/01_embeddings.md")
    return path


def non_utf8_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("caf\u00e9.ipynb", NOTEBOOK)
    raw = path.read_bytes()  # the name as cp437 bytes, without the UTF-8 flag: what an old zipper writes
    path.write_bytes(raw.replace("café".encode("utf-8"), b"caf\x82\x00").replace(b"\x00\x08", b"\x00\x00"))
    return path


def bomb_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.ipynb", b"\0" * (archive.RATIO_FLOOR * 4))
    return path


def lying_zip(path: Path) -> Path:
    """A member whose header says 100 bytes and that inflates to far more."""
    big = b"\0" * (archive.ENTRY_BYTES + 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("small.ipynb", big)
    raw = bytearray(path.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size in both headers
        at = raw.find(sig)
        raw[at + offset: at + offset + 4] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    return path


def duplicate_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.ipynb", NOTEBOOK)
        z.writestr("b.ipynb", b"{}")
    path.write_bytes(path.read_bytes().replace(b"b.ipynb", b"a.ipynb"))  # the second entry takes the first's name
    return path


@pytest.mark.parametrize("make, reason", [
    (lambda p: make_zip(p, {"../../evil.ipynb": NOTEBOOK}), "climbs out"),
    (lambda p: make_zip(p, {"/etc/cron.d/evil": NOTEBOOK}), "absolute path"),
    (lambda p: make_zip(p, {"C:\\evil.ipynb": NOTEBOOK}), "absolute path"),
    (symlink_zip, "symbolic link"),
    (non_utf8_zip, "not UTF-8"),
    (bomb_zip, "zip bomb"),
    (lying_zip, "Bad CRC"),  # zipfile reads no more than the header says, and the CRC fails
    (duplicate_zip, "the name appears twice"),
])
def test_a_hostile_archive_is_refused_whole_with_the_reason(tmp_path, make, reason):
    path = make(tmp_path / "download.zip")
    with pytest.raises(GraderError, match=reason) as err:
        archive.read_download(path)
    assert "nothing was taken" in str(err.value) or "not UTF-8" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["download.zip"]


def test_an_unpacked_folder_skips_links_and_lists_them(tmp_path):
    (tmp_path / "d" / "x").mkdir(parents=True)
    (tmp_path / "d" / "x" / "a.ipynb").write_bytes(NOTEBOOK)
    (tmp_path / "secret").write_text("solution")
    (tmp_path / "d" / "x" / "b.ipynb").symlink_to(tmp_path / "secret")
    (tmp_path / "d" / "y").symlink_to(tmp_path)
    entries, skipped = archive.read_download(tmp_path / "d")
    assert [e.path for e in entries] == ["x/a.ipynb"]
    assert sorted(s.split(":")[0] for s in skipped) == ["x/b.ipynb", "y"]


# --- collect ------------------------------------------------------------------------------------

def canvas_download(path: Path) -> Path:
    other = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 2")])).encode()
    return make_zip(path, {
        "lovelaceada_1001_88001_01_embeddings.ipynb": NOTEBOOK,
        "lovelaceada_LATE_1001_88001_01_embeddings-1.ipynb": other,  # uploaded again, after the deadline
        "turingalan_LATE_1002_88002_homework.ipynb": NOTEBOOK,  # late, named otherwise
        "turingalan_1002_88002_notes.pdf": b"%PDF-1.4",
        "smithjane_9999_88009_01_embeddings.ipynb": NOTEBOOK,  # two Jane Smiths, an unknown id
        "readme.txt": b"not a submission",
    })


def test_collect_a_canvas_download_reports_everything_it_cannot_decide(tmp_path, roster):
    course = tmp_path / "course"
    download = canvas_download(tmp_path / "submissions.zip")
    times = tmp_path / "times.csv"
    times.write_text("id,submitted_at\n1001,2026-10-02T09:30:00+02:00\ns003,2026-10-01T10:00:00Z\n")
    report = collect.collect(NAME, download, roster, course, times)
    ada = report["students"]["s001"]
    assert ada["file"].endswith("01_embeddings-1.ipynb") and ada["lms_late"]  # the later upload is graded
    assert [o["file"] for o in ada["others"]] == ["lovelaceada_1001_88001_01_embeddings.ipynb"]
    assert ada["submitted_at"] == "2026-10-02T07:30:00Z" and ada["time_source"] == "times file"
    alan = report["students"]["s002"]
    assert alan["file"].endswith("homework.ipynb") and alan["other_files"] == ["turingalan_1002_88002_notes.pdf"]
    assert alan["lms_late"] and not alan["submitted_at"]  # late per Canvas, no time: said, no penalty
    assert report["missing"] == ["s003", "s004", "s005", "s006"] and report["several"] == ["s001"]
    why = {u["file"]: u["why"] for u in report["unattributed"]}
    assert "fits 2 students" in why["smithjane_9999_88009_01_embeddings.ipynb"] and "readme.txt" in why
    folder = course / "collected" / NAME
    assert sorted(p.name for p in folder.iterdir()) == ["s001", "s002"]
    assert (folder / "s001" / f"{NAME}.ipynb").read_text() == "".join(
        z for z in [zipfile.ZipFile(download).read("lovelaceada_LATE_1001_88001_01_embeddings-1.ipynb").decode()])
    assert read_timestamp(folder / "s001") == dt.datetime(2026, 10, 2, 7, 30)
    assert read_timestamp(folder / "s002") is None
    kept = Path(report["kept_in"])  # the download byte for byte, and every file in it with its hash
    assert (kept / "submissions.zip").read_bytes() == download.read_bytes()
    assert set(report["files"]) == {p.relative_to(kept / "files").as_posix()
                                    for p in (kept / "files").rglob("*") if p.is_file()}
    lines = "\n".join(collect.summary(report))
    assert "s002: Canvas marked it late; no submission time" in lines and "s001: 2 notebooks" in lines


def test_collect_a_moodle_download_zipped_or_unpacked(tmp_path, roster):
    members = {
        "Grace Hopper_503_assignsubmission_file_/01_embeddings.ipynb": NOTEBOOK,
        "Kurt Gödel_504_assignsubmission_file_/draft.ipynb": NOTEBOOK,
        "Kurt Gödel_504_assignsubmission_file_/01_embeddings.ipynb": NOTEBOOK,
        "Someone Else_777_assignsubmission_file_/01_embeddings.ipynb": NOTEBOOK,
        "Ada Lovelace_501_assignsubmission_onlinetext_/onlinetext.html": b"<p>see my notebook</p>",
    }
    zipped = collect.collect(NAME, make_zip(tmp_path / "moodle.zip", members), roster, tmp_path / "c1")
    unpacked = tmp_path / "unpacked"
    for name, data in members.items():
        (unpacked / name).parent.mkdir(parents=True, exist_ok=True)
        (unpacked / name).write_bytes(data)
    folder = collect.collect(NAME, unpacked, roster, tmp_path / "c2")
    for report in (zipped, folder):
        assert report["lms"] == "moodle"
        assert report["students"]["s004"]["file"].endswith("/01_embeddings.ipynb")  # named like the assignment
        assert report["several"] == ["s004"] and report["students"]["s001"]["other_files"]
        assert [u["file"].split("/")[0] for u in report["unattributed"]] == ["Someone Else_777_assignsubmission_file_"]
        assert report["missing"] == ["s001", "s002", "s005", "s006"]


def test_collect_refuses_a_hostile_download_and_keeps_nothing(tmp_path, roster):
    with pytest.raises(GraderError, match="climbs out"):
        collect.collect(NAME, make_zip(tmp_path / "x.zip", {"../x.ipynb": NOTEBOOK}), roster, tmp_path / "course")
    assert not (tmp_path / "course").exists()


def test_collect_says_what_it_expected_of_an_unknown_download(tmp_path, roster):
    with pytest.raises(GraderError, match="neither a Canvas"):
        collect.collect(NAME, make_zip(tmp_path / "x.zip", {"s001/01_embeddings.ipynb": NOTEBOOK}), roster,
                        tmp_path / "course")


# --- the late policy ----------------------------------------------------------------------------

def test_the_late_policy_counts_started_days_caps_and_zeroes(tmp_path):
    (tmp_path / "deadlines.toml").write_text(
        "[policy]\npercent_per_day = 10\nmax_percent = 30\nzero_after_days = 7\n"
        "[due]\n01_embeddings = 2026-10-01T23:59:00+02:00\n"
        "[extensions.01_embeddings]\ns002 = 2026-10-03T23:59:00+02:00\n")
    d = Deadlines.read(tmp_path)
    due = dt.datetime(2026, 10, 1, 21, 59)  # UTC
    assert d.due[NAME] == due
    cases = {dt.timedelta(0): (0, 0), dt.timedelta(seconds=1): (1, 10), dt.timedelta(hours=25): (2, 20),
             dt.timedelta(days=5): (5, 30), dt.timedelta(days=7, seconds=1): (8, 100)}
    for after, (days, percent) in cases.items():
        late = d.late(NAME, "s001", due + after)
        assert (late.days_late, late.percent) == (days, percent), after
    assert d.late(NAME, "s001", due + dt.timedelta(hours=1)).points(12) == 1.2
    extended = d.late(NAME, "s002", due + dt.timedelta(days=1))
    assert extended.percent == 0 and extended.extension == dt.timedelta(days=2)
    assert d.late("02_lstm", "s001", due) is None and d.late(NAME, "s001", None) is None
    assert Deadlines.read(tmp_path / "nowhere").late(NAME, "s001", due) is None


@pytest.mark.parametrize("text, error", [
    ("[policy]\npercent_per_day = 150\n", "between 0 and 100"),
    ("[policy]\npercent_per_week = 1\n", "cannot be used"),
    ("[due]\n01_embeddings = 12\n", "cannot be used"),
    ("[due\n", "cannot be used"),
])
def test_a_bad_deadlines_file_is_refused(tmp_path, text, error):
    (tmp_path / "deadlines.toml").write_text(text)
    with pytest.raises(GraderError, match=error):
        Deadlines.read(tmp_path)


def test_no_policy_means_no_penalty():
    assert Policy().percent(3, 3 * 86400) == 0


# --- the similarity report ----------------------------------------------------------------------

def test_the_similarity_report_flags_a_planted_copy_and_no_honest_pair(tmp_path):
    import re

    from grader import pipeline, similarity
    from grader.report import Outcome, write_report

    source = pipeline.source_notebook(NAME)
    release = nbformat.from_dict(json.loads(json.dumps(source)))
    for cell in release.cells:
        cell.source = re.sub(r"### BEGIN SOLUTION.*?### END SOLUTION", "# YOUR CODE HERE\nraise NotImplementedError()",
                             cell.source, flags=re.S)
    course = tmp_path / "course"
    nbformat.write(release, (course / "release" / NAME).mkdir(parents=True) or course / "release" / NAME / f"{NAME}.ipynb")

    def submit(student, answers):
        nb = nbformat.from_dict(json.loads(json.dumps(release)))
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in answers:
                cell.source = answers[gid]
        path = course / "submitted" / student / NAME / f"{NAME}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)

    solution = {c.metadata.nbgrader["grade_id"]: re.sub(r" *### (BEGIN|END) SOLUTION\n?", "", c.source)
                for c in source.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
    renamed = {gid: code.replace("mask", "keep").replace("summed", "total").replace("row", "position")
               .replace("target", "goal").replace("sims", "scores").replace("expected", "baseline")
               .replace("  #", "  # copied:") for gid, code in solution.items()}
    submit("author", solution)
    submit("copier", renamed)  # variables renamed, comments changed: the same code
    submit("blank", {})  # only the release's stubs
    heads = {c.metadata.nbgrader["grade_id"]: c.source.split("### BEGIN SOLUTION")[0].rstrip() + "\n"
             for c in source.cells if c.metadata.get("nbgrader", {}).get("grade_id") in S.OWN_ANSWERS}
    own = {gid: heads[gid] + code.split("\n", 1)[1] for gid, code in S.OWN_ANSWERS.items()}
    submit("independent", own)  # the release's signatures and docstrings kept, the bodies their own
    submit("partial", {"ex1_solution": own["ex1_solution"], "ex3_solution": solution["ex3_solution"]})
    write_report(course, NAME, [Outcome(s) for s in ("author", "independent", "copier", "blank", "partial")])
    result = similarity.report(NAME, course)
    pairs = [p["students"] for p in result["pairs"]]
    assert pairs[0] == ["author", "copier"] and min(result["pairs"][0]["shares"]) > 0.9
    # partial copied one function from each of two others
    assert sorted(pairs[1:]) == [["author", "partial"], ["copier", "partial"], ["independent", "partial"]]
    page = Path(result["html"]).read_text()
    assert "author and copier" in page and "<mark>" in page and "author and independent" not in page
