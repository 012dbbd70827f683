"""The collect step: an LMS download -> one folder per student id, ready for autograde.

    python -m grader collect NAME --download canvas.zip --roster roster.csv [--times times.csv]

It reports and never guesses: files it cannot attribute, roster students with nothing handed
in, and several notebooks from one student (the latest is graded: the highest Canvas `-N`
suffix, a notebook named like the assignment before any other; the rest are kept and listed).
Everything is kept: the download byte for byte and every file in it under
COURSE/lms/NAME/TIME/, each with its SHA-256 in the report, COURSE/reports/NAME.collect.json.
The folders autograde reads are COURSE/collected/NAME/STUDENT/NAME.ipynb, with the submission
time, when one is known, in nbgrader's timestamp.txt beside it.

Submission times: neither Canvas's nor Moodle's download names carry one. They come from a
times CSV (`id,submitted_at`, id being a student id or an LMS id; e.g. from the LMS's grading
worksheet or API), and the report says so; without one, a file Canvas named `_LATE_` is
reported late with no time, and no penalty can be computed.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from nbgrader.utils import parse_utc

from . import archive, intake, lms
from .report import GraderError, count


@dataclass
class Candidate:
    """One notebook of the download, attributed to a student."""

    file: str  # its path in the download
    sha256: str
    how: str  # how it was attributed
    lms_late: bool = False
    attempt: int = 0
    original: str = ""


@dataclass
class Collected:
    """What collect found for one student."""

    student: str
    file: str = ""  # the graded notebook's path in the download ("" if none)
    sha256: str = ""
    how: str = ""
    submitted_at: str = ""  # ISO, UTC
    time_source: str = ""  # "times file" | "" (unknown)
    lms_late: bool = False  # Canvas named it _LATE_
    others: list[dict] = field(default_factory=list)  # further notebooks, kept and not graded
    other_files: list[str] = field(default_factory=list)  # files that are not notebooks, kept


def detect(entries: list[archive.Entry]) -> str:
    """"canvas" or "moodle", from the names in the download."""
    tops = {PurePosixPath(e.path).parts[0] for e in entries}
    if any(lms.moodle_folder(t) for t in tops):
        return "moodle"
    if any(lms.canvas_file(PurePosixPath(e.path).name) for e in entries):
        return "canvas"
    raise GraderError("the download is neither a Canvas submissions zip (files named lastfirst_USERID_SUBMISSIONID_"
                      "name) nor a Moodle one (folders named Full Name_ID_assignsubmission_file_); a folder with "
                      "one sub-folder per student id needs no collect: pass it to autograde --submissions")


def named_by_lms(entry: archive.Entry, kind: str) -> tuple[lms.Named | None, str]:
    """The LMS name that identifies an entry's student, and the roster column it is an id of."""
    parts = PurePosixPath(entry.path).parts
    if kind == "canvas":
        return lms.canvas_file(parts[-1]), "canvas_id"
    return (lms.moodle_folder(parts[0]) if len(parts) > 1 else None), "moodle_id"


def read_times(path: Path | None, roster: lms.Roster) -> dict[str, dt.datetime]:
    """student id -> submission time (naive UTC) from a CSV with columns id,submitted_at."""
    if path is None:
        return {}
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise GraderError(f"cannot read the times file {path}: {err}") from None
    if rows and not {"id", "submitted_at"} <= set(rows[0]):
        raise GraderError(f"the times file {path} needs the columns id and submitted_at")
    times = {}
    for line, row in enumerate(rows, start=2):
        key = (row["id"] or "").strip()
        student = key if key in roster.rows else (roster.by_lms_id.get(("canvas_id", key))
                                                  or roster.by_lms_id.get(("moodle_id", key)))
        if student is None:
            raise GraderError(f"the times file {path}, line {line}: {key!r} is no student id or LMS id of the roster")
        try:
            times[student] = parse_utc((row["submitted_at"] or "").strip())
        except (ValueError, OverflowError):
            raise GraderError(f"the times file {path}, line {line}: {row['submitted_at']!r} is not a date and time") \
                from None
    return times


def keep_download(download: Path, entries: list[archive.Entry], kept: Path) -> None:
    """The download as it came (a zip byte for byte) and every file in it, under `kept`."""
    kept.mkdir(parents=True)
    if download.is_file():
        shutil.copyfile(download, kept / download.name)
    for entry in entries:  # paths were checked by archive: relative, no '..'
        path = kept / "files" / entry.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(entry.data)
        except OSError as err:  # e.g. a file and a folder of the same name
            raise GraderError(f"cannot keep {entry.path} of the download in {kept}: {err}") from None


