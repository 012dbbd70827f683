"""The sandbox itself: what code inside can and cannot see or do."""
import json
import sys
from pathlib import Path

import pytest

from grader import sandbox

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the grader's sandbox (bubblewrap) needs Linux")

PROBE = r'''
import json, os, socket, sys
from pathlib import Path
report = {"cwd": os.getcwd(), "uid": os.getuid(), "utils": __import__("utils.checks").__name__,
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
