"""Run untrusted code under bubblewrap: no network, a private view of the file system, its own
process namespace killed as a whole at the end, and limits on time, memory, processes,
file size and scratch space.

The sandbox sees, read-only: the system (/usr, a few files of /etc), the Python installation and virtual
environment, and the course's `utils` and `grader` packages. It sees nothing else of the
host: not the course directory, the gradebook, the solutions, or other submissions. Its
only writable places are /home/student and /tmp, small memory-backed file systems (and /records,
for the hidden tests' records). Results leave through one pipe (its number in
$DLCOURSE_RESULT_FD) that the trusted parent reads with a size cap (utils.wire).

Two ways in: `run` starts a sandbox for one command (the tests use it, and unsandboxed runs
take the same route without bubblewrap); `Warm` keeps one sandbox per worker and has
grader.warm fork every notebook's run into fresh namespaces inside it, so that the runner, the
kernel and torch are started once per worker rather than once per submission.
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from utils import wire

REPO = Path(__file__).resolve().parent.parent
WORKDIR = "/home/student"  # the sandbox's scratch folder and working directory
RECORDS = "/records"  # where probes record results: apart, so that a full scratch disk cannot erase them
PIDS_CGROUPS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))  # cgroup v1, then v2


@dataclass(frozen=True)
class Limits:
    """What one submission may use."""

    cell_seconds: float = 60.0  # per cell, then the kernel is stopped
    notebook_seconds: float = 240.0  # the whole run, kernel start included
    memory_bytes: int = 4 * 2**30  # address space per process (torch needs about 0.8 GB)
    processes: int = 256  # tasks (processes and threads) in the sandbox, where a pids cgroup is writable
    file_bytes: int = 64 * 2**20  # largest file the code may write
    scratch_bytes: int = 256 * 2**20  # the scratch folder and /tmp hold at most this much each
    output_bytes: int = 4 * 2**20  # outputs of the student's cells kept; the rest is cut with a note


class SandboxUnavailable(RuntimeError):
    """No working sandbox on this machine; the message says why and what to install."""


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """This process gets `sig` when its parent ends (Linux; checked after setting it: the parent
    may already be gone)."""
    parent = os.getppid()
    if ctypes.CDLL(None, use_errno=True).prctl(1, sig, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
        err = ctypes.get_errno()
        raise OSError(err, f"prctl: {os.strerror(err)}")
    if os.getppid() != parent:
        os._exit(1)


@functools.cache
def unavailable_reason() -> str | None:
    """None when bubblewrap works here, else why not (checked once per process)."""
    if sys.platform != "linux":
        return f"the sandbox needs Linux namespaces (bubblewrap); this is {sys.platform}"
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap; `make test` installs it)"
    probe = subprocess.run(["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {probe.stderr.strip()[:300]}"
    limits = Limits()  # a run's isolation, tried once
    inner = [sys.executable, "-m", "grader.warm", "--check", "--scratch-bytes", str(limits.scratch_bytes)]
    nested = subprocess.run(bwrap_command(inner, limits, result_fd=2), capture_output=True, text=True, timeout=60)
    if nested.returncode != 0:
        return ("bubblewrap works, but a sandbox cannot create the namespaces that keep one run apart from "
                f"the next (grader.warm): {nested.stderr.strip()[-300:]}")
    return None


# The few files of /etc that Python, its libraries and fonts read. Not /etc as a whole: the
# sandbox may map to the host's root user (bubblewrap run by root), and /etc holds secrets.
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives", "fonts", "mime.types",
       "nsswitch.conf", "host.conf", "gai.conf")
ETC_OWN = REPO / "grader" / "etc"  # the sandbox's own passwd, group and hosts: student is uid 1000


def ro_paths() -> list[Path]:
    """What the sandbox sees read-only of the host besides /usr and /etc: Python, its environment, the course packages."""
    paths = [Path("/usr"), Path(sys.base_prefix), Path(sys.prefix), REPO / "utils", REPO / "grader"]
    out: list[Path] = []
    for p in paths:
        p = p.resolve()
        if p.exists() and not any(p == q or q in p.parents for q in out):
            out.append(p)
    return out


def bwrap_command(inner: list[str], limits: Limits, result_fd: int, inputs: Path | None = None) -> list[str]:
    """The bubblewrap command line that runs `inner` with the files of ETC_OWN in /etc, `inputs`
    (if given) visible read-only at /in and the number of the result pipe in $DLCOURSE_RESULT_FD."""
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
           "--uid", "1000", "--gid", "1000", "--hostname", "sandbox"]
    # Scratch file systems first: bubblewrap mounts in order, and the read-only binds that
    # follow must stay visible even when the repository or Python lives under /tmp.
    size = str(limits.scratch_bytes)
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/tmp",
            "--size", size, "--tmpfs", WORKDIR, "--size", str(wire.MAX_TOTAL_RECORD_BYTES), "--tmpfs", RECORDS]
    for p in ro_paths():
        cmd += ["--ro-bind", str(p), str(p)]
    for name in ETC:
        cmd += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in sorted(ETC_OWN.iterdir()):
        cmd += ["--ro-bind", str(path), f"/etc/{path.name}"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32"):  # merged-/usr symlinks, or real folders
        host = Path("/") / name
        if host.is_symlink():
            cmd += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            cmd += ["--ro-bind", str(host), f"/{name}"]
    if inputs is not None:
        cmd += ["--ro-bind", str(inputs), "/in"]
    cmd += ["--chdir", WORKDIR, "--clearenv"]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/tmp/home", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "DLCOURSE_QUIET": "1", "OMP_NUM_THREADS": "1",
           "JUPYTER_RUNTIME_DIR": "/tmp/runtime", "JUPYTER_DATA_DIR": "/tmp/jupyter", "IPYTHONDIR": "/tmp/ipython",
           "MPLCONFIGDIR": "/tmp/mpl", "PYDEVD_DISABLE_FILE_VALIDATION": "1", wire.RESULT_FD_ENV: str(result_fd),
           wire.RECORDS_ENV: RECORDS}
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return cmd + ["--"] + inner


def _tail(log, start: int = 0) -> str:
    """The last lines of what was written to `log` from `start` on."""
    log.seek(max(start, log.seek(0, os.SEEK_END) - 8192))
    return "\n".join(log.read().decode(errors="replace").strip().splitlines()[-40:])


def _limited(cmd: list[str], limits: Limits, cgroup: "_PidsCgroup") -> list[str]:
    """cmd started inside the cgroup (joined before exec, so every descendant counts), under rlimits."""
    procs = str(cgroup.path / "cgroup.procs") if cgroup.path else "/dev/null"
    return ["sh", "-c", 'echo 0 > "$1"; shift; exec "$@"', "sh", procs,
            "prlimit", f"--as={limits.memory_bytes}", f"--fsize={limits.file_bytes}", "--core=0", "--", *cmd]


class _PidsCgroup:
    """A pids cgroup capping the number of tasks, where this machine lets us make one."""

    def __init__(self, limit: int, enabled: bool = True) -> None:
        self.path: Path | None = None
        for root in PIDS_CGROUPS if enabled else ():
            if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
                path = root / f"dlcourse-{uuid.uuid4().hex[:12]}"
                try:
                    path.mkdir()
                    (path / "pids.max").write_text(str(limit))
                    self.path = path
                    break
                except OSError:
                    try:
                        path.rmdir()
                    except OSError:
                        pass

    def kill_and_remove(self) -> None:
        if self.path is None:
            return
        for _ in range(50):
            pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        try:
            self.path.rmdir()
        except OSError:
            pass


@dataclass
class Run:
    """What came back from one sandboxed run."""

    result: bytes  # what the code wrote to the result pipe, at most wire.MAX_RESULT_BYTES
    returncode: int | None  # None: killed at the notebook time limit
    seconds: float
    stderr: str  # the last lines of the runner's stderr, for the log
    processes_limited: bool  # whether a pids cgroup capped the process count
    started_at: float = 0.0  # wall-clock time (time.time()) just before the sandbox was started


def run(inner: list[str], inputs: Path, limits: Limits, sandboxed: bool = True) -> Run:
    """Run `inner` (in the sandbox unless sandboxed=False) and read its result pipe with a size cap.

    The whole process tree is killed when it ends or when the notebook time limit is reached.
    """
    if sandboxed and (reason := unavailable_reason()):
        raise SandboxUnavailable(reason)
    read_fd, write_fd = os.pipe()
    cmd = bwrap_command(inner, limits, write_fd, inputs) if sandboxed else inner
    cgroup = _PidsCgroup(limits.processes, enabled=sandboxed)
    start, started_at = time.perf_counter(), time.time()
    env = None if sandboxed else {**os.environ, "DLCOURSE_QUIET": "1", "OMP_NUM_THREADS": "1",
                                  wire.RESULT_FD_ENV: str(write_fd)}
    scratch = None if sandboxed else tempfile.mkdtemp(prefix="dlcourse-work-")  # trusted runs only
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(_limited(cmd, limits, cgroup), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=log, pass_fds=(write_fd,), start_new_session=True, env=env, cwd=scratch)
    os.close(write_fd)
    chunks, size, returncode = [], 0, None
    # The runner checks its deadline between cells, so the last cell may run cell_seconds past
    # it; this backstop only catches a runner that does not stop by itself.
    deadline = start + limits.notebook_seconds + limits.cell_seconds + 15
    try:
        os.set_blocking(read_fd, False)
        while True:
            try:
                chunk = os.read(read_fd, 1 << 16)
            except BlockingIOError:
                chunk = None
            if chunk:
                if size < wire.MAX_RESULT_BYTES:
                    chunks.append(chunk[: wire.MAX_RESULT_BYTES - size])
                size += len(chunk)
            elif chunk == b"":  # the pipe is closed: the report is complete, or its writer is dead
                returncode = proc.poll()
                returncode = 0 if returncode is None else returncode  # None is kept for the time limit
                break
            elif time.perf_counter() > deadline:
                break
            else:
                time.sleep(0.02)
    finally:
        os.close(read_fd)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        cgroup.kill_and_remove()
        proc.wait()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    tail = _tail(log)
    log.close()
    return Run(b"".join(chunks), returncode, time.perf_counter() - start, tail, cgroup.path is not None, started_at)


class Warm:
    """A sandbox that stays up between runs: grader.warm inside imports the runner, the kernel and
    torch once, then forks each run into fresh namespaces of its own (see grader.warm for what
    that isolates). One run at a time; not shared between threads.

    `run` starts it when needed (again after a run killed it, or with other limits), sends one
    request and reads that run's report. A run that passes its time limit, or kills the sandbox,
    takes the sandbox down with it; the next run starts a new one.
    """

    def __init__(self) -> None:
        self.limits: Limits | None = None
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Warm":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self, limits: Limits) -> None:
        if reason := unavailable_reason():
            raise SandboxUnavailable(reason)
        self.limits = limits
        self.results, write_fd = os.pipe()
        inner = [sys.executable, "-m", "grader.warm", "--scratch-bytes", str(limits.scratch_bytes)]
        self.cgroup = _PidsCgroup(limits.processes)
        self.log = tempfile.TemporaryFile()
        cmd = bwrap_command(inner, limits, write_fd)
        self.proc = subprocess.Popen(_limited(cmd, limits, self.cgroup), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, pass_fds=(write_fd,),
                                     start_new_session=True)
        os.close(write_fd)
        for fd in (self.results, self.proc.stdin.fileno(), self.proc.stdout.fileno()):
            os.set_blocking(fd, False)
        self.status = b""

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.cgroup.kill_and_remove()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.log):
            stream.close()
        os.close(self.results)
        self.proc = None

    def run(self, notebook: str, filename: str, limits: Limits) -> Run:
        """Execute `notebook` (JSON text) as /home/student/`filename` and return the run's report."""
        if self.proc is not None and (self.limits != limits or self.proc.poll() is not None):
            self.close()
        if self.proc is None:
            self._start(limits)
        start, started_at = time.perf_counter(), time.time()
        log_start = self.log.seek(0, os.SEEK_END)
        body = json.dumps({"filename": filename, "notebook": notebook, "cell_seconds": limits.cell_seconds,
                           "deadline_seconds": limits.notebook_seconds, "output_bytes": limits.output_bytes})
        pending = memoryview(len(body.encode()).to_bytes(8, "big") + body.encode())
        chunks, size, returncode = [], 0, None
        deadline = start + limits.notebook_seconds + limits.cell_seconds + 15  # as in run()
        stdin, stdout = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        watched = [self.results, stdout]
        while time.perf_counter() < deadline:
            readable, writable, _ = select.select(watched, [stdin] if pending else [], [], 0.1)
            if writable:
                try:
                    pending = pending[os.write(stdin, pending):]
                except (BlockingIOError, BrokenPipeError):
                    pass
            if self.results in readable:
                if not (chunk := os.read(self.results, 1 << 16)):
                    watched.remove(self.results)  # no writer left: the sandbox is ending
                if size < wire.MAX_RESULT_BYTES:
                    chunks.append(chunk[: wire.MAX_RESULT_BYTES - size])
                size += len(chunk)
            if stdout in readable:
                chunk = os.read(stdout, 4096)
                if not chunk:  # the sandbox itself ended
                    returncode = -signal.SIGKILL
                    break
                self.status += chunk
                if (done := re.search(rb"^done (-?\d+)\n", self.status, re.M)) is not None:
                    returncode, self.status = int(done.group(1)), self.status[done.end():]
                    break
        while True:  # what the run wrote before it ended
            try:
                chunk = os.read(self.results, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk[: max(0, wire.MAX_RESULT_BYTES - size)])
            size += len(chunk)
        tail = _tail(self.log, log_start)
        processes_limited = self.cgroup.path is not None
        if returncode is None or returncode == -signal.SIGKILL or pending:
            self.close()  # at the time limit, dead, or a request half sent: the next run starts afresh
        return Run(b"".join(chunks), returncode, time.perf_counter() - start, tail, processes_limited, started_at)
