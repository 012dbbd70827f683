"""Reading an LMS download (a zip, or the folder it was unpacked into) without trusting it.

    entries, skipped = read_download(path)   # [Entry(path="a/b.ipynb", data=b"...")], ["why", ...]

A zip is refused whole, with the reasons, if any entry is hostile: a path that climbs out
(`../`) or is absolute, a symbolic link, a name that is not UTF-8, a duplicate name, or a zip
bomb (an entry or a total above the size limits, or compressed more than RATIO to one). Nothing
is written anywhere: the entries are read into memory, each at most ENTRY_BYTES, reading no
more than that however large the header says the entry is. In an unpacked folder, symbolic
links are skipped (never followed) and listed.
"""
from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .intake import linked
from .report import GraderError

ENTRY_BYTES = 64 * 2**20  # a notebook with its outputs; the sandbox keeps at most 4 MB of output anyway
TOTAL_BYTES = 2 * 2**30  # a whole download
RATIO = 200  # uncompressed : compressed, above which an entry of more than RATIO_FLOOR bytes is a bomb
RATIO_FLOOR = 2**20
UTF8_FLAG = 0x800


@dataclass(frozen=True)
class Entry:
    path: str  # relative, with / separators, checked safe
    data: bytes


def unsafe_path(name: str) -> str | None:
    """Why an archive member's name may not be used as a relative path, or None."""
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if any(part == ".." for part in PurePosixPath(name).parts):
        return "a path that climbs out of the folder"
    if "\x00" in name:
        return "a NUL character in the name"
    return None


def _read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes | None:
    """The member's bytes, or None if it inflates past ENTRY_BYTES (whatever its header claims)."""
    with archive.open(info) as f:
        data = f.read(ENTRY_BYTES + 1)
    return None if len(data) > ENTRY_BYTES else data


def read_zip(path: Path) -> list[Entry]:
    """Every file of the zip at `path`, or GraderError naming each hostile member."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise GraderError(f"{path.name} is not a readable zip file: {err}") from None
    except UnicodeDecodeError:  # marked UTF-8, and it is not
        raise GraderError(f"refused {path.name}, nothing was taken from it: a name that is not UTF-8") from None
    problems, entries, seen, total = [], [], set(), 0
    with archive:
        for info in archive.infolist():
            name = info.filename
            if not info.flag_bits & UTF8_FLAG and not name.isascii():
                problems.append(f"{name!r}: a name that is not UTF-8")
                continue
            if why := unsafe_path(name):
                problems.append(f"{name!r}: {why}")
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                problems.append(f"{name!r}: a symbolic link")
                continue
            if info.is_dir():
                continue
            if name in seen:
                problems.append(f"{name!r}: the name appears twice")
                continue
            seen.add(name)
            if info.file_size > ENTRY_BYTES:
                problems.append(f"{name!r}: {info.file_size} bytes, over the limit of {ENTRY_BYTES} per file")
                continue
            if info.file_size > RATIO_FLOOR and info.file_size > RATIO * max(info.compress_size, 1):
                problems.append(f"{name!r}: compressed {info.file_size // max(info.compress_size, 1)} to 1, "
                                f"a zip bomb (limit {RATIO} to 1)")
                continue
            try:
                data = _read_capped(archive, info)
            except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as err:  # CRC, encryption
                problems.append(f"{name!r}: cannot be read ({err})")
                continue
            if data is None:
                problems.append(f"{name!r}: inflates past {ENTRY_BYTES} bytes, more than its header says: a zip bomb")
                continue
            total += len(data)
            if total > TOTAL_BYTES:
                problems.append(f"the files inflate past {TOTAL_BYTES} bytes in all: a zip bomb")
                break
            entries.append(Entry(name, data))
    if problems:
        raise GraderError(f"refused {path.name}, nothing was taken from it: " + "; ".join(problems))
    return entries


def read_folder(folder: Path) -> tuple[list[Entry], list[str]]:
    """Every regular file under `folder` (an unpacked download), and the links skipped."""
    entries, skipped, total = [], [], 0
    folder = folder.resolve()  # the folder given may be reached through a link; what is inside may not
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if linked(path, folder):
            if path.is_symlink():
                skipped.append(f"{rel}: a symbolic link, not followed")
            continue
        if not path.is_file():
            continue
        if path.stat().st_size > ENTRY_BYTES:
            skipped.append(f"{rel}: {path.stat().st_size} bytes, over the limit of {ENTRY_BYTES} per file")
            continue
        data = path.read_bytes()
        total += len(data)
        if total > TOTAL_BYTES:
            raise GraderError(f"{folder} holds more than {TOTAL_BYTES} bytes of files: not a class's submissions")
        entries.append(Entry(rel, data))
    return entries, skipped


def read_download(path: Path) -> tuple[list[Entry], list[str]]:
    """The files of an LMS download, a zip or an unpacked folder; and what was skipped, with why."""
    path = Path(path)
    if path.is_dir():
        return read_folder(path)
    if path.is_file():
        return read_zip(path), []
    raise GraderError(f"{path} is neither a zip file nor a folder")
