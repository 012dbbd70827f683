"""Trusted scoring: parse what a sandboxed run recorded and compare it with the reference run.

Everything read here came out of untrusted code, so it is parsed as plain data (JSON; tensors
as a dtype from a fixed list, a shape and raw bytes), with sizes checked before use. A record
matches when its kind, dtype and shape equal the reference's exactly and its values agree
within the reference's tolerances. Nothing from the student's run can set a tolerance.
"""
from __future__ import annotations

import base64
import binascii
import json
import math

import numpy as np

from utils import wire


class BadRecord(ValueError):
    """A record that is not well-formed data."""


def parse(raw_bytes: bytes) -> dict:
    """One record file's bytes -> its JSON object (raises BadRecord)."""
    try:
        entry = json.loads(raw_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise BadRecord(f"not JSON: {type(err).__name__}") from None
    if type(entry) is not dict or type(entry.get("name")) is not str or entry.get("kind") not in wire.KINDS:
        raise BadRecord("not a record")
    if not wire.NAME.match(entry["name"]):
        raise BadRecord("not a record name")
    return entry


def load_bundle_records(files: dict) -> tuple[dict[str, dict], list[str]]:
    """The runner's {filename: {"b64": ...}} -> ({name: record}, problems)."""
    records, problems = {}, []
    if type(files) is not dict:
        return {}, ["records are not a mapping"]
    for filename, blob in list(files.items())[:wire.MAX_RECORDS]:
        try:
            if type(blob) is not dict or type(blob.get("b64")) is not str:
                raise BadRecord("missing or oversized")
            if len(blob["b64"]) > wire.MAX_RECORD_BYTES * 4 // 3 + 4:
                raise BadRecord("oversized")
            entry = parse(base64.b64decode(blob["b64"], validate=True))
            if filename != wire.filename(entry["name"]):
                raise BadRecord("file name does not match the record name")
            records[entry["name"]] = entry
        except (BadRecord, binascii.Error, ValueError) as err:
            problems.append(f"{str(filename)[:80]}: {err}")
    return records, problems


def tensor(entry: dict) -> np.ndarray:
    """A tensor record as a NumPy array, checked: known dtype, sane shape, exact byte count."""
    dtype, shape = entry.get("dtype"), entry.get("shape")
    if dtype not in wire.DTYPES or type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise BadRecord("bad dtype or shape")
    n = math.prod(shape)
    if n > wire.MAX_ELEMENTS:
        raise BadRecord("too many elements")
    try:
        data = base64.b64decode(entry.get("data", ""), validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise BadRecord("data is not base64") from None
    if len(data) != n * np.dtype(dtype).itemsize:
        raise BadRecord("byte count does not match the shape")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _json_equal(a: object, b: object, atol: float, rtol: float) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return a == b or (math.isfinite(a) and abs(a - b) <= atol + rtol * abs(b))
    if type(a) is list:
        return len(a) == len(b) and all(_json_equal(x, y, atol, rtol) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k], atol, rtol) for k in a)
    return a == b


def matches(student: dict | None, reference: dict) -> bool:
    """Does the student's record equal the reference record (tolerances from the reference)?"""
    if student is None or student.get("kind") != reference["kind"]:
        return False
    atol, rtol = float(reference.get("atol", 1e-6)), float(reference.get("rtol", 1e-5))
    if reference["kind"] == "json":
        return _json_equal(student.get("value"), reference["value"], atol, rtol)
    if reference["kind"] != "tensor":
        return False  # a reference never records an error
    if all(student.get(k) == reference.get(k) for k in ("dtype", "shape", "data")):
        return True  # the very bytes of the reference (and it is well-formed): no need to decode
    try:
        s, r = tensor(student), tensor(reference)
    except BadRecord:
        return False
    if s.dtype != r.dtype or s.shape != r.shape:
        return False
    if r.dtype.kind in "fc":
        return bool(np.all(np.isfinite(s) == np.isfinite(r)) and np.allclose(s, r, atol=atol, rtol=rtol, equal_nan=True))
    return bool(np.array_equal(s, r))


def explain(student: dict | None, reference: dict) -> str:
    """Why a record does or does not match, without revealing the expected values."""
    if matches(student, reference):
        return "passed"
    if student is None:
        return "no result (the cell did not get this far, or the record was removed)"
    if student.get("kind") == "error":
        return f"raised {str(student.get('value'))[:150]}"
    if student.get("kind") != reference["kind"]:
        got = student.get("value") if student.get("kind") == "unsupported" else student.get("kind")
        want = "a tensor" if reference["kind"] == "tensor" else type(reference.get("value")).__name__
        return f"returned {str(got)[:60]}, expected {want}"
    if reference["kind"] == "tensor":
        try:
            s, r = tensor(student), tensor(reference)
        except BadRecord as err:
            return f"returned a malformed tensor ({err})"
        if s.dtype != r.dtype or s.shape != r.shape:
            return f"returned a {s.dtype} tensor of shape {tuple(s.shape)}, expected {r.dtype} {tuple(r.shape)}"
    return "wrong values"


def cell_scores(student: dict[str, dict], reference: dict[str, dict],
                points: dict[str, float]) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Score of each autograded test cell (its points times the fraction of its records that
    match) and one explanation line per hidden case."""
    scores, details = {}, {}
    for grade_id, max_points in points.items():
        names = sorted(n for n in reference if wire.grade_id(n) == grade_id)
        verdicts = [explain(student.get(n), reference[n]) for n in names]
        hits = verdicts.count("passed")
        scores[grade_id] = round(max_points * hits / len(names), 4) if names else 0.0
        details[grade_id] = [f"hidden case {wire.label(n)}: {v}" for n, v in zip(names, verdicts)]
    return scores, details
