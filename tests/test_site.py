"""The site builds as CI builds it (warnings are errors) and leaks nothing from the solutions."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader import pipeline
from test_grader import secret_lines

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", "--all", "-W", "-n", "--keep-going", "--path-output", str(out), "."],
                          cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "DLCOURSE_QUIET": "1"})
    assert proc.returncode == 0, f"the book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    warnings = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "WARNING" in ln and "[IPKernelApp]" not in ln]
    assert not warnings, "the build warned:\n" + "\n".join(warnings)
    return out / "_build" / "html"


def test_every_page_of_the_toc_is_built(site):
    for page in ["index.html", "book/intro.html", "book/setup.html", "book/references.html",
                 "notebooks/01_embeddings.html"]:
        assert (site / page).is_file(), page


def test_chapter_page_has_results_figures_math_and_citations(site):
    html = (site / "notebooks" / "01_embeddings.html").read_text()
    assert html.count("<img") >= 4 and 'alt="' in html
    assert "Fig. 1" in html and "sense accuracy, contextual biLM vector:  1.00" in html
    assert "_static/mathjax/tex-chtml.js" in html and "cdn.jsdelivr" not in html
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert "Mikolov" in html and "colab.research.google.com" in html
    assert "Traceback" not in html and "stderr" not in html


def test_every_assignment_has_a_page_with_its_download_and_colab_link(site):
    for name in pipeline.assignments():
        html = (site / "book" / "assignments" / f"{name}.html").read_text()
        assert "YOUR CODE HERE" in html and "Download the notebook" in html
        assert f"colab.research.google.com/github/dlcourse/deep-generative-course/blob/main/book/assignments/{name}.ipynb" in html
        assert list(site.glob(f"_downloads/*/{name}.ipynb")), f"no download of {name}.ipynb"


def test_no_solution_or_hidden_test_anywhere_in_the_site(site):
    secrets = [line for name in pipeline.assignments() for line in secret_lines(name)]
    assert secrets
    for path in site.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".ipynb", ".md", ".txt", ".js", ".json", ".py"}:
            text = path.read_text(errors="ignore")
            assert not any(m in text for m in pipeline.SECRET_MARKERS), f"solution marker in {path}"
            assert not [s for s in secrets if s in text], f"solution text in {path}"
