"""The two messages between the trusted side and an executor, as plain, serializable data.

    intake (trusted) --RunRequest--> run (executor, untrusted code) --RunResult--> score (trusted)

A RunRequest carries what one sandboxed run needs and nothing secret: the canonical notebook
to execute (the student's answers on the release's cells, the hidden tests' code and inputs),
its file name, the limits and the canary nonces. Never reference results, the gradebook or
paths of the course directory. A RunResult carries what came back, as the runner reported it:
untrusted data that the score stage parses and checks field by field.

Both serialize to JSON bytes and back without loss (`to_bytes`, `from_bytes`); `from_bytes`
checks every field's type, so a malformed message is refused with BadMessage rather than
half-read. No pickle on any route to or from an executor (and between the coordinator's own
processes, grader.stagepool, a request crosses as this JSON too).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

from .sandbox import Limits


class BadMessage(ValueError):
    """Bytes that are not a well-formed message."""


def _check(cls, data: object) -> dict:
    """data as keyword arguments of dataclass cls, every field present and of its declared type."""
    if type(data) is not dict:
        raise BadMessage(f"a {cls.__name__} must be a JSON object")
    types = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict, "list": list,
             "dict | None": (dict, type(None)), "int | None": (int, type(None))}
    out = {}
    for f in fields(cls):
        if f.name not in data:
            raise BadMessage(f"{cls.__name__} has no field {f.name!r}")
        value = data[f.name]
        if not isinstance(value, types[f.type]) or (f.type != "bool" and type(value) is bool):
            raise BadMessage(f"{cls.__name__}.{f.name} is a {type(value).__name__}, expected {f.type}")
        out[f.name] = value
    return out


def _dumps(message) -> bytes:
    """A message's fields as JSON (dataclasses.asdict would deep-copy every value first)."""
    return json.dumps({f.name: getattr(message, f.name) for f in fields(message)}).encode()


def _loads(raw: bytes) -> object:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise BadMessage(f"not JSON: {type(err).__name__}") from None


@dataclass
class RunRequest:
    """One notebook to execute, as the intake stage made it."""

    id: str  # the submission's key in the batch (its student id)
    filename: str  # the notebook's name in the sandbox's /in folder
    notebook: dict  # nbformat v4, as JSON data
    limits: dict  # grader.sandbox.Limits as a dict
    nonce: dict  # the canary nonces planted in the notebook's last cells
    sandboxed: bool = True  # False only when the instructor chose --unsafe-no-sandbox

    def to_bytes(self) -> bytes:
        return self.__dict__.get("_raw") or _dumps(self)

    def __reduce__(self):
        """Between the coordinator's processes too, as JSON: its notebook arrives as plain dicts,
        which read 5x faster than nbformat's NotebookNodes unpickled."""
        return RunRequest.from_bytes, (self.to_bytes(),)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "RunRequest":
        request = cls(**_check(cls, _loads(raw)))
        request.sandbox_limits()  # refuse limits that are not Limits
        request._raw = raw  # sent on as it came (to an executor, to a scoring process): not encoded again
        return request

    def sandbox_limits(self) -> Limits:
        names = {f.name: f.type for f in fields(Limits)}
        if set(self.limits) != set(names) or not all(
                isinstance(v, (int, float)) and type(v) is not bool for v in self.limits.values()):
            raise BadMessage("limits are not grader.sandbox.Limits")
        return Limits(**{k: (int(v) if names[k] == "int" else float(v)) for k, v in self.limits.items()})


@dataclass
class RunResult:
    """What one run gave back, untrusted: the score stage parses every field."""

    id: str  # the RunRequest's id
    notebook: dict | None  # the executed notebook as the runner reported it (None: no report)
    records: dict  # record file name -> {"b64": contents} as the runner read them
    events: list  # the runner's events: {"event": "timeout", "cell": 7}, ...
    seconds: float  # wall time of the whole run, sandbox start to end
    log: str = ""  # the last lines of the runner's stderr
    returncode: int | None = 0  # None: stopped at the notebook's time limit
    report_ok: bool = True  # False: the runner was killed, or its report was not a JSON object
    processes_limited: bool = False  # a pids cgroup capped the number of processes
    timings: dict = field(default_factory=dict)  # where the time went: sandbox, kernel, setup, cells
    error: str = ""  # the executor could not run the notebook at all (no sandbox on its host, ...)

    def to_bytes(self) -> bytes:
        return _dumps(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "RunResult":
        return cls(**_check(cls, _loads(raw)))

    @classmethod
    def failed(cls, request_id: str, error: str) -> "RunResult":
        """The result of a run that never happened, with the reason."""
        return cls(id=request_id, notebook=None, records={}, events=[], seconds=0.0, returncode=None,
                   report_ok=False, error=error)
