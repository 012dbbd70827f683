"""Pairs of submissions whose answers are unusually alike, for an instructor to look at.

    python -m grader similarity NAME [--threshold 0.5]

Compares the answer code of every pair of graded submissions with copydetect (winnowed
fingerprints of the tokenized code, in which names and strings are blanked, so renaming the
variables does not hide a copy). Only answer cells are compared; fingerprints of the release's
own code in those cells (the stubs) are ignored. A pair is listed when the matching code is
at least `threshold` of one of the two answers and at least MIN_OVERLAP characters of
tokenized code, so that two short, correct answers written alike are not. The report,
COURSE/reports/NAME.similarity.html, shows each listed pair side by side with the matching
code marked, and NAME.similarity.json the numbers. It never changes a score.
"""
from __future__ import annotations

import html
import io
import json
import logging
from itertools import combinations
from pathlib import Path

import nbformat

from .report import count, read_report

K, WINDOW = 25, 1  # copydetect's noise threshold; every k-gram kept (answers are short)
MIN_OVERLAP = 100  # characters of tokenized code in common, below which a pair is not listed


def answer_code(nb: nbformat.NotebookNode) -> str:
    """The code of the notebook's answer cells (nbgrader solution cells), in order."""
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "code"
                       and c.metadata.get("nbgrader", {}).get("solution"))


def fingerprint(code: str, label: str, boilerplate=()):
    from copydetect import CodeFingerprint

    logging.disable(logging.WARNING)  # copydetect logs a warning for empty code
    try:
        return CodeFingerprint(f"{label}.py", K, WINDOW, boilerplate=list(boilerplate), fp=io.StringIO(code))
    finally:
        logging.disable(logging.NOTSET)


def marked(code: str, slices) -> str:
    """`code` as HTML with the copied slices (starts, ends) in <mark>."""
    out, last = [], 0
    for start, end in sorted(zip(*slices)) if len(slices) and len(slices[0]) else []:
        start, end = max(int(start), last), int(end)
        if end <= start:
            continue
        out += [html.escape(code[last:start]), "<mark>", html.escape(code[start:end]), "</mark>"]
        last = end
    return "".join(out) + html.escape(code[last:])


def report(name: str, course: Path, threshold: float = 0.5) -> dict:
    """Compare every pair of graded submissions of `name`; write the HTML and JSON reports."""
    from copydetect import compare_files

    release = nbformat.read(course / "release" / name / f"{name}.ipynb", as_version=4)
    stubs = fingerprint(answer_code(release), "release").hashes
    codes, prints = {}, {}
    for o in read_report(course, name):
        path = course / "submitted" / o.student / name / f"{name}.ipynb"
        if o.status == "graded" and path.is_file():
            codes[o.student] = answer_code(nbformat.read(path, as_version=4))
            prints[o.student] = fingerprint(codes[o.student], o.student, stubs)
    pairs = []
    for a, b in combinations(sorted(prints), 2):
        overlap, (share_a, share_b), slices = compare_files(prints[a], prints[b])
        if overlap >= MIN_OVERLAP and max(share_a, share_b) >= threshold:
            pairs.append({"students": [a, b], "shares": [round(float(share_a), 3), round(float(share_b), 3)],
                          "overlap": int(overlap), "slices": slices})
    pairs.sort(key=lambda p: -max(p["shares"]))
    page, numbers = (course / "reports" / f"{name}.similarity{ext}" for ext in (".html", ".json"))
    page.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f"<h2>{html.escape(p['students'][0])} and {html.escape(p['students'][1])}: "
        f"{p['shares'][0]:.0%} and {p['shares'][1]:.0%} of their answer code match</h2>"
        f"<table><tr><td><pre>{marked(codes[p['students'][0]], p['slices'][0])}</pre></td>"
        f"<td><pre>{marked(codes[p['students'][1]], p['slices'][1])}</pre></td></tr></table>" for p in pairs)
    page.write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(name)}: similar answers</title>"
        "<style>td{vertical-align:top;width:50%}pre{white-space:pre-wrap}mark{background:#fd6}</style>"
        f"<h1>{html.escape(name)}: {count(len(pairs), 'pair')} of {len(prints)} submissions at or above {threshold:.0%}</h1>"
        "<p>Answer cells only; matching code is marked. A lead for a conversation, never a verdict: "
        "scores are unchanged.</p>" + rows)
    summary = {"assignment": name, "threshold": threshold, "min_overlap": MIN_OVERLAP, "submissions": len(prints),
               "pairs": [{k: v for k, v in p.items() if k != "slices"} for p in pairs],
               "html": str(page)}
    numbers.write_text(json.dumps(summary, indent=2))
    return summary


def summary(result: dict) -> list[str]:
    lines = [f"{result['assignment']}: {count(len(result['pairs']), 'pair')} of {result['submissions']} submissions share "
             f"at least {result['threshold']:.0%} of one's answer code"]
    lines += [f"  {p['students'][0]} and {p['students'][1]}: {p['shares'][0]:.0%} / {p['shares'][1]:.0%}"
              for p in result["pairs"]]
    return lines + [f"side by side: {result['html']}"]
