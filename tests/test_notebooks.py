"""Every lecture is a pair, the pair is in sync, and the committed .ipynb carries clean outputs."""
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
LECTURES = sorted((REPO / "notebooks").glob("*.md"))


def test_there_are_lectures():
    assert LECTURES, "no lecture notebooks found"


@pytest.mark.parametrize("md", LECTURES, ids=lambda p: p.stem)
def test_pair_is_in_sync(md):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{md.name} has no paired .ipynb: run `make notebooks`"
    text = jupytext.read(md)
    paired = nbformat.read(ipynb, as_version=4)
    strip = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]
    assert strip(text) == strip(paired), f"{ipynb.name} differs from {md.name}: run `make notebooks`"


@pytest.mark.parametrize("md", LECTURES, ids=lambda p: p.stem)
def test_committed_outputs_are_complete_and_clean(md):
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "some cells were not executed: run `make notebooks`"
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", f"an error is saved in the outputs: {out.get('ename')}"
            assert not (out.output_type == "stream" and out.name == "stderr"), \
                f"stderr output saved (a progress bar or warning?): {out.text[:200]}"


@pytest.mark.parametrize("md", LECTURES, ids=lambda p: p.stem)
def test_lecture_has_the_page_structure(md):
    text = md.read_text()
    for part in ("\n# ", "## Summary", "## Further reading", "{cite}", "nbval-check-output"):
        assert part in text, f"{md.name} lacks {part.strip()!r}"
    nb = jupytext.read(md)
    figures = [c for c in nb.cells if c.cell_type == "code" and "figure" in c.metadata.get("mystnb", {})]
    assert figures, f"{md.name} has no captioned figure"
    for cell in figures:
        assert cell.metadata["mystnb"]["figure"].get("name"), "every figure needs a name to be referred to"
        assert cell.metadata["mystnb"].get("image", {}).get("alt"), "every figure needs alt text"


# --- numbers in the prose come from the page's outputs ---------------------------------------------

# A number with a decimal point or a percent sign in a lecture's prose, caption or alt text must
# be pasted from an output by a glue role ({glue:text}`key:.2f`), or be a definition or a
# constant listed here: page -> {number as written: why it is not measured}.
CONSTANTS = {
    "01_embeddings": {"1%": "the synthetic corpus's share of medicine, set by its generator"},
    "02_lstm": {"0.5": "a weight scale of the experiment", "25%": "chance among four classes"},
    "03_rnn_applications": {"30%": "the review generator's share of clauses with 'not'"},
    "06_autoencoders": {"0.5": "the masking probability, and the AUC of chance"},
    "07_elbo": {"0.5": "a value of the example's X", "0.2": "the plot's axis range",
                "2.25": "the example's mean E[X], by hand"},
    "08_vae": {"0.01": "the threshold of an active dimension",
               "86%": "the prior mass within radius 2 in two dimensions, 1 - e^-2",
               "0.5": "an alpha or beta of the sweep", "1.5": "an alpha of the sweep"},
    "09_vq_vae": {"0.1": "a temperature of the sweep"},
    "10_gans": {"1 %": "the definition of a covered mode"},
    "10c_gan_digits": {"0.2": "LeakyReLU's slope, as in DCGAN"},
    "11_diffusion": {"0.999": "the cosine schedule's clip", "0.8": "a mixture weight",
                     "0.2": "a mixture weight"},
}
NUMBER = re.compile(r"(?<![\w.\-])\d+\.\d+(?![\w.]*\d)|(?<![\w.])\d+(?:\.\d+)?\s?%")


def prose(text: str) -> str:
    """Markdown without what may hold numbers freely: math, code, roles (glue, cite, ref, eq),
    headings, and section numbers."""
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"\$[^$]*\$", " ", text)
    text = re.sub(r"\{[a-z:]+\}`[^`]*`", " ", text)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"^#+ .*$", " ", text, flags=re.M)
    return re.sub(r"(?i)\b(sections?|chapters?)\s+\d+[a-c]?(\.\d+)*( (and|or|to) \d+(\.\d+)*)?", " ", text)


def literal_numbers(nb) -> list[str]:
    """The numbers written by hand in a notebook's markdown cells and figure captions and alt texts."""
    found = []
    for cell in nb.cells:
        texts = [cell.source] if cell.cell_type == "markdown" else []
        figure = cell.metadata.get("mystnb", {}) if cell.cell_type == "code" else {}
        texts += [str(figure.get("figure", {}).get("caption", "")), str(figure.get("image", {}).get("alt", ""))]
        found += [m.group(0) for text in texts for m in NUMBER.finditer(prose(text))]
    return found


@pytest.mark.parametrize("md", LECTURES, ids=lambda p: p.stem)
def test_measured_numbers_in_the_prose_come_from_the_outputs(md):
    allowed = CONSTANTS.get(md.stem, {})
    written = [n for n in literal_numbers(jupytext.read(md)) if n not in allowed]
    assert not written, f"numbers written by hand (glue them from an output, or list a constant): {written}"


def test_the_number_check_catches_a_planted_literal():
    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("The accuracy reached 0.93, and 12% of runs failed; $p = 0.5$, `lr=0.01`, "
                             "{glue:text}`acc:.2f` and section 3.2 are fine."),
        v4.new_code_cell("plot()", metadata={"mystnb": {"figure": {"caption": "Loss after 2.5 epochs."},
                                                          "image": {"alt": "A curve falling to 0.4."}}})])
    assert literal_numbers(nb) == ["0.93", "12%", "2.5", "0.4"]


# --- the repository's address has one source: repository.url in _config.yml ----------------------

INSTALLS = re.compile(r"(?:git\+|git clone )(https://github\.com/[\w.-]+/[\w.-]+)")


def addresses_other_than(url: str) -> dict[str, set[str]]:
    """file -> the course addresses in it (install cells, clone commands) that are not `url`."""
    files = [*REPO.glob("notebooks/*.md"), *REPO.glob("notebooks/*.ipynb"), *REPO.glob("solutions/*.md"),
             *REPO.glob("book/assignments/*"), REPO / "book" / "setup.md"]
    found = {str(p.relative_to(REPO)): set(INSTALLS.findall(p.read_text())) - {url} for p in files}
    return {path: urls for path, urls in found.items() if urls}


def test_every_install_cell_and_link_has_the_address_of_config():
    from grader import pages

    url = pages.repository_url()
    assert not addresses_other_than(url), "run `make repository` after changing repository.url"
    for md in [*LECTURES, *(REPO / "solutions").glob("*.md")]:
        assert f'REPO = "git+{url}"' in md.read_text(), f"{md.name} has no install cell"
    owner_and_name = url.removeprefix("https://github.com/")
    assert pages.colab_url("01_embeddings").startswith(f"https://colab.research.google.com/github/{owner_and_name}/")
    assert len(addresses_other_than("https://github.com/a-fork/course")) > 60  # a fork that forgot is caught


def test_assignment_code_fits_the_page():
    """Every line of code on an assignment page is seen whole (88 columns), without scrolling."""
    pages = sorted((REPO / "book" / "assignments").glob("*.ipynb"))
    assert pages
    long = [(p.stem, line) for p in pages for cell in nbformat.read(p, as_version=4).cells
            if cell.cell_type == "code" for line in cell.source.splitlines() if len(line) > 88]
    assert not long, f"{len(long)} lines over 88 columns, e.g. {long[:3]} (wrap them in solutions/)"
