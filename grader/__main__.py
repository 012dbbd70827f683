"""python -m grader: the instructor's commands, one per step, in the order they are run.

  python -m grader release   [ASSIGNMENT ...]            build the student notebooks
  python -m grader collect   ASSIGNMENT --download ZIP --roster CSV   an LMS download -> one folder per student
  python -m grader autograde ASSIGNMENT [--submissions DIR]  grade (default: what collect made)
  python -m grader status    ASSIGNMENT                   counts, missing, manual grading, late
  python -m grader formgrader [--port 8765]               grade written answers in a browser (nbgrader's)
  python -m grader feedback  ASSIGNMENT                   HTML feedback per student
  python -m grader similarity ASSIGNMENT                  pairs of unusually similar answers
  python -m grader export    ASSIGNMENT [--lms canvas|moodle] [--to FILE]   grades as CSV
  python -m grader worker    --broker URL                 run other machines' grading here

Every command but worker takes --course DIR (or $DLCOURSE_COURSE_DIR): the course directory,
outside the repository, that holds the gradebook, the submissions and everything made from
them; and --db URL (or $DLCOURSE_DB_URL), a PostgreSQL gradebook that the course then keeps
using (default: SQLite in the course directory). autograde runs each notebook in a bubblewrap
sandbox and decides scores outside it; it refuses to run without a sandbox unless given
--unsafe-no-sandbox (README: security model). With --broker URL (or $DLCOURSE_BROKER), a
Redis server, or a RabbitMQ server with --results REDIS_URL (or $DLCOURSE_RESULTS), autograde
sends the runs to the workers started with those URLs (README: grading a large class).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import autograde, pipeline, sandbox

BROKER_ENV = "DLCOURSE_BROKER"
RESULTS_ENV = "DLCOURSE_RESULTS"  # a Redis server for run results, when the broker is RabbitMQ


def at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", help="course directory (default: $DLCOURSE_COURSE_DIR)")
    parser.add_argument("--db", help="the gradebook's database URL, kept by the course (default: $DLCOURSE_DB_URL, "
                                     "else what the course keeps, else SQLite in the course directory)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("release", help="solutions/*.md -> student notebooks in COURSE/release")
    p.add_argument("assignments", nargs="*", help="default: every assignment in solutions/")
    p = sub.add_parser("collect", help="a Canvas or Moodle submissions download -> one folder per student id")
    p.add_argument("assignment")
    p.add_argument("--download", required=True, type=Path, help="the LMS's submissions zip, or the folder it unpacked to")
    p.add_argument("--roster", required=True, type=Path,
                   help="CSV: student_id and any of name, canvas_id, moodle_id, email, sis_user_id, sis_login_id, section")
    p.add_argument("--times", type=Path, help="CSV with columns id,submitted_at: when each student handed in")
    p = sub.add_parser("autograde", help="grade a folder of submissions, one folder per student id")
    p.add_argument("assignment")
    p.add_argument("--submissions", type=Path,
                   help="folder with one sub-folder per student (default: COURSE/collected/ASSIGNMENT, made by collect)")
    p.add_argument("--workers", type=int, help="submissions graded at once (default: one per CPU core)")
    p.add_argument("--cell-seconds", type=float, default=sandbox.Limits.cell_seconds,
                   help=f"time limit per cell (default {sandbox.Limits.cell_seconds:g})")
    p.add_argument("--notebook-seconds", type=float, default=sandbox.Limits.notebook_seconds,
                   help=f"time limit per notebook (default {sandbox.Limits.notebook_seconds:g})")
    p.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="grade without a sandbox (only for work you trust, e.g. where bubblewrap cannot run)")
    p.add_argument("--broker", help=f"send the runs to grader workers through this Redis or RabbitMQ URL "
                                    f"(default: ${BROKER_ENV})")
    p.add_argument("--results", help=f"the Redis URL for run results, when the broker is RabbitMQ (default: ${RESULTS_ENV})")
    p.add_argument("--regrade", action="store_true",
                   help="run every submission again, also those already graded for the same upload")
    p.add_argument("--trusted-processes", type=at_least_one, metavar="N",
                   help="processes of this machine that take in and score submissions (default: one per core, "
                        "at most 4, for 200 submissions or more; else 1)")
    p = sub.add_parser("feedback", help="HTML feedback for every graded student")
    p.add_argument("assignment")
    p = sub.add_parser("formgrader", help="nbgrader's formgrader on the course, for manual grading (loopback only)")
    p.add_argument("--port", type=int, default=8765, help="the port on 127.0.0.1 (default 8765)")
    p.add_argument("--token", help="the token to log in with (default: a new random one, printed)")
    p = sub.add_parser("status", help="where a batch stands: counts by status, missing, manual grading, late")
    p.add_argument("assignment")
    p = sub.add_parser("similarity", help="pairs of submissions whose answer cells are unusually similar")
    p.add_argument("assignment")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="the share of one's answer code that must match for a pair to be listed (default 0.5)")
    p = sub.add_parser("export", help="grades as CSV, plain or for the LMS's grade import")
    p.add_argument("assignment")
    p.add_argument("--to", type=Path, help="CSV file to write (default: COURSE/exports/ASSIGNMENT[.LMS].csv)")
    p.add_argument("--lms", choices=("plain", "canvas", "moodle"), default="plain", help="the columns (default plain)")
    p.add_argument("--missing", choices=("empty", "zero"), default="empty",
                   help="the score of a roster student with nothing handed in (default: empty, no grade)")
    p.add_argument("--column", help="canvas: the assignment's column, \"Name (ID)\" as Canvas exports it")
    p = sub.add_parser("worker", help="run grading tasks sent through a broker, on this machine")
    p.add_argument("--broker", help=f"the Redis or RabbitMQ URL that autograde sends to (default: ${BROKER_ENV})")
    p.add_argument("--results", help=f"the Redis URL for run results, when the broker is RabbitMQ (default: ${RESULTS_ENV})")
    p.add_argument("--concurrency", type=int, help="runs at once (default: one per CPU core)")
    for p in sub.choices.values():  # --course and --db are accepted after the command too
        p.add_argument("--course", dest="course_after", help=argparse.SUPPRESS)
        p.add_argument("--db", dest="db_after", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    try:
        if args.command == "worker":
            if not (broker := args.broker or os.environ.get(BROKER_ENV)):
                raise pipeline.GraderError(f"no broker: pass --broker redis://HOST:PORT/DB or set {BROKER_ENV}")
            from .broker import worker

            worker(broker, args.concurrency, results=args.results or os.environ.get(RESULTS_ENV))
            return 0
        course = pipeline.course_dir(args.course_after or args.course)
        if db := args.db_after or args.db or os.environ.get(pipeline.DB_ENV):
            pipeline.use_database(course, db)
        if args.command == "collect":
            from . import collect

            for line in collect.summary(collect.collect(args.assignment, args.download, args.roster, course, args.times)):
                print(line)
        elif args.command == "formgrader":
            from . import formgrader

            return formgrader.serve(course, args.port, args.token)
        elif args.command == "status":
            from . import status

            for line in status.status(args.assignment, course):
                print(line)
        elif args.command == "similarity":
            from . import similarity

            for line in similarity.summary(similarity.report(args.assignment, course, args.threshold)):
                print(line)
        elif args.command == "release":
            for name in args.assignments or pipeline.assignments():
                print(f"released {name}: {pipeline.release(name, course)}")
        elif args.command == "autograde":
            limits = sandbox.Limits(cell_seconds=args.cell_seconds, notebook_seconds=args.notebook_seconds)
            executor = None
            if broker := args.broker or os.environ.get(BROKER_ENV):
                from .broker import CeleryPool

                executor = CeleryPool(broker, args.results or os.environ.get(RESULTS_ENV))
            submissions = args.submissions or course / "collected" / args.assignment
            outcomes = autograde.autograde(args.assignment, submissions, course, limits=limits,
                                           workers=args.workers, allow_unsandboxed=args.unsafe_no_sandbox,
                                           executor=executor, regrade=args.regrade,
                                           trusted_processes=args.trusted_processes)
            print(f"{'student':20s} {'status':10s} {'score':>9s}  notes")
            for o in outcomes:
                score = f"{max(0.0, o.score - o.late_penalty):g}/{o.max_score:g}" if o.status == "graded" else "-"
                manual = " (+ manual grading)" if o.needs_manual_grade else ""
                flag = "FLAGGED " if o.flagged else ""
                print(f"{o.student:20s} {o.status:10s} {score:>9s}  {flag}{'; '.join(o.notes)}{manual}")
            print(f"report: {course / 'reports' / (args.assignment + '.json')}")
        elif args.command == "feedback":
            files, problems = pipeline.feedback(args.assignment, course)
            print(f"wrote {len(files)} feedback files under {course / 'feedback'}")
            for line in problems:
                print(f"warning: {line}", file=sys.stderr)
            return 1 if problems else 0
        elif args.command == "export":
            from . import exports

            print(f"grades: {exports.export(args.assignment, course, args.to, args.lms, args.missing, args.column)}")
    except pipeline.GraderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: autograde has recorded what it scored (grader.autograde)
        if args.command == "autograde":
            print("\ninterrupted: the grades recorded so far are kept; run the same command again to resume",
                  file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
