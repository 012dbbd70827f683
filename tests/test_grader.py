"""The instructor round trip on every assignment: release, autograde a class, feedback, export."""
import csv
import hashlib
import re
import sys
from pathlib import Path

import nbformat
import pytest

import submissions as S
from grader import autograde, pipeline
from grader.__main__ import main

ASSIGNMENTS = pipeline.assignments()


def secret_lines(name: str) -> list[str]:
    """Distinctive lines of the solutions and hidden tests of an assignment."""
    lines, inside = [], False
    for cell in pipeline.source_notebook(name).cells:
        is_answer = cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution")
        for line in cell.source.split("\n"):
            if re.search(r"BEGIN (SOLUTION|HIDDEN TESTS)", line):
                inside = True
            elif re.search(r"END (SOLUTION|HIDDEN TESTS)", line):
                inside = False
            elif (inside or is_answer) and len(line.strip()) > 25:
                lines.append(line.strip())
    return lines


def solution_code_lines(name: str) -> set[str]:
    """Lines inside BEGIN/END SOLUTION of code cells (what an honest student may also write)."""
    lines, inside = set(), False
    for cell in pipeline.source_notebook(name).cells:
        for line in cell.source.split("\n"):
            if "BEGIN SOLUTION" in line:
                inside = True
            elif "END SOLUTION" in line:
                inside = False
            elif inside and cell.cell_type == "code" and len(line.strip()) > 25:
                lines.add(line.strip())
    return lines


def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def released(request, tmp_path_factory):
    name = request.param
    course = pipeline.course_dir(tmp_path_factory.mktemp("course"))
    assert main(["--course", str(course), "release", name]) == 0
    return name, course, course / "release" / name / f"{name}.ipynb"


def test_release_holds_no_solution_hidden_test_or_pairing(released):
    name, _, release = released
    text = release.read_text()
    for marker in pipeline.SECRET_MARKERS:
        assert marker not in text
    leaked = [line for line in secret_lines(name) if line in text]
    assert not leaked, f"solution or hidden-test text in the release: {leaked[:3]}"
    nb = nbformat.read(release, as_version=4)
    assert "jupytext" not in nb.metadata and nb.metadata.kernelspec.name == "python3"
    assert sum("YOUR CODE HERE" in c.source for c in nb.cells) >= 3


def test_site_page_is_the_current_release(released):
    """book/assignments/ holds what `release` makes now (run `python -m grader.pages` if not)."""
    import jupytext

    from grader import pages

    name, _, release = released
    fresh = pages.comparable(nbformat.read(release, as_version=4))
    committed = pages.comparable(nbformat.read(pages.PAGES / f"{name}.ipynb", as_version=4))
    assert committed == fresh, f"book/assignments/{name}.ipynb is stale: run `python -m grader.pages {name}`"
    shown = pages.comparable(jupytext.read(pages.PAGES / f"{name}.md"))
    assert shown[:1] + shown[2:] == fresh and "Open in Colab" in shown[1][1]


def test_release_refuses_a_solution_that_fails_its_own_tests(tmp_path):
    name = ASSIGNMENTS[0]
    broken = tmp_path / "solutions"
    broken.mkdir()
    text = (pipeline.SOLUTIONS / f"{name}.md").read_text()
    # break the first solution: its function now returns nonsense
    text = text.replace("### BEGIN SOLUTION", "### BEGIN SOLUTION\n    return None", 1)
    (broken / f"{name}.md").write_text(text)
    with pytest.raises(pipeline.GraderError, match="fails its own tests"):
        pipeline.release(name, pipeline.course_dir(tmp_path / "course"), solutions=broken)
    assert not (tmp_path / "course" / "release").exists()


def test_course_directory_must_be_outside_the_repository(repo):
    with pytest.raises(pipeline.GraderError, match="inside the repository"):
        pipeline.course_dir(repo / "course")


