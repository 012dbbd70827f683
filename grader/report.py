"""What happened to each submission of a batch: the Outcome rows and the report file that keeps them.

COURSE/reports/NAME.json is written by autograde and read by feedback, export and the
instructor; one row per entry of the submissions folder.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit


class GraderError(RuntimeError):
    """A step cannot go on; the message says why and what to do."""


def count(n: int, noun: str) -> str:
    """"1 file", "2 files": a number and its noun, for messages."""
    return f"{n} {noun}{'s' * (n != 1)}"


def redacted(url: str) -> str:
    """A server's URL fit to print: its password replaced by ***."""
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@", 1) if parts.password else url


@dataclass
class Outcome:
    """What happened to one student's submission."""

    student: str
    status: str = "graded"  # graded | ungradable | missing | error
    score: float = 0.0
    max_score: float = 0.0
    needs_manual_grade: bool = False
    notes: list[str] = field(default_factory=list)
    upload_sha256: str = ""
    upload: str = ""
    flagged: bool = False  # the kernel was tampered with (the score is unaffected: it gains nothing)
    seconds: float = 0.0
    submitted_at: str = ""  # ISO, UTC, from the submission's timestamp.txt ("" if unknown)
    days_late: int = 0  # days or parts of days after the student's due date
    late_penalty: float = 0.0  # points taken off by the course's late policy (grader.late)

    def row(self) -> dict:
        """The fields as a dict for JSON, holding the outcome's own values (dataclasses.asdict
        deep-copies each first: 17x slower, and it ran twice per submission)."""
        return {name: getattr(self, name) for name in _OUTCOME_FIELDS}


_OUTCOME_FIELDS = tuple(f.name for f in fields(Outcome))


def write_report(course: Path, name: str, outcomes: list[Outcome]) -> Path:
    """Write the report atomically: a crash mid-write leaves the previous report whole."""
    path = course / "reports" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps([o.row() for o in outcomes], indent=2))
    os.replace(partial, path)
    return path


def read_report(course: Path, name: str) -> list[Outcome]:
    path = course / "reports" / f"{name}.json"
    if not path.is_file():
        raise GraderError(f"no autograde report for {name} in {course}: run `python -m grader autograde {name}` first")
    return [Outcome(**row) for row in json.loads(path.read_text())]
