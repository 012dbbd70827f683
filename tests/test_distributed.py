"""Grading across machines, for real: a Redis broker, two grader workers (Celery) and a PostgreSQL
gradebook, all started here on loopback; the same class graded by the local pool into SQLite."""
import contextlib
import csv
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

import servers
import submissions as S
from grader import autograde, exports, pipeline
from grader.__main__ import main
from grader.broker import CeleryPool
from grader.executors import LocalPool
from grader.gradebook import Gradebook
from nbgrader.api import MissingEntry

NAME = pipeline.assignments()[0]
FILE = f"{NAME}.ipynb"
LIMITS = autograde.sandbox.Limits(cell_seconds=30, notebook_seconds=120)
CLASS = ["ann", "ben", "cat", "dan"]  # the graded fixture's students with a notebook


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    with servers.redis_server() as (broker, _), servers.postgres_server() as db, \
            servers.workers(broker, tmp) as workers:
        yield {"broker": broker, "db": db, "workers": workers, "tmp": tmp}


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
    rows = lambda course: list(csv.DictReader(exports.export(NAME, course).open()))
    assert rows(graded["remote"]) == rows(graded["local"])
    with Gradebook(cluster["db"]) as gb:
        ids = [s.student.id for s in gb.find_assignment(NAME).submissions]
        assert sorted(i for i in ids if i in CLASS) == CLASS  # other tests grade other students here


def test_teaching_assistants_grade_in_the_gradebook_while_a_batch_is_recorded(cluster, graded, tmp_path):
    """Three TAs save manual grades and comments as formgrader's API does (nbgrader's GradeHandler
    and CommentHandler), in their own PostgreSQL sessions, while a batch is recorded and regraded."""
    release = graded["remote"] / "release" / NAME / FILE
    students = [f"ta{i:02d}" for i in range(12)]
    for student in students:
        S.write(tmp_path / student, S.solved(release, NAME), FILE)
    with Gradebook(cluster["db"]) as gb:
        written = next(c.name for c in gb.find_notebook(NAME, NAME).grade_cells if c.cell_type == "markdown")
    done, saved, errors, times = threading.Event(), {}, [], []

    def assistant(ta: int) -> None:
        mine = students[ta::3]
        try:
            with Gradebook(cluster["db"]) as gb:
                for round_ in range(10_000):
                    for student in mine:
                        try:
                            grade = gb.find_grade(written, NAME, NAME, student)
                            comment = gb.find_comment(written, NAME, NAME, student)
                        except MissingEntry:  # not recorded yet
                            gb.db.rollback()
                            continue
                        grade.manual_score, grade.extra_credit = float(round_ % 3), None  # GradeHandler.put
                        grade.needs_manual_grade = False
                        gb.db.commit()
                        comment.manual_comment = f"TA {ta}, round {round_}"  # CommentHandler.put
                        gb.db.commit()
                        saved[student] = (grade.manual_score, comment.manual_comment)
                        times.append(time.monotonic())
                    if done.is_set() and len(saved.keys() & set(mine)) == len(mine):
                        return
                    time.sleep(0.05)
        except Exception as err:  # noqa: BLE001 (reported below)
            errors.append(f"TA {ta}: {type(err).__name__}: {err}")

    tas = [threading.Thread(target=assistant, args=(ta,)) for ta in range(3)]
    for ta in tas:
        ta.start()
    try:
        for regrade in (False, True):  # the regrade writes the very rows the TAs are grading
            outcomes = autograde.autograde(NAME, tmp_path, graded["remote"], limits=LIMITS,
                                           executor=CeleryPool(cluster["broker"]), regrade=regrade)
        batch_end = time.monotonic()
    finally:
        done.set()
        for ta in tas:
            ta.join(timeout=120)
    assert not errors, errors
    assert sum(t < batch_end for t in times) >= len(students), "the TAs did not grade during the batch"
    assert all(o.status == "graded" for o in outcomes), [o.notes for o in outcomes]
    honest = graded["pool"][0]
    with Gradebook(cluster["db"]) as gb:
        for student in students:
            grade = gb.find_grade(written, NAME, NAME, student)
            comment = gb.find_comment(written, NAME, NAME, student)
            assert (grade.manual_score, comment.manual_comment) == saved[student], student  # the TA's last word
            total = gb.find_submission(NAME, student).score  # the automatic points, and the TA's
            assert total == pytest.approx(honest.score + grade.manual_score), student


