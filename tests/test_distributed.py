"""Grading across machines, for real: a Redis broker, two grader workers (Celery) and a PostgreSQL
gradebook, all started here on loopback; the same class graded by the local pool into SQLite."""
import csv
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

import servers
import submissions as S
from grader import autograde, pipeline
from grader.__main__ import main
from grader.broker import CeleryPool
from grader.gradebook import Gradebook

NAME = pipeline.assignments()[0]
FILE = f"{NAME}.ipynb"
LIMITS = autograde.sandbox.Limits(cell_seconds=30, notebook_seconds=120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    with servers.redis_server() as (broker, _), servers.postgres_server() as db:
        workers = [servers.start_worker(broker, tmp / f"worker{i}.log") for i in range(2)]
        try:
            servers.wait_for_workers(broker, 2)
            yield {"broker": broker, "db": db, "workers": workers, "tmp": tmp}
        finally:
            for worker in workers:
                servers.stop(worker)


@pytest.fixture(scope="module")
def graded(cluster, tmp_path_factory):
    """One class graded twice: by the local pool into SQLite, and by the workers into PostgreSQL."""
    tmp = tmp_path_factory.mktemp("class")
    local, remote = pipeline.course_dir(tmp / "local"), tmp / "remote"
    release = pipeline.release(NAME, local)
    assert main(["--course", str(remote), "--db", cluster["db"], "release", NAME]) == 0
    wrong = {"ex4_solution": "def ppmi(C):\n    return torch.zeros(C.shape)"}
    for student, nb in {"ann": S.solved(release, NAME), "ben": S.solved(release, NAME, wrong),
                        "cat": S.solved(release, NAME), "dan": S.solved(release, NAME)}.items():
        S.write(tmp / "subs" / student, nb, FILE)
    (tmp / "subs" / "eve").mkdir(parents=True)  # handed in nothing
    by_pool = autograde.autograde(NAME, tmp / "subs", local, limits=LIMITS, workers=2)
    by_workers = autograde.autograde(NAME, tmp / "subs", remote, limits=LIMITS, executor=CeleryPool(cluster["broker"]))
    return {"pool": by_pool, "workers": by_workers, "local": local, "remote": remote, "subs": tmp / "subs"}


def _rows(outcomes):
    return [(o.student, o.status, o.score, o.max_score, o.flagged, o.notes) for o in outcomes]


def test_workers_and_postgresql_grade_as_the_local_pool_does(cluster, graded):
    assert pipeline.db_url(graded["remote"]) == cluster["db"]  # kept by the course: no --db needed again
    assert _rows(graded["workers"]) == _rows(graded["pool"])
    assert [o.status for o in graded["workers"]] == ["graded"] * 4 + ["missing"]
    rows = lambda course: list(csv.DictReader(pipeline.export(NAME, course).open()))
    assert rows(graded["remote"]) == rows(graded["local"])
    with Gradebook(cluster["db"]) as gb:
        assert sorted(s.student.id for s in gb.find_assignment(NAME).submissions) == ["ann", "ben", "cat", "dan"]


def _mid_run_pool_process(workers) -> psutil.Process | None:
    """A worker's pool process whose warm sandbox is running a submission right now."""
    for worker in workers:
        for pool in psutil.Process(worker.pid).children():
            for proc in pool.children(recursive=True):
                if "grader.warm" in " ".join(proc.cmdline()) and proc.children():
                    return pool
    return None


def test_a_worker_killed_in_the_middle_of_a_run_loses_nothing_and_counts_nothing_twice(cluster, graded):
    killed = {}

    def kill_one() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            try:
                pool = _mid_run_pool_process(cluster["workers"])
            except psutil.Error:
                pool = None
            if pool is not None:
                os.kill(pool.pid, signal.SIGKILL)
                killed["pid"] = pool.pid
            time.sleep(0.05)

    threading.Thread(target=kill_one, daemon=True).start()
    again = autograde.autograde(NAME, graded["subs"], graded["remote"], limits=LIMITS,
                                executor=CeleryPool(cluster["broker"]))
    assert killed, "no run was caught in the middle"
    assert _rows(again) == _rows(graded["pool"])
    with Gradebook(cluster["db"]) as gb:
        assert len(gb.find_assignment(NAME).submissions) == 4  # regraded in place, once each


def test_an_unreachable_database_or_broker_stops_before_any_work(cluster, graded, tmp_path, capsys):
    closed = servers.free_port()
    for option, said in ((["--db", f"postgresql://dlcourse:secret@127.0.0.1:{closed}/gradebook"], "gradebook"),
                         (["--broker", f"redis://:secret@127.0.0.1:{closed}/0"], "broker")):
        course = tmp_path / said
        shutil.copytree(graded["remote"], course)
        before = sorted(p.relative_to(course) for p in course.rglob("*") if p.name != "nbgrader_config.py")
        argv = ["--course", str(course), "autograde", NAME, "--submissions", str(graded["subs"]), *option]
        assert main(argv) == 1
        error = capsys.readouterr().err
        assert f"cannot reach the {said}" in error and ":***@" in error and "secret" not in error, error
        after = sorted(p.relative_to(course) for p in course.rglob("*") if p.name != "nbgrader_config.py")
        assert after == before, "work started although the batch could not finish"
