"""The sandbox itself: what code inside can and cannot see or do."""
import json
import sys
from pathlib import Path

import pytest

from grader import sandbox

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the grader's sandbox (bubblewrap) needs Linux")

PROBE = r'''
import json, os, pwd, socket, sys
from pathlib import Path
report = {"cwd": os.getcwd(), "uid": os.getuid(), "utils": __import__("utils.checks").__name__,
          "user": pwd.getpwuid(os.getuid()).pw_name, "users": sorted(u.pw_name for u in pwd.getpwall()),
          "localhost": socket.gethostbyname("localhost"),
          "inputs": sorted(os.listdir("/in")), "seen": {}, "network": "none"}
for p in sys.argv[1:]:
    report["seen"][p] = Path(p).exists()
try:
    socket.create_connection(("127.0.0.1", 1), timeout=1)
    report["network"] = "connected"
except OSError as err:
    report["network"] = type(err).__name__
try:
    Path("/usr/evil").write_text("x")
    report["wrote_usr"] = True
except OSError:
    report["wrote_usr"] = False
os.fdopen(int(os.environ["DLCOURSE_RESULT_FD"]), "w").write(json.dumps(report))
'''


def test_inside_the_sandbox(tmp_path, repo):
    secret = tmp_path / "secret.txt"
    secret.write_text("answer key")
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "notebook.ipynb").write_text("{}")
    shown = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), repo]  # these may live under ~
    home = [str(p) for p in Path.home().iterdir() if not any(p == s or p in s.parents for s in shown)][:10]
    run = sandbox.run([sys.executable, "-c", PROBE, str(secret), str(repo / "solutions"), "/etc/shadow", *home],
                      inputs, sandbox.Limits(notebook_seconds=30))
    report = json.loads(run.result)
    assert report["cwd"] == sandbox.WORKDIR and report["uid"] == 1000
    assert report["user"] == "student" and report["users"] == ["root", "student"]  # not the host's accounts
    assert report["localhost"] == "127.0.0.1"
    assert report["utils"] == "utils" and report["inputs"] == ["notebook.ipynb"]
    assert not any(report["seen"].values()), report["seen"]
    assert report["network"] != "connected" and report["wrote_usr"] is False
    assert run.processes_limited, "no pids cgroup: the process count would not be capped"


def test_time_limit_kills_the_whole_tree(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    code = "import os, time\nos.fork()\nos.fork()\ntime.sleep(600)"
    run = sandbox.run([sys.executable, "-c", code], inputs, sandbox.Limits(cell_seconds=1, notebook_seconds=1))
    assert run.returncode is None and run.seconds < 30


# --- the warm sandbox: one per worker, a fresh run forked for each submission ----------------------

FIRST_RUN = r'''
import ctypes, json, os, pathlib, signal, time
seen = {}
for path in ("/tmp/left", "/home/student/left", "/dev/shm/left", "/records/left"):
    pathlib.Path(path).write_text("from the first run")
for path in ("/left", "/dev/left", "/usr/left"):
    try:
        pathlib.Path(path).write_text("x")
        seen[path] = "written"
    except OSError as err:
        seen[path] = type(err).__name__
seen["remount"] = ctypes.CDLL(None).mount(None, b"/", None, 32 | 4096, None)  # MS_REMOUNT | MS_BIND
seen["capabilities"] = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff"))
os.kill(os.getppid(), signal.SIGKILL)  # the runner: PID 1 of the run, which ignores it
if os.fork() == 0:
    os.setsid()
    time.sleep(60)
    os._exit(0)
seen["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(json.dumps(seen))
'''
SECOND_RUN = r'''
import json, os
print(json.dumps({"left": [p for p in ("/tmp/left", "/home/student/left", "/dev/shm/left", "/records/left", "/left")
                           if os.path.exists(p)],
                  "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}))
'''


def _notebook(*sources: str) -> str:
    cells = [{"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None, "id": f"c{i}"}
             for i, s in enumerate(sources)]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def _printed(run: sandbox.Run, cell: int = 0) -> dict:
    outputs = json.loads(run.result)["notebook"]["cells"][cell]["outputs"]
    assert outputs and outputs[0]["output_type"] == "stream", outputs
    return json.loads(outputs[0]["text"])


def test_warm_runs_share_nothing_and_cannot_undo_their_isolation():
    limits = sandbox.Limits(notebook_seconds=60)
    with sandbox.Warm() as box:
        first = _printed(box.run(_notebook(FIRST_RUN), "a.ipynb", limits))
        worker = box.proc.pid
        second = box.run(_notebook(SECOND_RUN), "b.ipynb", limits)
        assert box.proc.pid == worker, "the sandbox was not kept between runs"
    second = _printed(second)
    assert first["/left"] != "written" and first["/dev/left"] != "written" and first["/usr/left"] != "written"
    assert first["remount"] == -1 and first["capabilities"] == "0000000000000000"
    assert second["left"] == [], "files of the first run reached the second"
    # Only bubblewrap's init and the zygote outlive a run: not its kernel, not a detached child.
    assert len(set(first["processes"]) & set(second["processes"])) == 2, (first["processes"], second["processes"])


def test_a_run_that_breaks_its_kernel_leaves_the_warm_sandbox_usable():
    limits = sandbox.Limits(cell_seconds=2, notebook_seconds=30)
    with sandbox.Warm() as box:
        hung = json.loads(box.run(_notebook("while True:\n    pass"), "a.ipynb", limits).result)
        died = json.loads(box.run(_notebook("import os\nos._exit(1)"), "b.ipynb", limits).result)
        after = box.run(_notebook("print(6 * 7)"), "c.ipynb", limits)
    assert hung["events"] == [{"event": "timeout", "cell": 0}]
    assert died["events"] == [{"event": "kernel_died", "cell": 0}]
    assert json.loads(after.result)["notebook"]["cells"][0]["outputs"][0]["text"] == "42\n"