def test_rabbitmq_as_the_broker_grades_as_redis_does(cluster, graded, tmp_path):
    """RabbitMQ carries the run requests, the Redis server of the cluster (another database) the results."""
    results = cluster["broker"].rsplit("/", 1)[0] + "/1"
    course = pipeline.course_dir(tmp_path / "course")
    pipeline.release(NAME, course)
    with servers.rabbitmq_server() as broker, servers.workers(broker, tmp_path, n=1, results=results):
        with pytest.raises(pipeline.GraderError, match="need a Redis server"):
            CeleryPool(broker)
        outcomes = autograde.autograde(NAME, graded["subs"], course, limits=LIMITS,
                                       executor=CeleryPool(broker, results))
    assert _rows(outcomes) == _rows(graded["pool"])


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
                                executor=CeleryPool(cluster["broker"]), regrade=True)
    assert killed, "no run was caught in the middle"
    assert _rows(again) == _rows(graded["pool"])
    with Gradebook(cluster["db"]) as gb:
        ids = [s.student.id for s in gb.find_assignment(NAME).submissions]
        assert sorted(i for i in ids if i in CLASS) == CLASS  # regraded in place, once each


def test_a_scoring_process_of_the_coordinator_killed_mid_batch_loses_nothing(graded, capsys):
    """Intake and scoring in 2 processes of the coordinator's machine; one is killed with SIGKILL
    once the first run is back: the batch goes on in the coordinator and grades as before."""
    killed = []

    class KillingPool(LocalPool):
        def map_unordered(self, requests):
            for result in super().map_unordered(requests):
                yield result  # scored in a process, or in the coordinator if that process is the one killed
                if not killed:
                    victim = multiprocessing.active_children()[0]
                    os.kill(victim.pid, signal.SIGKILL)
                    killed.append(victim.pid)

    again = autograde.autograde(NAME, graded["subs"], graded["local"], limits=LIMITS, executor=KillingPool(2),
                                regrade=True, trusted_processes=2)
    assert killed and not multiprocessing.active_children()
    assert "the batch goes on in this process" in capsys.readouterr().err
    assert _rows(again) == _rows(graded["pool"])
    with Gradebook(pipeline.db_url(graded["local"])) as gb:
        ids = [s.student.id for s in gb.find_assignment(NAME).submissions]
        assert sorted(i for i in ids if i in CLASS) == CLASS


def test_a_worker_machine_that_dies_mid_run_loses_nothing(graded, tmp_path):
    """Every process of one worker killed at once in the middle of a run, as when its machine dies:
    Redis delivers the unacknowledged run again once its visibility timeout has passed (8 s here,
    10 minutes by default), to the worker that is left."""
    release = graded["remote"] / "release" / NAME / FILE
    students = [f"m{i:02d}" for i in range(6)]
    for student in students:
        S.write(tmp_path / "subs" / student, S.solved(release, NAME), FILE)
    env = {"DLCOURSE_VISIBILITY_SECONDS": "8"}
    with servers.redis_server() as (broker, _), servers.workers(broker, tmp_path, env=env) as procs:
        done: dict = {}
        batch = threading.Thread(target=lambda: done.update(outcomes=autograde.autograde(
            NAME, tmp_path / "subs", graded["remote"], limits=LIMITS, executor=CeleryPool(broker))))
        batch.start()
        found = []  # the pool process seen mid-run (looking again could find the run ended)
        servers.wait_for(lambda: found.append(_mid_run_pool_process(procs)) or found[-1], 120, "a run in progress")
        busy = next(w for w in procs if w.pid == found[-1].ppid())
        servers.stop(busy)  # the worker's main process, its pool process and its sandbox, at once
        batch.join(timeout=300)
    assert not batch.is_alive(), "the run of the dead machine was never delivered again"
    honest = graded["pool"][0]
    for o in done["outcomes"]:
        assert (o.status, o.score, o.max_score) == ("graded", honest.score, honest.max_score), o
    with Gradebook(pipeline.db_url(graded["remote"])) as gb:
        ids = [s.student.id for s in gb.find_assignment(NAME).submissions]
        assert sorted(i for i in ids if i in students) == students  # each once


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


POISON = "import subprocess\nsubprocess.run(['sleep', '4242'])  # the host kills this run's worker, every time"


def test_a_submission_that_kills_its_worker_every_time_is_reported_and_the_class_is_graded(cluster, graded, tmp_path):
    """The out-of-memory killer (played here by the test) takes the worker process down whenever
    one submission runs: after a bounded number of attempts it is an error, with the reason."""
    release = graded["remote"] / "release" / NAME / FILE
    S.write(tmp_path / "ann", S.solved(release, NAME), FILE)
    S.write(tmp_path / "pat", S.with_cell_after(S.solved(release, NAME), "setup", POISON), FILE)
    kills, done = [], threading.Event()

    def host() -> None:
        while not done.is_set():
            for proc in psutil.process_iter(["cmdline"]):
                with contextlib.suppress(psutil.Error):
                    if proc.info["cmdline"] == ["sleep", "4242"]:
                        # The run of a pool process just killed can outlive it for a moment, orphaned.
                        pool = next((p for p in proc.parents() if p.parent() and p.parent().pid in
                                     {w.pid for w in cluster["workers"]}), None)
                        if pool is not None and pool.pid not in kills:
                            os.kill(pool.pid, signal.SIGKILL)
                            kills.append(pool.pid)
            time.sleep(0.05)

    threading.Thread(target=host, daemon=True).start()
    try:
        outcomes = {o.student: o for o in autograde.autograde(NAME, tmp_path, graded["remote"], limits=LIMITS,
                                                              executor=CeleryPool(cluster["broker"]))}
    finally:
        done.set()
    assert len(kills) == 3, kills
    pat = outcomes["pat"]
    assert pat.status == "error" and "failed on a worker 3 times" in pat.notes[0] and "WorkerLost" in pat.notes[0]
    assert outcomes["ann"].status == "graded" and outcomes["ann"].score == graded["pool"][0].score


