"""What a learning-management system's download says about each file, and who the file is from.

    canvas_file("smithjane_LATE_1234_98765_01_embeddings-1.ipynb")
        -> Named(lms_id="1234", name="smithjane", late=True, attempt=1, original="01_embeddings-1.ipynb")
    moodle_folder("Jane Smith_4321_assignsubmission_file_")
        -> Named(lms_id="4321", name="Jane Smith")

Canvas's "Download Submissions" zip holds flat files named
`lastfirst[_LATE]_USERID_SUBMISSIONID_originalname`; a file the student uploaded again under the
same name gets a `-1`, `-2` suffix. Moodle's "Download all submissions" holds one folder per
participant, `Full Name_PARTICIPANTID_assignsubmission_file_`, with the files as uploaded.
Neither name carries the submission time. The roster (a CSV the instructor keeps) maps the LMS's
ids, or failing that the names, to the course's student ids.
"""
from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .intake import STUDENT_ID
from .report import GraderError

CANVAS = re.compile(r"^(?P<name>[^_/]+)_(?:(?P<late>LATE)_)?(?P<user>\d+)_(?P<submission>\d+)_(?P<original>.+)$")
MOODLE = re.compile(r"^(?P<name>.+)_(?P<participant>\d+)_assignsubmission_(?P<plugin>file|onlinetext)_$")
ATTEMPT = re.compile(r"^(?P<stem>.+?)-(?P<n>\d+)(?P<ext>\.[^.]+)$")
ROSTER_COLUMNS = ("student_id", "name", "canvas_id", "moodle_id", "email", "sis_user_id", "sis_login_id", "section")


@dataclass(frozen=True)
class Named:
    """What an LMS's file or folder name says."""

    lms_id: str
    name: str
    late: bool = False  # the LMS marked it late (Canvas only; against the LMS's own due date)
    attempt: int = 0  # Canvas's -1, -2 suffix: a later upload under the same name
    original: str = ""  # the file name as the student uploaded it (Canvas)


def canvas_file(filename: str) -> Named | None:
    """A Canvas download's file name, or None if it is not one."""
    m = CANVAS.match(filename)
    if not m:
        return None
    attempt = ATTEMPT.match(m["original"])
    return Named(m["user"], m["name"], late=bool(m["late"]), attempt=int(attempt["n"]) if attempt else 0,
                 original=m["original"])


def moodle_folder(folder: str) -> Named | None:
    """A Moodle download's folder name, or None if it is not one."""
    m = MOODLE.match(folder)
    return Named(m["participant"], m["name"]) if m else None


def name_key(name: str) -> str:
    """A name reduced to the letters Canvas keeps of it in `lastfirst`, accents dropped, sorted:
    "Jane Smith", "Smith, Jane" and "smithjane" give the same key, whatever the order of the
    names. (Two students whose names are anagrams share a key; the roster's ids tell them apart.)"""
    letters = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return "".join(sorted(re.sub(r"[^a-z]", "", letters)))


@dataclass
class Roster:
    """The class list: student id -> its row, and the LMS's ids and names that point to it."""

    rows: dict[str, dict[str, str]]
    by_lms_id: dict[tuple[str, str], str] = field(default_factory=dict)  # (column, LMS id) -> student
    by_name: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> "Roster":
        """Read a roster CSV: a `student_id` column, and any of name, canvas_id, moodle_id, email,
        sis_user_id, sis_login_id, section. Refuses duplicates and ids used by two students."""
        try:
            with Path(path).open(newline="", encoding="utf-8-sig") as f:
                table = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise GraderError(f"cannot read the roster {path}: {err}") from None
        if not table or "student_id" not in table[0]:
            raise GraderError(f"the roster {path} needs a header with a student_id column "
                              f"(and any of {', '.join(ROSTER_COLUMNS[1:])})")
        roster = cls({})
        for line, row in enumerate(table, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            student = row["student_id"]
            if not STUDENT_ID.match(student):
                raise GraderError(f"the roster {path}, line {line}: {student!r} is not a valid student id "
                                  "(letters, digits, _ . @ + -)")
            if student in roster.rows:
                raise GraderError(f"the roster {path}, line {line}: student {student} is listed twice")
            roster.rows[student] = row
            for column in ("canvas_id", "moodle_id"):
                if lms_id := row.get(column):
                    if roster.by_lms_id.get((column, lms_id), student) != student:
                        raise GraderError(f"the roster {path}, line {line}: {column} {lms_id} belongs to two students")
                    roster.by_lms_id[(column, lms_id)] = student
            if row.get("name"):
                roster.by_name.setdefault(name_key(row["name"]), []).append(student)
        return roster

    def attribute(self, named: Named, column: str) -> tuple[str | None, str]:
        """(student id, how it was found) for an LMS name; (None, why not) when it cannot be told."""
        if student := self.by_lms_id.get((column, named.lms_id)):
            return student, f"{column} {named.lms_id}"
        candidates = self.by_name.get(name_key(named.name), [])
        if len(candidates) == 1:
            return candidates[0], f"name {named.name!r}"
        if candidates:
            return None, f"the name {named.name!r} fits {len(candidates)} students ({', '.join(candidates)})"
        return None, f"no roster row has {column} {named.lms_id} or the name {named.name!r}"
