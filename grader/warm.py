"""A warm sandbox: imports what every run needs once, then forks a fresh, isolated run per submission.

    python -m grader.warm --scratch-bytes N   (inside a worker sandbox that grader.sandbox.Warm starts)

Starting a run from nothing costs most of a run's time: a Python process, the Jupyter client,
a kernel process and the assignment's imports (torch). This process (the zygote) does that work
once per worker, runs no student code and reads no submission, then, for each run:

    zygote --fork--> run  (new user, mount, PID and IPC namespaces; fresh scratch file systems;
      |                |   /, /dev read-only; reads ONE request from stdin, then closes stdin)
      |                +--fork--> runner (PID 1 of the run's namespace: it ends the run when it exits)
      |                              +--fork--> kernel (closes every inherited descriptor first)
      +-- waits, kills what is left, writes "done STATUS" on stdout, forks the next run.

So every run starts from the same untouched, pre-imported state and leaves nothing behind:
its files live on file systems that vanish with its mount namespace, its processes die with its
PID namespace, and the zygote never held another student's request or report in its memory
(each run reads its request and writes its report itself). The kernel cannot signal the runner
(PID 1 of its namespace ignores signals from inside), nor read its memory (not dumpable).

Wire: stdin carries requests, each an 8-byte big-endian length and that many bytes of JSON
{"filename", "notebook", "cell_seconds", "deadline_seconds", "output_bytes"}; the runner writes
its report on the result pipe ($DLCOURSE_RESULT_FD) as grader.runner does; stdout carries one
line per finished run.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import pkgutil
import signal
import sys
import time
from pathlib import Path

import utils
from utils import wire

from . import runner
from .sandbox import RECORDS, WORKDIR, die_with_parent, ro_paths

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x08000000, 0x10000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND = 1, 2, 4, 32, 4096
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38
LINUX_CAPABILITY_VERSION_3 = 0x20080522
MAX_REQUEST_BYTES = 64 * 2**20
NO_MORE_REQUESTS = 100  # a run's exit status when the trusted side closed the request pipe
# Loaded once here, before any run: what every assignment's setup cell imports (torch and the
# course's package), the kernel, and (through grader.runner) the Jupyter client.
PRELOAD = ("torch", "torch.nn", "torch.nn.functional", "torch.distributions", "numpy", "matplotlib.pyplot",
           "ipykernel.kernelapp", *(f"utils.{m.name}" for m in pkgutil.iter_modules(utils.__path__)))

_libc = ctypes.CDLL(None, use_errno=True)


def _call(name: str, *args) -> None:
    if getattr(_libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _call("mount", source.encode(), target.encode(), fstype.encode() if fstype else None, flags, data.encode())


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the request ended early")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_request(fd: int = 0) -> dict:
    size = int.from_bytes(_read_exactly(fd, 8), "big")
    if size > MAX_REQUEST_BYTES:
        raise ValueError(f"a request of {size} bytes")
    request = json.loads(_read_exactly(fd, size))
    if type(request) is not dict:
        raise ValueError("a request is a JSON object")
    return request


def isolate(scratch_bytes: int) -> None:
    """Enter new user, mount, PID and IPC namespaces (the next fork is the PID namespace's first
    process), with fresh scratch file systems and everything else read-only."""
    uid, gid = os.getuid(), os.getgid()
    _call("unshare", CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC)
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    scratch = (("/tmp", scratch_bytes), (WORKDIR, scratch_bytes), ("/dev/shm", scratch_bytes),
               (RECORDS, wire.MAX_TOTAL_RECORD_BYTES))
    # Read-only paths that live under a scratch folder (a repository or environment under /tmp):
    # held open now, bound again on top of the fresh file system.
    covered = [(str(p), os.open(p, os.O_PATH)) for p in ro_paths()
               if any(str(p).startswith(f"{target}/") for target, _ in scratch)]
    for target, size in scratch:
        _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0755")
    for path, fd in covered:
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
        _mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    for target in ("/", "/dev"):  # bubblewrap leaves its root and /dev writable: not across runs
        _mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def drop_capabilities() -> None:
    """Give up the capabilities that creating the namespaces granted (there is no exec to drop
    them): without them the run can neither undo its mounts nor make / writable again."""
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    _call("capset", header, (ctypes.c_uint32 * 6)())
    _call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def one_run(scratch_bytes: int, result_fd: int) -> int:
    """The run's first process: read the request, isolate, start the runner as PID 1, wait for it."""
    die_with_parent()
    request = read_request(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the next student's request is not this run's to read
    os.close(devnull)
    isolate(scratch_bytes)
    pid = os.fork()
    if pid == 0:
        try:
            die_with_parent()
            drop_capabilities()
            os._exit(run_runner(request, result_fd))
        except BaseException as err:  # noqa: BLE001 (report, never return into the zygote's loop)
            print(f"runner failed: {type(err).__name__}: {err}", file=sys.stderr)
            os._exit(1)
    os.close(result_fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def run_runner(request: dict, result_fd: int) -> int:
    """PID 1 of the run: write the notebook into the scratch folder and execute it (grader.runner)."""
    os.chdir(WORKDIR)
    started_at = time.time()
    filename = Path(str(request["filename"])).name or "submission.ipynb"
    (Path(WORKDIR) / filename).write_text(request["notebook"])
    kernel = Preforked()
    channel = os.fdopen(result_fd, "w")
    runner.execute(Path(WORKDIR) / filename, float(request["cell_seconds"]), float(request["deadline_seconds"]),
                   int(request["output_bytes"]), channel, km=kernel.manager(), started_at=started_at)
    return 0


class Preforked:
    """A kernel process forked now, while this process has no threads, sockets or event loop,
    and released later with its connection file, by the kernel manager's launch step."""

    def __init__(self) -> None:
        read_end, self.go = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.go)
            self._kernel(read_end)
        os.close(read_end)

    @staticmethod
    def _kernel(go: int) -> None:
        try:
            os.closerange(3, go)
            os.closerange(go + 1, 65536)  # the result pipe among them: the kernel never holds it
            _call("prctl", PR_SET_DUMPABLE, 1, 0, 0, 0)  # the student's process, as a kernel started anew
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            connection_file = b""
            while chunk := os.read(go, 4096):
                connection_file += chunk
            os.close(go)
            if not connection_file:
                os._exit(0)  # the runner ended before it needed a kernel
            from ipykernel.kernelapp import IPKernelApp  # noqa: PLC0415 (preloaded)
            sys.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file.decode()]
            IPKernelApp.launch_instance(argv=sys.argv[3:])
        finally:
            os._exit(0)

    def release(self, connection_file: str) -> int:
        os.write(self.go, connection_file.encode())
        os.close(self.go)
        return self.pid

    def manager(self):
        from jupyter_client.manager import AsyncKernelManager  # noqa: PLC0415 (preloaded by the runner)

        preforked = self

        class PreforkedKernelManager(AsyncKernelManager):
            async def _async_launch_kernel(self, kernel_cmd, **kw) -> None:
                self.provisioner.process = ForkedProcess(preforked.release(self.connection_file))
                self.provisioner.pid, self.provisioner.pgid = self.provisioner.process.pid, None
                self._reconcile_connection_info(self.provisioner.connection_info)

        return PreforkedKernelManager(kernel_name=runner.KERNEL_NAME)