def test_the_coordinator_killed_mid_batch_resumes_and_runs_nothing_twice(cluster, graded, tmp_path):
    release = graded["remote"] / "release" / NAME / FILE
    students = [f"s{i:02d}" for i in range(20)]
    for student in students:
        S.write(tmp_path / student, S.solved(release, NAME), FILE)
    course, runs = graded["remote"], graded["remote"] / "runs" / NAME
    argv = ["--course", str(course), "autograde", NAME, "--submissions", str(tmp_path), "--broker", cluster["broker"],
            "--cell-seconds", str(LIMITS.cell_seconds), "--notebook-seconds", str(LIMITS.notebook_seconds)]
    coordinator = subprocess.Popen([sys.executable, "-m", "grader", *argv], cwd=servers.REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    recorded = lambda: set(students) & set(autograde.recorded(course, NAME))
    try:
        servers.wait_for(lambda: recorded(), 120, "a first gradebook commit")
    finally:
        coordinator.kill()
        coordinator.wait()
    before = recorded()
    assert 0 < len(before) < len(students), "the coordinator was not caught in the middle of the batch"
    assert main(argv) == 0
    outcomes = {o.student: o for o in pipeline.read_report(course, NAME)}
    honest = graded["pool"][0]
    for student in students:
        o = outcomes[student]
        assert (o.status, o.score, o.max_score) == ("graded", honest.score, honest.max_score), o
        kept_runs = list((runs / student).glob("*.ipynb"))
        if student in before:
            assert len(kept_runs) == 1 and "not run again" in o.notes[-1], (student, o.notes)
    with Gradebook(cluster["db"]) as gb:
        ids = [s.student.id for s in gb.find_assignment(NAME).submissions]
        assert sorted(i for i in ids if i in students) == students  # each once


def test_a_broker_restarted_mid_batch_loses_nothing(graded, tmp_path):
    """Redis restarted with an empty queue while runs are queued and running: the batch completes."""
    release = graded["remote"] / "release" / NAME / FILE
    students = [f"r{i:02d}" for i in range(8)]
    for student in students:
        S.write(tmp_path / "subs" / student, S.solved(release, NAME), FILE)
    port = servers.free_port()
    with servers.redis_server(port) as (broker, first), servers.workers(broker, tmp_path):
        runs = graded["remote"] / "runs" / NAME
        done: dict = {}
        batch = threading.Thread(target=lambda: done.update(outcomes=autograde.autograde(
            NAME, tmp_path / "subs", graded["remote"], limits=LIMITS, executor=CeleryPool(broker))))
        batch.start()
        servers.wait_for(lambda: any((runs / s).is_dir() for s in students), 120, "a first result")
        first.kill()
        first.wait()
        with servers.redis_server(port):
            batch.join(timeout=300)
            assert not batch.is_alive(), "the batch did not complete after the broker came back"
    honest = graded["pool"][0]
    assert [(o.student, o.status, o.score) for o in done["outcomes"]] == [(s, "graded", honest.score) for s in students]
    with Gradebook(graded["remote"].joinpath("gradebook.url").read_text().strip()) as gb:
        ids = [s.student.id for s in gb.find_assignment(NAME).submissions]
        assert sorted(i for i in ids if i in students) == students


def test_every_task_has_a_hard_time_limit_of_its_own(cluster, graded, tmp_path):
    """A run that outlasts its task's time limit (here cut to 6 s, below the sandbox's own limits)
    is stopped by the worker, sent again at most 3 times, then reported: the class goes on."""
    release = graded["remote"] / "release" / NAME / FILE
    S.write(tmp_path / "slow", S.with_cell_after(S.solved(release, NAME), "setup", "import time\ntime.sleep(40)"), FILE)
    margin = 6 - LIMITS.notebook_seconds - LIMITS.cell_seconds
    start = time.monotonic()
    [slow] = autograde.autograde(NAME, tmp_path, graded["remote"], limits=LIMITS,
                                 executor=CeleryPool(cluster["broker"], margin=margin))
    assert slow.status == "error" and "3 times" in slow.notes[0] and "TimeLimitExceeded" in slow.notes[0], slow.notes
    assert time.monotonic() - start < 3 * 40, "a run was not stopped at its task's limit"
