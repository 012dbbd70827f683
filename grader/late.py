"""Due dates, extensions and the late policy, from the course's COURSE/deadlines.toml:

    [policy]
    percent_per_day = 10     # of the assignment's maximum score, per day or part of a day late
    max_percent = 50         # the most a late submission loses (optional, default 100)
    zero_after_days = 7      # later than this many days: no points (optional)

    [due]
    01_embeddings = 2026-10-01T23:59:00+02:00

    [extensions.01_embeddings]
    s0007 = 2026-10-03T23:59:00+02:00   # this student's own due date

Times without a UTC offset are read as UTC, as nbgrader does. The penalty is in points, a share
of the maximum score (as Canvas's late policies count it), and a score never goes below 0. It is
kept in nbgrader's own gradebook fields (the assignment's duedate, the submission's timestamp
and extension, the notebook's late_submission_penalty), so that nbgrader's feedback shows it.
(nbgrader's LateSubmissionPlugin runs inside its autograde app, which this grader does not
start, and offers only "none" or "zero".)
"""
from __future__ import annotations

import datetime as dt
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.utils import parse_utc

from .report import GraderError

DAY = 86400.0


@dataclass(frozen=True)
class Late:
    """How late one submission was, and what it costs."""

    due: dt.datetime  # naive UTC, extensions included
    extension: dt.timedelta | None
    seconds_late: float
    days_late: int  # days or parts of days
    percent: float  # of the maximum score

    def points(self, max_score: float) -> float:
        return round(max_score * self.percent / 100, 6)


@dataclass(frozen=True)
class Policy:
    percent_per_day: float = 0.0
    max_percent: float = 100.0
    zero_after_days: float | None = None

    def percent(self, days_late: int, seconds_late: float) -> float:
        if seconds_late <= 0:
            return 0.0
        if self.zero_after_days is not None and seconds_late > self.zero_after_days * DAY:
            return 100.0
        return min(self.max_percent, self.percent_per_day * days_late, 100.0)


@dataclass(frozen=True)
class Deadlines:
    policy: Policy = Policy()
    due: dict[str, dt.datetime] = field(default_factory=dict)  # assignment -> naive UTC
    extensions: dict[str, dict[str, dt.datetime]] = field(default_factory=dict)  # assignment -> student -> due

    @classmethod
    def read(cls, course: Path) -> "Deadlines":
        """The course's deadlines.toml, or no deadlines at all if there is none."""
        path = course / "deadlines.toml"
        if not path.is_file():
            return cls()
        try:
            config = tomllib.loads(path.read_text())
            policy = Policy(**config.get("policy", {}))
            due = {name: _utc(when) for name, when in config.get("due", {}).items()}
            extensions = {name: {student: _utc(when) for student, when in students.items()}
                          for name, students in config.get("extensions", {}).items()}
        except (tomllib.TOMLDecodeError, TypeError, ValueError, AttributeError) as err:
            raise GraderError(f"{path} cannot be used: {err}") from None
        if not 0 <= policy.percent_per_day <= 100 or not 0 <= policy.max_percent <= 100:
            raise GraderError(f"{path}: percent_per_day and max_percent must lie between 0 and 100")
        return cls(policy, due, extensions)

    def late(self, name: str, student: str, submitted: dt.datetime | None) -> Late | None:
        """How late `student`'s submission of `name` was; None without a due date or a submission time."""
        if name not in self.due or submitted is None:
            return None
        due = self.extensions.get(name, {}).get(student, self.due[name])
        seconds = (submitted - due).total_seconds()
        days = max(0, math.ceil(seconds / DAY))
        extension = due - self.due[name] if due != self.due[name] else None
        return Late(due, extension, max(0.0, seconds), days, self.policy.percent(days, seconds))


def _utc(value) -> dt.datetime:
    """A TOML date-time (or a string) as naive UTC; a date alone means the end of that day, UTC."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(23, 59, 59))
    if not isinstance(value, (dt.datetime, str)):
        raise ValueError(f"{value!r} is not a date and time")
    return parse_utc(value)


def read_timestamp(folder: Path) -> dt.datetime | None:
    """The submission time in a student's folder (nbgrader's timestamp.txt), as naive UTC, or None."""
    path = folder / "timestamp.txt"
    if not path.is_file() or path.is_symlink():
        return None
    try:
        return parse_utc(path.read_text(errors="replace").strip())
    except (ValueError, OverflowError):
        return None
