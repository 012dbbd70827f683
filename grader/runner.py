"""Executes one notebook inside the sandbox and writes what happened to the result pipe.

    python -m grader.runner NOTEBOOK --cell-seconds S --deadline-seconds D --output-bytes B

Runs each cell in order in a fresh kernel (whose stdout and stderr go nowhere), keeps at
most B bytes of outputs, stops at the first cell that kills the kernel or runs out of time,
or when the whole notebook passes its deadline, and reports: the executed notebook, the
values the hidden probes recorded (utils.checks.record), the events and where the time went.
Nothing it writes is trusted: the parent parses it as data and decides every score itself.

The cells the grader wrote (hidden-test probes and canaries) run with store_history=False:
their code never enters the kernel's input history (`In`, `_ih`), so a student's later cell
cannot print it from there. (Code that hooks the kernel's input transformers still sees it;
the trusted side redacts hidden-test lines from every output before anyone sees them.)
"""
from __future__ import annotations

import argparse
import base64
import ctypes
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# jsonschema (under nbformat) imports the optional IRI checker rfc3987_syntax, which compiles
# a grammar for 1.4 s; the runner validates no IRIs, so it declines that module.
sys.modules.setdefault("rfc3987_syntax", None)

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellTimeoutError, DeadKernelError  # noqa: E402

from utils import wire  # noqa: E402


KERNEL_NAME = "python3"
TRUSTED_ROLES = ("visible", "probe", "canary")  # cells the grader wrote: their own small budget
TRUSTED_CELL_BYTES = 256 * 2**10
UNSTORED_ROLES = ("probe", "canary")  # kept out of the kernel's input history


class CappedClient(NotebookClient):
    """A NotebookClient that keeps at most `output_bytes` of the student's cells' outputs in
    all, and at most TRUSTED_CELL_BYTES per grader cell, then one note where it cuts."""

    def __init__(self, nb, output_bytes: int, **kw) -> None:
        super().__init__(nb, **kw)
        self.student_budget = output_bytes
        self.cell_used: dict[int, int] = {}
        self.output_cut = False

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {}), default=str))
        role = self.nb.cells[cell_index].metadata.get("dlcourse", {}).get("role")
        if role in TRUSTED_ROLES:
            used = self.cell_used.get(cell_index, 0)
            allowed = size <= TRUSTED_CELL_BYTES - used
            self.cell_used[cell_index] = used + size
        else:
            allowed = size <= self.student_budget
            self.student_budget = self.student_budget - size if allowed else 0
        if allowed:
            return super().output(outs, msg, display_id, cell_index)
        if not any(o.get("text", "").startswith("[output limit") for o in outs):
            self.output_cut = True
            outs.append(nbformat.v4.new_output(
                "stream", name="stdout", text="[output limit reached: the rest of the output was cut]\n"))
        return None


def not_dumpable() -> None:
    """Forbid same-user processes (the kernel) from reading this process's memory or fds."""
    try:
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def _records(folder: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    total = 0
    for path in sorted(folder.glob("*"))[:wire.MAX_RECORDS] if folder.is_dir() else []:
        if not path.is_file() or path.is_symlink():
            continue
        size = path.stat().st_size
        total += size
        if size > wire.MAX_RECORD_BYTES or total > wire.MAX_TOTAL_RECORD_BYTES:
            out[path.name] = {"too_large": size}
            continue
        out[path.name] = {"b64": base64.b64encode(path.read_bytes()).decode()}
    return out


def main() -> int:
    """A run from nothing: this process, then a kernel process (grader.warm forks both instead)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook")
    parser.add_argument("--cell-seconds", type=float, required=True)
    parser.add_argument("--deadline-seconds", type=float, required=True)
    parser.add_argument("--output-bytes", type=int, required=True)
    args = parser.parse_args()
    started_at = time.time()
    not_dumpable()
    channel = os.fdopen(int(os.environ.pop(wire.RESULT_FD_ENV)), "w")  # the kernel does not learn it
    src = Path(args.notebook)
    for item in src.parent.iterdir():  # the released files and the submission, as a scratch copy
        if item.is_file():
            shutil.copy2(item, Path.cwd() / item.name)
    execute(Path.cwd() / src.name, args.cell_seconds, args.deadline_seconds, args.output_bytes, channel,
            started_at=started_at)
    return 0


def execute(path: Path, cell_seconds: float, deadline_seconds: float, output_bytes: int, channel,
            km=None, started_at: float | None = None) -> None:
    """Execute the notebook at `path` cell by cell in a new kernel (started by `km`, a jupyter_client
    kernel manager, if given) and write the report to `channel`, once, before the kernel stops."""
    start = time.perf_counter()
    started_at = started_at or time.time()
    records = Path(os.environ.setdefault(wire.RECORDS_ENV, str(Path.cwd() / ".records")))
    nb = nbformat.read(path, as_version=4)
    events: list[dict] = []
    timings = {"started_at": started_at, "kernel": 0.0, "cells": {}}
    client = CappedClient(nb, output_bytes, km=km, timeout=int(cell_seconds), kernel_name=KERNEL_NAME,
                          allow_errors=True, interrupt_on_timeout=False, record_timing=False,
                          shutdown_kernel="immediate", resources={"metadata": {"path": str(Path.cwd())}})

    def report() -> None:
        """Send everything to the trusted side, once. It ends the sandbox as soon as the pipe
        closes, so no time is spent shutting a kernel down gracefully."""
        if channel.closed:
            return
        if client.output_cut:
            events.append({"event": "output_cut"})
        json.dump({"notebook": nb, "records": _records(records), "events": events, "timings": timings,
                   "seconds": round(time.perf_counter() - start, 2)}, channel)
        channel.close()

    try:
        kernel_start = time.perf_counter()
        with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            timings["kernel"] = time.perf_counter() - kernel_start
            for index, cell in enumerate(nb.cells):
                if time.perf_counter() - start > deadline_seconds:
                    events.append({"event": "deadline", "cell": index})
                    break
                tag = cell.metadata.get("dlcourse", {})
                role = tag.get("role", "extra")
                part = "setup" if tag.get("grade_id") == "setup" else role  # the assignment's imports
                cell_start = time.perf_counter()
                try:
                    client.execute_cell(cell, index, store_history=role not in UNSTORED_ROLES)
                except CellTimeoutError:
                    events.append({"event": "timeout", "cell": index})
                    break
                except DeadKernelError:
                    events.append({"event": "kernel_died", "cell": index})
                    break
                finally:
                    timings["cells"][part] = timings["cells"].get(part, 0.0) + time.perf_counter() - cell_start
            report()  # while the kernel still runs: it is killed with the sandbox
    except Exception as err:  # the kernel could not start, or the client broke
        events.append({"event": "runner_error", "error": f"{type(err).__name__}: {str(err)[:300]}"})
    report()


if __name__ == "__main__":
    sys.exit(main())