class ForkedProcess:
    """The part of subprocess.Popen that a kernel provisioner uses, for a forked child."""

    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        while self.poll() is None:
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def sweep() -> None:
    """Kill every process this one may signal (bubblewrap's init excepted), until none is left."""
    for _ in range(100):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.01)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scratch-bytes", type=int, required=True)
    parser.add_argument("--check", action="store_true", help="isolate once, as a run would, and exit")
    args = parser.parse_args()
    if args.check:
        isolate(args.scratch_bytes)
        return 0
    runner.not_dumpable()
    result_fd = int(os.environ.pop(wire.RESULT_FD_ENV))
    for module in PRELOAD:
        __import__(module)
    status_out = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # nothing a run prints reaches the status line
    os.close(devnull)
    print("ready", file=status_out)
    while True:
        pid = os.fork()
        if pid == 0:
            status_out.close()
            try:
                os._exit(one_run(args.scratch_bytes, result_fd))
            except EOFError:
                os._exit(NO_MORE_REQUESTS)
            except BaseException as err:  # noqa: BLE001
                print(f"run failed: {type(err).__name__}: {err}", file=sys.stderr)
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        sweep()
        code = os.waitstatus_to_exitcode(status)
        if code == NO_MORE_REQUESTS:
            return 0
        print(f"done {code}", file=status_out)


if __name__ == "__main__":
    sys.exit(main())
