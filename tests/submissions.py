"""Build student submissions from a release: honest, wrong, unanswered and broken ones."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nbformat

from grader import pipeline


# A second student's own, correct answers to 01_embeddings, written differently from the solution
OWN_ANSWERS = {
    "ex1_solution": '''def sentence_vectors(weight, idx):
    out = []
    for row in idx:
        words = row[row > 0]
        out.append(weight[words].mean(0) if len(words) else torch.zeros(weight.shape[1]))
    return torch.stack(out)''',
    "ex2_solution": '''def analogy(E, words, a, b, c, k=1):
    index = words.index
    query = E[index(c)] + E[index(b)] - E[index(a)]
    scores = torch.cosine_similarity(E, query.unsqueeze(0), dim=1)
    for w in (a, b, c):
        scores[index(w)] = float("-inf")
    best = torch.argsort(scores, descending=True)[:k]
    return [words[int(i)] for i in best]''',
    "ex3_solution": '''def cooccurrence(sentences, V, window=2):
    counts = torch.zeros((V, V), dtype=torch.float32)
    for sent in sentences:
        n = len(sent)
        for a in range(n):
            for b in range(a + 1, min(n, a + window + 1)):
                counts[sent[a], sent[b]] += 1.0
                counts[sent[b], sent[a]] += 1.0
    return counts''',
    "ex4_solution": '''def ppmi(C):
    total = C.sum().double()
    p_ij = C.double() / total
    p_i = p_ij.sum(dim=1, keepdim=True)
    p_j = p_ij.sum(dim=0, keepdim=True)
    with torch.no_grad():
        ratio = p_ij / (p_i * p_j)
        value = torch.log(ratio)
    value[~torch.isfinite(value)] = 0
    return value.clamp_min(0).to(torch.float32)''',
}


STUDENT_PROSE = "My answer, in my own words: one vector per word cannot depend on the context."


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def solved(release: Path, name: str, overrides: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The release with every answer cell filled from the solution; `overrides` maps a
    grade_id to the source a student wrote instead."""
    source = {_grade_id(c): c.source for c in pipeline.source_notebook(name).cells}
    nb = nbformat.read(release, as_version=4)
    for cell in nb.cells:
        gid = _grade_id(cell)
        if cell.metadata.get("nbgrader", {}).get("solution"):
            own = STUDENT_PROSE if cell.cell_type == "markdown" else source[gid]  # prose in their own words
            text = (overrides or {}).get(gid, own)
            lines = [ln for ln in text.split("\n") if "BEGIN SOLUTION" not in ln and "END SOLUTION" not in ln]
            cell.source = "\n".join(lines)
    return nb


def write(folder: Path, nb_or_text, filename: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    if isinstance(nb_or_text, (str, bytes)):
        path.write_bytes(nb_or_text if isinstance(nb_or_text, bytes) else nb_or_text.encode())
    else:
        nbformat.write(nb_or_text, path)
    return path


def with_cell_after(nb: nbformat.NotebookNode, grade_id: str, code: str) -> nbformat.NotebookNode:
    """A copy of nb with a new student code cell right after the cell `grade_id`."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    i = next(i for i, c in enumerate(nb.cells) if _grade_id(c) == grade_id)
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell(code))
    return nb
