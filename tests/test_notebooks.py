"""Every lecture is a pair, the pair is in sync, and the committed .ipynb carries clean outputs."""
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
