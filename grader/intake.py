"""The intake stage (trusted): one student's upload -> the kept copy, its hash, and a RunRequest.

Keeps the upload byte for byte in COURSE/uploads/NAME/STUDENT (symbolic links kept as links,
never followed: one could point at the solutions), hashes the notebook, reads it as data and
rebuilds it on the canonical assignment (grader.canonical). What it hands on holds no
reference result: the request goes to an executor, the outcome stays here.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode
from nbformat.v4.rwbase import rejoin_lines, strip_transient

from . import canonical, nbschema
from .messages import RunRequest
from .report import Outcome
from .sandbox import Limits

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


@dataclass
class Assignment:
    """What intake needs of a released assignment."""

    name: str
    release: nbformat.NotebookNode  # what the students were given
    source: nbformat.NotebookNode  # the instructor's version: hidden tests included


@dataclass
class Intake:
    outcome: Outcome
    request: RunRequest | None = None  # None: nothing to run (the outcome says why)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def linked(path: Path, folder: Path) -> bool:
    """Is path, or a folder between it and `folder`, a symbolic link?"""
    return any(p.is_symlink() for p in [path, *path.parents] if p == folder or folder in p.parents)


def notebook_entries(folder: Path) -> list[tuple[Path, bool, bool]]:
    """(path, is a link, is a file) for every entry named *.ipynb under `folder`, in the order of
    folder.rglob("*.ipynb"): a folder's entries, then its subfolders' in turn; linked folders
    are not entered. One scandir per folder: 0.02 ms for a submission, where rglob twice and a
    stat per path took 0.17."""
    found = []

    def visit(path: str) -> None:
        with os.scandir(path) as listing:
            entries = list(listing)
        for entry in entries:
            if entry.name.endswith(".ipynb"):
                link = entry.is_symlink()
                found.append((Path(entry.path), link, not link and entry.is_file(follow_symlinks=False)))
        for entry in entries:
            if not entry.is_symlink() and entry.is_dir(follow_symlinks=False):
                visit(entry.path)

    visit(str(folder))
    return found


def find_notebook(folder: Path, name: str, outcome: Outcome) -> Path | None:
    """The submission's notebook: NAME.ipynb, else the only notebook there; else None, with the reason."""
    entries = notebook_entries(folder)
    if links := [path for path, link, _ in entries if link]:
        outcome.notes.append("symbolic links ignored: " + ", ".join(str(p.relative_to(folder)) for p in links))
    expected = folder / f"{name}.ipynb"
    if (expected, False, True) in entries:
        return expected
    found = sorted(path for path, link, file in entries if file and ".ipynb_checkpoints" not in path.parts)
    if len(found) == 1:
        outcome.notes.append(f"notebook was named {found[0].relative_to(folder)}; graded as {name}.ipynb")
        return found[0]
    outcome.status = "missing"
    if found:
        outcome.notes.append(f"{len(found)} notebooks and none named {name}.ipynb: "
                             + ", ".join(str(p.relative_to(folder)) for p in found))
    else:
        outcome.notes.append(f"no notebook in the submission (expected {name}.ipynb)")
    return None


def read_notebook(text: str) -> NotebookNode:
    """nbformat.reader.reads, with each node made as the JSON is parsed: for a v4 notebook, half
    the time of parsing it and converting it afterwards. Any other version, and anything it
    cannot read, goes through nbformat, which gives its own reason."""
    try:
        nb = json.loads(text, object_hook=NotebookNode)
        if type(nb) is NotebookNode and nb.get("nbformat") == 4:
            return strip_transient(rejoin_lines(nb))  # what nbformat's v4 reader does to the nodes
    except Exception:
        pass
    return nbformat.reader.reads(text)


def parse_submission(data: bytes, outcome: Outcome) -> nbformat.NotebookNode | None:
    """The notebook in `data`, or None with the reason (too large, not JSON, not a notebook)."""
    if len(data) > MAX_NOTEBOOK_BYTES:
        outcome.status = "ungradable"
        outcome.notes.append(f"notebook is {len(data) / 2**20:.1f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit")
        return None
    try:
        nb = read_notebook(data.decode("utf-8"))  # without nbformat.reads' check, which only logs
        if nbschema.known(nb):  # format 4.0 to 4.5: nbformat's schema, checked a cell at a time
            nbschema.check_notebook(nb)  # (a cell's id is never read: grader.canonical gives new ones)
        else:  # older formats, converted as nbformat does
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nb = nbformat.convert(nb, 4)
                nbformat.validate(nb)
    except Exception as err:  # invalid JSON, invalid UTF-8, not a notebook
        outcome.status = "ungradable"
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        outcome.notes.append(f"not a valid notebook file ({type(err).__name__}: {first[:200]})")
        return None
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        outcome.notes.append(f"kernel was {kernel!r}; graded with python3")
        nb.metadata["kernelspec"] = dict(KERNEL)
    return nb


def keep_upload(folder: Path, uploads: Path) -> Path:
    """Copy a student's folder to `uploads`/STUDENT byte for byte (links as links); the original is untouched."""
    kept = uploads / folder.name
    if kept.exists():
        shutil.rmtree(kept)
    shutil.copytree(folder, kept, symlinks=True)
    return kept


def intake(folder: Path, assignment: Assignment, uploads: Path, limits: Limits, sandboxed: bool = True) -> Intake:
    """One entry of the submissions folder -> its outcome so far and, if there is a notebook to run, a request."""
    outcome = Outcome(student=folder.name)
    if not folder.is_dir() or folder.is_symlink():
        outcome.status = "ungradable"
        outcome.notes.append("a file, not a student folder: an upload must sit in a folder named by the student id")
        return Intake(outcome)
    if not STUDENT_ID.match(folder.name):
        outcome.status = "ungradable"
        outcome.notes.append("the folder name is not a valid student id (letters, digits, _ . @ + -)")
        return Intake(outcome)
    kept = keep_upload(folder, uploads)
    path = find_notebook(kept, assignment.name, outcome)
    if path is None:
        return Intake(outcome)
    data = path.read_bytes()
    outcome.upload, outcome.upload_sha256 = str(path), sha256(data)
    nb = parse_submission(data, outcome)
    if nb is None:
        return Intake(outcome)
    run_nb, nonce = canonical.to_run(nb, assignment.release, assignment.source)
    request = RunRequest(id=folder.name, filename=f"{assignment.name}.ipynb", notebook=run_nb, limits=asdict(limits),
                         nonce=nonce, sandboxed=sandboxed)
    return Intake(outcome, request)