WRONG_ANSWERS = {  # a plausible mistake per assignment: (grade_id of the answer, code, a hidden case it
    # fails, a hidden case it still passes)
    "01_embeddings": ("ex4_solution", '''def ppmi(C):
    N = C.sum()
    pmi = torch.log(C * N / (C.sum(1, keepdim=True) * C.sum(0, keepdim=True)))
    return torch.nan_to_num(pmi, neginf=0.0).float()  # forgot to clip negative PMI
''', "random_counts", "window1"),
    "02_lstm": ("ex2_solution", '''def lstm_num_parameters(D, H, num_layers=1, bidirectional=False):
    directions = 2 if bidirectional else 1
    return num_layers * directions * 4 * H * (D + H + 2)  # every layer reads D inputs
''', "two_layers", "bidirectional"),
    "03_rnn_applications": ("ex1_solution", '''def last_valid_output(output, lengths):
    return output[:, -1]  # the last step, padding or not
''', "float64", "one_step"),
    "04_seq2seq": ("ex3_solution", '''def scheduled_sampling_inputs(tgt, predicted, keep_prob, u):
    true_in = tgt[:, :-1]
    return torch.where(u < keep_prob, true_in, predicted)  # off by one position, START replaced
''', "half", "always_keep"),
    "05_attention": ("ex2_solution", '''def masked_softmax(scores, mask, dim=-1):
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=dim)  # NaN on all-masked rows
''', "random_mask", "broadcast_mask"),
    "06_autoencoders": ("ex2_solution", '''def roc_curve(scores_negative, scores_positive):
    neg, pos = scores_negative.double(), scores_positive.double()
    labels = torch.cat([torch.zeros(len(neg)), torch.ones(len(pos))]).double()
    order = torch.cat([neg, pos]).argsort(descending=True)
    zero = torch.zeros(1, dtype=torch.float64)
    tpr = torch.cat([zero, labels[order].cumsum(0) / len(pos)])  # one step per sample: ties become staircases
    fpr = torch.cat([zero, (1 - labels[order]).cumsum(0) / len(neg)])
    return fpr, tpr, torch.trapezoid(tpr, fpr).item()
''', "auc_ties", "auc_separated"),
    "07_elbo": ("ex1_solution", '''def gaussian_kl_full(mu1, cov1, mu2, cov2):
    v1, v2 = cov1.diagonal(), cov2.diagonal()  # treats both covariances as diagonal
    return 0.5 * (v1 / v2 + (mu2 - mu1) ** 2 / v2 - 1 + v2.log() - v1.log()).sum()
''', "five_dims", "one_dim"),
    "08_vae": ("ex3_solution", '''def slerp(z0, z1, t):
    t = t[:, None]
    omega = torch.arccos((z0 @ z1).clamp(-1, 1))  # forgot to divide by the norms
    if torch.sin(omega) < 1e-6:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)
''', "unequal_norms", "unit_vectors"),
    "09_vq_vae": ("ex3_solution", '''def residual_quantize(z, codebooks):
    codes, reconstructions, total = [], [], torch.zeros_like(z)
    for book in codebooks:
        k = vq.nearest_code(z, book)  # quantizes z again, not the residual
        total = total + book[k]
        codes.append(k)
        reconstructions.append(total)
    return torch.stack(codes), torch.stack(reconstructions)
''', "recon_depth4", "depth1"),
    "10_gans": ("ex1_solution", '''def optimal_logit(x, mu_data, sigma_data, mu_g, sigma_g):
    p_data = torch.exp(Normal(mu_data, sigma_data).log_prob(x))  # densities underflow in the tails
    p_g = torch.exp(Normal(mu_g, sigma_g).log_prob(x))
    return torch.log(p_data / p_g)
''', "far_tails", "same_width"),
    "11_diffusion": ("ex1_solution", '''def q_posterior(x_0, x_t, t, betas):
    alpha_bar = torch.cumprod(1 - betas, 0)
    ab, ab_prev, beta = alpha_bar[t], alpha_bar[t - 1], betas[t]
    mean = (ab_prev.sqrt() * beta / (1 - ab)) * x_0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * x_t
    return mean.to(x_0.dtype), beta.to(x_0.dtype)  # beta_t, not the posterior's variance
''', "variance", "mean_images"),
    "12_flows": ("ex1_solution", '''def coupling_forward(x, mask, mu, alpha):
    kept = mask * x
    shift, log_scale = mu(kept), alpha(kept)
    z = kept + (1 - mask) * (x - shift) * torch.exp(-log_scale)
    return z, ((1 - mask) * log_scale).sum(-1)  # the sign of the log-determinant is flipped
''', "log_det", "z_values"),
}


