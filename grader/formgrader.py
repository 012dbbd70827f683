"""nbgrader's formgrader on the course directory, for manual grading in a browser.

    python -m grader formgrader [--port 8765] [--token TOKEN]

Starts Jupyter Server in the course directory, with the course's nbgrader configuration and
nbgrader's formgrader extension, on the loopback interface only (reach it from elsewhere
through an SSH tunnel). Grades and comments entered there go into the course's gradebook,
where export and feedback read them. What formgrader shows of a submission is the autograded
notebook: the student's answers, the visible checks and the per-case results, never the
hidden tests' code or the reference results (grader.trusted writes it so).
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from . import pipeline
from .sandbox import die_with_parent

EXTENSION = "nbgrader.server_extensions.formgrader"


def command(course: Path, port: int, token: str) -> list[str]:
    return [sys.executable, "-m", "jupyter_server", f"--ServerApp.root_dir={course}", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.open_browser=False",
            f"--IdentityProvider.token={token}", f"--ServerApp.jpserver_extensions={EXTENSION}=True",
            # Jupyter refuses root unless told; the grader often runs as root in a container (as in CI)
            *(["--ServerApp.allow_root=True"] if os.geteuid() == 0 else [])]


def login_url(port: int, token: str, page: str = "/formgrader") -> str:
    """The address that logs a browser in (a cookie for formgrader's own requests) and opens `page`."""
    return f"http://127.0.0.1:{port}/login?next={quote(page, safe='')}&token={token}"


def serve(course: Path, port: int = 8765, token: str | None = None) -> int:
    """Run formgrader until interrupted (Ctrl-C or SIGTERM, which stop the server with it);
    returns the server's exit code. The server also stops if this process is killed outright."""
    pipeline.nbgrader_api(course)  # writes COURSE/nbgrader_config.py, which the server reads from its directory
    token = token or secrets.token_urlsafe(24)
    print(f"formgrader: {login_url(port, token)}  (Ctrl-C stops it)", flush=True)
    with pipeline.venv_on_path():
        server = subprocess.Popen(command(course, port, token), cwd=course,
                                  preexec_fn=lambda: die_with_parent(signal.SIGTERM))
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: server.terminate())
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
