"""Where an assignment's grading stands, from its last report and the gradebook as it is now.

    python -m grader status NAME

Counts by status; roster students with nothing handed in; submissions that still need a
manual grade (written answers, or a score a grader changed and nbgrader keeps up for review);
late submissions with their penalty; and what collect could not attribute.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .exports import rows
from .report import count


def status(name: str, course: Path) -> list[str]:
    table = rows(name, course)
    counts = Counter(r.status for r in table)
    lines = [f"{name}: {len(table)} students; " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    manual = [r.student for r in table if r.needs_manual_grade]
    late = [r for r in table if r.late_penalty]
    absent = [r.student for r in table if r.status in ("no submission", "missing")]
    lines.append(f"needs manual grading: {len(manual)}" + (f" ({', '.join(manual)})" if manual else ""))
    lines.append(f"late: {len(late)}" + "".join(f"\n  {r.student}: handed in {r.submitted_at}, {r.late_penalty:g} off"
                                                 for r in late))
    lines.append(f"nothing handed in: {len(absent)}" + (f" ({', '.join(absent)})" if absent else ""))
    problems = [r for r in table if r.status in ("ungradable", "error")]
    lines += [f"  {r.student} {r.status}: {r.reason}" for r in problems]
    collected = course / "reports" / f"{name}.collect.json"
    if collected.is_file():
        report = json.loads(collected.read_text())
        lines.append(f"collect: {count(len(report['unattributed']), 'file')} not attributed, "
                     f"{count(len(report['several']), 'student')} with several notebooks")
    return lines