@pytest.fixture(scope="module")
def graded(released, tmp_path_factory):
    name, course, release = released
    subs = tmp_path_factory.mktemp("submissions")
    fname = f"{name}.ipynb"
    S.write(subs / "honest", S.solved(release, name), fname)
    S.write(subs / "untouched", nbformat.read(release, as_version=4), fname)
    gid, code, *_ = WRONG_ANSWERS[name]
    S.write(subs / "wrong", S.solved(release, name, {gid: code}), fname)
    S.write(subs / "renamed", S.solved(release, name), "homework (1).ipynb")
    S.write(subs / "invalid_json", '{"cells": [', fname)
    other_kernel = S.solved(release, name)
    other_kernel.metadata.kernelspec = {"name": "ir", "display_name": "R", "language": "R"}
    S.write(subs / "other_kernel", other_kernel, fname)
    first_test = next(c.metadata.nbgrader["grade_id"] for c in nbformat.read(release, 4).cells
                      if c.metadata.get("nbgrader", {}).get("grade"))
    S.write(subs / "kernel_killer", S.with_cell_after(S.solved(release, name), first_test,
                                                      "import os\nos._exit(0)"), fname)
    S.write(subs / "noisy", S.with_cell_after(
        S.solved(release, name), first_test,
        "import sys, warnings\nwarnings.warn('deprecated')\nprint('10%|#', file=sys.stderr)"), fname)
    (subs / "empty").mkdir()
    (subs / "stray_file.ipynb").write_text("{}")
    before = tree_hash(subs)
    unsafe = [] if sys.platform == "linux" else ["--unsafe-no-sandbox"]  # no bubblewrap off Linux
    assert main(["--course", str(course), "autograde", name, "--submissions", str(subs), *unsafe]) == 0
    outcomes = {o.student: o for o in pipeline.read_report(course, name)}
    return name, course, subs, before, outcomes


def test_the_class_is_graded_and_every_problem_explained(graded):
    name, course, subs, before, o = graded
    full = o["honest"].max_score
    assert o["honest"].status == "graded" and o["honest"].needs_manual_grade
    assert o["honest"].score == pytest.approx(full - manual_points(course, name))
    assert o["untouched"].status == "graded" and o["untouched"].score == 0
    assert 0 < o["wrong"].score < o["honest"].score
    assert o["renamed"].score == o["honest"].score and "named homework (1).ipynb" in o["renamed"].notes[0]
    assert o["other_kernel"].score == o["honest"].score and "'ir'" in o["other_kernel"].notes[0]
    assert o["noisy"].score == o["honest"].score, "warnings and stderr must not cost points"
    assert o["invalid_json"].status == "ungradable" and "not a valid notebook" in o["invalid_json"].notes[0]
    killer = o["kernel_killer"]  # os._exit right after the first test cell: that test still counts
    assert killer.status == "graded" and "kernel died" in killer.notes[0]
    assert 0 < killer.score < o["honest"].score
    assert o["empty"].status == "missing" and f"expected {name}.ipynb" in o["empty"].notes[0]
    assert o["stray_file.ipynb"].status == "ungradable"
    assert tree_hash(subs) == before, "the original uploads were modified"
    kept = course / "uploads" / name / "honest" / f"{name}.ipynb"
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == o["honest"].upload_sha256


def manual_points(course: Path, name: str) -> float:
    nb = nbformat.read(course / "source" / name / f"{name}.ipynb", as_version=4)
    return sum(c.metadata.nbgrader.get("points", 0) for c in nb.cells
               if c.metadata.get("nbgrader", {}).get("grade") and c.metadata.nbgrader.get("solution"))


