"""Real servers for the tests, started on this machine (loopback only) and stopped afterwards:
Redis, PostgreSQL in a temporary data directory (as an unprivileged user), RabbitMQ, grader workers.

`make test` installs redis-server, PostgreSQL and RabbitMQ from Debian packages when they are missing;
run elsewhere without them, the tests that need them are skipped (under CI they fail instead).
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def missing(what: str) -> None:
    message = f"{what} is not installed (`make test` installs it from Debian packages)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not start within {seconds:g} s")


@contextlib.contextmanager
def redis_server(port: int | None = None):
    """A Redis server on 127.0.0.1 with nothing saved to disk; yields (url, process)."""
    exe = shutil.which("redis-server") or missing("redis-server")
    import redis

    port = port or free_port()
    folder = tempfile.mkdtemp(prefix="dlcourse-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: redis.Redis(port=port).ping(), 30, "redis-server")
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_server():
    """A PostgreSQL server in a temporary data directory on 127.0.0.1, run as the `postgres` user
    when the tests run as root (PostgreSQL refuses root); yields the URL of an empty database."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        missing("PostgreSQL")
    bindir = Path(bins[-1]).parent
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="dlcourse-pg-"))
    if os.getuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)
    run(str(bindir / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "dlcourse", "--no-sync", "-E", "UTF8")
    proc = subprocess.Popen([*as_user, str(bindir / "postgres"), "-D", str(folder / "data"), "-p", str(port),
                             "-h", "127.0.0.1", "-k", str(folder), "-c", "fsync=off", "-c", "full_page_writes=off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready = lambda: subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                       capture_output=True).returncode == 0
        wait_for(ready, 60, "PostgreSQL")
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dlcourse", "gradebook")
        yield f"postgresql://dlcourse@127.0.0.1:{port}/gradebook"
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def rabbitmq_server():
    """A RabbitMQ node on 127.0.0.1 with its state in a temporary folder (its own epmd on a free
    port, distribution on loopback too); yields the broker's URL."""
    exe = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    epmd = shutil.which("epmd") or "/usr/bin/epmd"
    if not os.path.exists(exe) or not os.path.exists(epmd):
        missing("rabbitmq-server")
    folder = Path(tempfile.mkdtemp(prefix="dlcourse-rabbitmq-"))
    port, dist, epmd_port = free_port(), free_port(), free_port()
    (folder / "enabled_plugins").write_text("[].")
    env = {**os.environ, "HOME": str(folder), "RABBITMQ_NODENAME": f"dlcourse{port}@localhost",
           "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(port), "RABBITMQ_DIST_PORT": str(dist),
           "ERL_EPMD_ADDRESS": "127.0.0.1", "ERL_EPMD_PORT": str(epmd_port),
           "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
           "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"), "RABBITMQ_LOG_BASE": str(folder / "log"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"), "RABBITMQ_PID_FILE": str(folder / "pid"),
           "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"), "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
           "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf")}
    log = (folder / "server.log").open("wb")
    procs = [subprocess.Popen([epmd, "-address", "127.0.0.1", "-port", str(epmd_port)], env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)]
    procs.append(subprocess.Popen([exe], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None, 60, "RabbitMQ")
        yield f"amqp://guest:guest@127.0.0.1:{port}//"
    finally:
        for proc in reversed(procs):
            stop(proc)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def start_worker(broker: str, log: Path, concurrency: int = 1, results: str | None = None,
                 env: dict | None = None) -> subprocess.Popen:
    """`python -m grader worker` as an instructor starts it on a grading machine."""
    extra = ["--results", results] if results else []
    return subprocess.Popen([sys.executable, "-m", "grader", "worker", "--broker", broker,
                             "--concurrency", str(concurrency), *extra], cwd=REPO, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})})


def wait_for_workers(broker: str, n: int, seconds: float = 90, results: str | None = None) -> None:
    from grader.broker import make_app

    app = make_app(broker, results)
    wait_for(lambda: len(app.control.ping(timeout=1.0)) >= n, seconds, f"{n} grader workers")


@contextlib.contextmanager
def workers(broker: str, logs: Path, n: int = 2, results: str | None = None, env: dict | None = None):
    """n grader workers (one process each) serving `broker`, ready to take tasks; stopped afterwards."""
    procs = [start_worker(broker, logs / f"worker{i}.log", results=results, env=env) for i in range(n)]
    try:
        wait_for_workers(broker, n, results=results)
        yield procs
    finally:
        for proc in procs:
            stop(proc)


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
