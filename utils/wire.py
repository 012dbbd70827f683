"""The format in which hidden tests hand results to the grader: one name and one number each.

A record is one JSON file in the folder named by $DLCOURSE_RECORDS, written inside the
student's kernel by `utils.checks.record` and read by the grader's trusted side as plain
data. It lives here, in `utils`, because students install `utils` and never `grader`: the
grader imports this module, never the other way round. No torch here: the trusted side
reads records with NumPy only.

    {"name": "ex1_tests/random", "kind": "tensor", "dtype": "float32", "shape": [2, 3],
     "data": "<base64 of the raw little-endian bytes>", "atol": 1e-6, "rtol": 1e-5}
    {"name": ..., "kind": "json", "value": <JSON data>, ...}
    {"name": ..., "kind": "error", "value": "TypeError: ..."}
    {"name": ..., "kind": "unsupported", "value": "tensor of dtype torch.complex64"}
"""
from __future__ import annotations

import re

RECORDS_ENV = "DLCOURSE_RECORDS"  # the folder records are written to (unset: recording does nothing)
RESULT_FD_ENV = "DLCOURSE_RESULT_FD"  # the pipe on which the runner reports to the trusted side

KINDS = ("tensor", "json", "error", "unsupported")
DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}/[A-Za-z0-9_.-]{1,80}$")  # grade_id/label

MAX_RECORDS = 1000  # record files read from one run
MAX_RECORD_BYTES = 16 * 2**20  # one record file
MAX_TOTAL_RECORD_BYTES = 64 * 2**20  # all record files of one run (the size of their file system)
MAX_ELEMENTS = 4_000_000  # elements of one tensor record
MAX_ERROR_CHARS = 200  # of an exception's message in an "error" record

# What the trusted side reads back from one run: the records (base64: 4/3 of their size), the
# outputs the sandbox keeps (grader.sandbox.Limits.output_bytes, up to 4 MiB by default) and
# room for the notebook itself.
MAX_RESULT_BYTES = MAX_TOTAL_RECORD_BYTES * 4 // 3 + 32 * 2**20


def filename(name: str) -> str:
    """The file a record named `name` ("grade_id/label") is written to."""
    return name.replace("/", "~") + ".json"


def grade_id(name: str) -> str:
    """The test cell a record belongs to: "ex1_tests/random" -> "ex1_tests"."""
    return name.split("/", 1)[0]


def label(name: str) -> str:
    """The hidden case of a record: "ex1_tests/random" -> "random"."""
    return name.split("/", 1)[1]