def collect(name: str, download: Path, roster_path: Path, course: Path, times_path: Path | None = None) -> dict:
    """Collect one assignment's LMS download into COURSE/collected/NAME; returns the report."""
    download = Path(download)
    roster = lms.Roster.read(roster_path)
    times = read_times(times_path, roster)
    entries, skipped = archive.read_download(download)
    kind = detect(entries)
    found: dict[str, list[Candidate]] = {}
    students = {s: Collected(s) for s in roster.rows}
    unattributed = []
    for entry in entries:
        named, column = named_by_lms(entry, kind)
        if named is None:
            unattributed.append({"file": entry.path, "why": f"not named the way {kind.capitalize()} names submissions"})
            continue
        student, how = roster.attribute(named, column)
        if student is None:
            unattributed.append({"file": entry.path, "why": how})
            continue
        if not entry.path.endswith(".ipynb"):
            students[student].other_files.append(entry.path)
            continue
        found.setdefault(student, []).append(Candidate(entry.path, intake.sha256(entry.data), how, named.late,
                                                       named.attempt, named.original))
    data = {e.path: e.data for e in entries}
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    kept = course / "lms" / name / stamp
    keep_download(download, entries, kept)
    out = course / "collected" / name
    if out.exists():
        shutil.rmtree(out)
    for student, candidates in found.items():
        def rank(c: Candidate) -> tuple:  # the one to grade sorts last
            stem = PurePosixPath(lms.ATTEMPT.sub(r"\g<stem>\g<ext>", c.original or PurePosixPath(c.file).name)).stem
            return stem == name, c.attempt, c.file
        *older, latest = sorted(candidates, key=rank)
        got = students[student]
        got.file, got.sha256, got.how, got.lms_late = latest.file, latest.sha256, latest.how, latest.lms_late
        got.others = [{"file": c.file, "sha256": c.sha256} for c in older]
        folder = out / student
        folder.mkdir(parents=True)
        (folder / f"{name}.ipynb").write_bytes(data[latest.file])
        if student in times:
            got.submitted_at, got.time_source = times[student].isoformat() + "Z", "times file"
            (folder / "timestamp.txt").write_text(got.submitted_at + "\n")
    report = {
        "assignment": name, "lms": kind, "download": str(download.resolve()),
        "download_sha256": intake.sha256(download.read_bytes()) if download.is_file() else "",
        "kept_in": str(kept), "collected_in": str(out), "roster": str(Path(roster_path).resolve()),
        "students": {s: asdict(c) for s, c in students.items() if c.file or c.other_files},
        "missing": sorted(s for s, c in students.items() if not c.file),
        "several": sorted(s for s, c in students.items() if c.others),
        "unattributed": unattributed,
        "skipped": skipped,
        "files": {e.path: intake.sha256(e.data) for e in entries},
    }
    shutil.copyfile(roster_path, course / "roster.csv")  # export reads it: students with nothing handed in
    path = course / "reports" / f"{name}.collect.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(report, indent=2))
    os.replace(partial, path)
    return report


def summary(report: dict) -> list[str]:
    """The lines collect prints: what an instructor must look at."""
    got = [s for s, c in report["students"].items() if c["file"]]
    lines = [f"{report['lms']} download: {count(len(got), 'student')} with a notebook, "
             f"{len(report['missing'])} on the roster without one, {count(len(report['unattributed']), 'file')} "
             "not attributed"]
    for s in report["several"]:
        c = report["students"][s]
        lines.append(f"  {s}: {1 + len(c['others'])} notebooks; graded {c['file']}, kept the others")
    for s, c in report["students"].items():
        if c["lms_late"] and not c["submitted_at"]:
            lines.append(f"  {s}: Canvas marked it late; no submission time (pass --times) so no late penalty")
    lines += [f"  not attributed: {u['file']} ({u['why']})" for u in report["unattributed"]]
    lines += [f"  skipped: {s}" for s in report["skipped"]]
    if report["missing"]:
        lines.append("  no notebook: " + ", ".join(report["missing"]))
    lines.append(f"ready for: python -m grader autograde {report['assignment']} (reads {report['collected_in']})")
    return lines
