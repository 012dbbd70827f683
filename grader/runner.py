"""Executes one notebook inside the sandbox and writes what happened to file descriptor 3.

    python -m grader.runner NOTEBOOK --cell-seconds S --deadline-seconds D --output-bytes B

Runs each cell in order in a fresh kernel (whose stdout and stderr go nowhere), keeps at
most B bytes of outputs, stops at the first cell that kills the kernel or runs out of time,
or when the whole notebook passes its deadline, and reports: the executed notebook, the
values the hidden probes recorded (utils.checks.record), and the events. Nothing it writes
is trusted: the parent parses it as data and decides every score itself.
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

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

MAX_RECORD_BYTES = 16 * 2**20


class CappedClient(NotebookClient):
    """A NotebookClient that keeps at most `output_bytes` of outputs, then one note."""

    def __init__(self, nb, output_bytes: int, **kw) -> None:
        super().__init__(nb, **kw)
        self.output_budget = output_bytes
        self.output_cut = False

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {}), default=str))
        if size > self.output_budget:
            if not self.output_cut:
                self.output_cut = True
                outs.append(nbformat.v4.new_output(
                    "stream", name="stdout", text="[output limit reached: the rest of the output was cut]\n"))
            self.output_budget = 0
            return None
        self.output_budget -= size
        return super().output(outs, msg, display_id, cell_index)


def _not_dumpable() -> None:
    """Forbid same-user processes (the kernel) from reading this process's memory or fds."""
    try:
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def _records(folder: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    total = 0
    for path in sorted(folder.glob("*"))[:1000] if folder.is_dir() else []:
        if not path.is_file() or path.is_symlink():
            continue
        size = path.stat().st_size
        total += size
        if size > MAX_RECORD_BYTES or total > 4 * MAX_RECORD_BYTES:
            out[path.name] = {"too_large": size}
            continue
        out[path.name] = {"b64": base64.b64encode(path.read_bytes()).decode()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook")
    parser.add_argument("--cell-seconds", type=float, required=True)
    parser.add_argument("--deadline-seconds", type=float, required=True)
    parser.add_argument("--output-bytes", type=int, required=True)
    args = parser.parse_args()
    start = time.perf_counter()
    _not_dumpable()
    channel = os.fdopen(3, "w")
    src = Path(args.notebook)
    for item in src.parent.iterdir():  # the released files and the submission, as a scratch copy
        if item.is_file():
            shutil.copy2(item, Path.cwd() / item.name)
    records = Path.cwd() / ".records"
    os.environ["DLCOURSE_RECORDS"] = str(records)
    nb = nbformat.read(Path.cwd() / src.name, as_version=4)
    events: list[dict] = []
    client = CappedClient(nb, args.output_bytes, timeout=int(args.cell_seconds), kernel_name="python3",
                          allow_errors=True, interrupt_on_timeout=False, record_timing=False,
                          resources={"metadata": {"path": str(Path.cwd())}})
    try:
        with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            for index, cell in enumerate(nb.cells):
                if time.perf_counter() - start > args.deadline_seconds:
                    events.append({"event": "deadline", "cell": index})
                    break
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    events.append({"event": "timeout", "cell": index})
                    break
                except DeadKernelError:
                    events.append({"event": "kernel_died", "cell": index})
                    break
    except Exception as err:  # the kernel could not start, or the client broke
        events.append({"event": "runner_error", "error": f"{type(err).__name__}: {str(err)[:300]}"})
    json.dump({"notebook": nb, "records": _records(records), "events": events,
               "seconds": round(time.perf_counter() - start, 2)}, channel)
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