def test_feedback_shows_no_hidden_test_and_no_solution(graded):
    name, course, *_ = graded
    assert main(["--course", str(course), "feedback", name]) == 0
    files = sorted((course / "feedback").rglob("*.html"))
    assert {p.parts[-3] for p in files} == {"honest", "untouched", "wrong", "renamed", "other_kernel", "noisy",
                                            "kernel_killer"}
    secrets = secret_lines(name)
    for path in files:
        text = path.read_text()
        assert not any(m in text for m in pipeline.SECRET_MARKERS)
        shown = {line for line in secrets if line in text}
        # the simulated students typed the solution code themselves; nothing else may show
        typed = set() if path.parts[-3] == "untouched" else solution_code_lines(name)
        assert not shown - typed, f"hidden tests or model answers in {path}: {sorted(shown - typed)[:3]}"
    wrong = (course / "feedback" / "wrong" / name / f"{name}.html").read_text()
    _, _, failing, passing = WRONG_ANSWERS[name]
    assert f"hidden case {failing}: wrong values" in wrong, "feedback names the failing hidden cases"
    assert f"hidden case {passing}: passed" in wrong


def test_export_writes_one_row_per_submission(graded, tmp_path):
    name, course, _, _, outcomes = graded
    out = tmp_path / "grades.csv"
    assert main(["--course", str(course), "export", name, "--to", str(out)]) == 0
    rows = {r["student_id"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == set(outcomes)
    assert float(rows["honest"]["score"]) == outcomes["honest"].score
    assert float(rows["kernel_killer"]["score"]) == outcomes["kernel_killer"].score > 0
    assert "kernel died" in rows["kernel_killer"]["notes"]
    assert rows["honest"]["needs_manual_grade"] == "True"


def test_cli_explains_a_missing_course_directory(monkeypatch, capsys):
    monkeypatch.delenv("DLCOURSE_COURSE_DIR", raising=False)
    assert main(["export", "01_embeddings"]) == 1
    assert "--course" in capsys.readouterr().err


def test_cli_refuses_fewer_than_one_scoring_process(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["--course", str(tmp_path), "autograde", ASSIGNMENTS[0], "--trusted-processes", "0"])
    assert "at least 1, got '0'" in capsys.readouterr().err


def test_ctrl_c_during_autograde_says_how_to_resume(monkeypatch, capsys, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(autograde, "autograde", interrupted)
    assert main(["--course", str(tmp_path), "autograde", ASSIGNMENTS[0], "--submissions", str(tmp_path)]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err


def test_regrading_is_idempotent_and_keeps_manual_grades(graded):
    name, course, subs, _, first = graded
    from nbgrader.api import Gradebook

    written = next(c.metadata.nbgrader["grade_id"] for c in nbformat.read(
        course / "source" / name / f"{name}.ipynb", as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("grade") and c.metadata.nbgrader.get("solution"))
    db = f"sqlite:///{course / 'gradebook.db'}"
    with Gradebook(db) as gb:
        grade = gb.find_grade(written, name, name, "honest")
        grade.manual_score = grade.max_score
        gb.db.commit()
    # intake and scoring in 2 processes this time (the first grading ran them in this one)
    again = {o.student: o for o in autograde.autograde(name, subs, course, workers=2, regrade=True,
                                                       allow_unsandboxed=sys.platform != "linux",
                                                       trusted_processes=2)}
    assert again["honest"].score == first["honest"].max_score, "the manual grade was lost on regrading"
    for student, o in first.items():
        if student != "honest":
            assert (again[student].status, again[student].score, again[student].notes) == \
                (o.status, o.score, o.notes), student
    assert len(list((course / "runs" / name / "honest").glob("*.ipynb"))) == 2, "every run is kept"


def test_no_sandbox_means_no_grading_unless_the_instructor_insists(graded, monkeypatch):
    name, course, subs, *_ = graded
    from grader import sandbox

    monkeypatch.setattr(sandbox, "unavailable_reason", lambda: "bubblewrap is not installed")
    with pytest.raises(pipeline.GraderError, match="--unsafe-no-sandbox"):
        autograde.autograde(name, subs, course)
