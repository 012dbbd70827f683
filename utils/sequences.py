"""Sequence tasks made in code or read from disk: no download. Token 0 is always padding.

- reviews whose sentiment depends on word order (negation);
- bit strings and their parity (the slides' YES/NO example);
- copying and reversing strings, the seq2seq task of chapters 4 and 5;
- the Python standard library's own source as a character corpus;
- little scenes of coloured shapes with captions, for image captioning.
"""
from __future__ import annotations

import os
import random
import string
from pathlib import Path

import torch

PAD, START, END = 0, 1, 2

NOUNS = ["plot", "acting", "music", "story", "ending", "cast", "film", "script", "pacing", "camera"]
POSITIVE = ["good", "great", "fun", "clever", "moving", "superb", "funny", "charming"]
NEGATIVE = ["bad", "boring", "awful", "dull", "weak", "clumsy", "silly", "slow"]
FILLERS = ["really", "honestly", "frankly", "overall", "truly", "quite"]


def make_review(rng: random.Random, negation: float = 0.3) -> tuple[list[str], int]:
    """One review of 1 or 3 clauses "the NOUN was [not] ADJ", joined by "and"/"but".

    Each clause has polarity +1 or -1 from its adjective, flipped by "not" (which precedes
    an adjective with probability `negation`); the label is 1
    (positive) when the clause polarities sum to more than zero. The same words can carry
    either label depending on which adjective "not" precedes: word order matters.
    """
    words, total = [], 0
    for k in range(rng.choice([1, 3])):
        if k:
            words.append(rng.choice(["and", "but"]))
        positive, negated = rng.random() < 0.5, rng.random() < negation
        words += ["the", rng.choice(NOUNS), "was"]
        if rng.random() < 0.3:
            words.append(rng.choice(FILLERS))
        if negated:
            words.append("not")
        words.append(rng.choice(POSITIVE if positive else NEGATIVE))
        total += 1 if positive != negated else -1
    return words, int(total > 0)


def reviews(n: int, seed: int = 0, negation: float = 0.3) -> tuple[list[list[str]], torch.Tensor]:
    """n reviews (lists of words) and their labels (n,) int64, 1 = positive."""
    rng = random.Random(seed)
    pairs = [make_review(rng, negation) for _ in range(n)]
    return [w for w, _ in pairs], torch.tensor([y for _, y in pairs])


def parity_batch(n: int, min_len: int, max_len: int, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n random bit strings, right-padded: tokens (n, max_len) with 1 = bit 0, 2 = bit 1,
    0 = padding; lengths (n,); labels (n,) 1 ("YES") when the number of ones is even."""
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator)
    bits = torch.randint(0, 2, (n, max_len), generator=generator)
    mask = torch.arange(max_len) < lengths[:, None]
    bits = bits * mask
    tokens = (bits + 1) * mask
    return tokens, lengths, (bits.sum(1) % 2 == 0).long()


ALPHABET = string.ascii_lowercase


def seq2seq_pairs(n: int, min_len: int, max_len: int, task: str = "reverse", seed: int = 0,
                  alphabet: str = ALPHABET) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source strings and their targets ("copy" or "reverse") as token tensors.

    Letters are tokens 3.. (after PAD, START, END). Returns src (n, max_len) right-padded,
    src lengths (n,), and tgt (n, max_len + 2) = START, the answer, END, then padding.
    """
    if task not in ("copy", "reverse"):
        raise ValueError(f"task must be 'copy' or 'reverse', got {task!r}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g)
    src = torch.randint(3, 3 + len(alphabet), (n, max_len), generator=g)
    src = src * (torch.arange(max_len) < lengths[:, None])
    tgt = torch.zeros(n, max_len + 2, dtype=torch.long)
    tgt[:, 0] = START
    for b, length in enumerate(lengths.tolist()):
        body = src[b, :length]
        tgt[b, 1 : length + 1] = body.flip(0) if task == "reverse" else body
        tgt[b, length + 1] = END
    return src, lengths, tgt


def symbol_ids(tokens: torch.Tensor) -> list[int]:
    """The symbols of a token sequence, numbered from 0: stop at END, skip PAD and START."""
    out = []
    for t in tokens.tolist():
        if t == END:
            break
        if t > END:
            out.append(t - 3)
    return out


def decode_letters(tokens: torch.Tensor, alphabet: str = ALPHABET) -> str:
    """Tokens back to text, stopping at END and skipping PAD and START."""
    return "".join(alphabet[i] for i in symbol_ids(tokens))


def stdlib_text(modules: list[str]) -> str:
    """The source of standard-library modules (by name, e.g. "random"), joined by blank lines."""
    root = Path(os.__file__).parent
    texts = []
    for name in modules:
        path = root / f"{name}.py"
        if not path.exists():
            raise FileNotFoundError(f"no standard-library module {name!r} at {path}")
        texts.append(path.read_text(encoding="utf-8"))
    return "\n\n".join(texts)


class CharVocab:
    """Printable ASCII characters as tokens 1..; everything else maps to 0 ("unknown")."""

    def __init__(self) -> None:
        self.chars = sorted(set(string.printable) - set("\r\x0b\x0c"))
        self.index = {c: i + 1 for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.index.get(c, 0) for c in text])

    def decode(self, tokens: torch.Tensor) -> str:
        return "".join(self.chars[t - 1] if t > 0 else "?" for t in tokens.tolist())


COLOURS = {"red": (0.9, 0.2, 0.1), "green": (0.1, 0.7, 0.3), "blue": (0.2, 0.3, 0.9)}
SHAPES = ["square", "cross", "triangle"]


def draw_shape(shape: str, size: int) -> torch.Tensor:
    """A filled shape as a (size, size) mask in {0, 1}."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    r = size / 2
    if shape == "square":
        return ((xx - r).abs() < 0.8 * r) & ((yy - r).abs() < 0.8 * r)
    if shape == "cross":
        return (((xx - r).abs() < 0.3 * r) | ((yy - r).abs() < 0.3 * r)) & ((xx - r).abs() < 0.9 * r) & (
            (yy - r).abs() < 0.9 * r)
    if shape == "triangle":
        return (yy > 0.1 * size) & (yy < 0.9 * size) & ((xx - r).abs() < (yy - 0.1 * size) / 1.6)
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def scenes(n: int, grid: int = 3, cell: int = 8, objects: int = 2, seed: int = 0
           ) -> tuple[torch.Tensor, list[list[str]], torch.Tensor]:
    """n images (n, 3, grid*cell, grid*cell) with `objects` coloured shapes in distinct cells
    of a grid x grid layout; captions name them in reading order ("red circle and blue
    square"); cells (n, objects) says which cell holds the k-th named object."""
    rng = random.Random(seed)
    size = grid * cell
    images = torch.zeros(n, 3, size, size)
    captions, where = [], torch.zeros(n, objects, dtype=torch.long)
    masks = {s: draw_shape(s, cell).float() for s in SHAPES}
    for i in range(n):
        cells = sorted(rng.sample(range(grid * grid), objects))
        words = []
        for k, c in enumerate(cells):
            colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
            row, col = divmod(c, grid)
            patch = masks[shape][None] * torch.tensor(COLOURS[colour])[:, None, None]
            images[i, :, row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] = patch
            words += (["and"] if k else []) + [colour, shape]
            where[i, k] = c
        captions.append(words)
    return images, captions, where


CAPTION_WORDS = list(COLOURS) + SHAPES + ["and"]


def caption_tokens(captions: list[list[str]]) -> torch.Tensor:
    """Captions as (N, T + 2) tokens: START, words (CAPTION_WORDS as 3..), END, padding."""
    index = {w: i + 3 for i, w in enumerate(CAPTION_WORDS)}
    T = max(len(c) for c in captions)
    out = torch.zeros(len(captions), T + 2, dtype=torch.long)
    out[:, 0] = START
    for i, words in enumerate(captions):
        out[i, 1 : len(words) + 1] = torch.tensor([index[w] for w in words])
        out[i, len(words) + 1] = END
    return out


def caption_words(tokens: torch.Tensor) -> list[str]:
    """Tokens back to words, stopping at END."""
    return [CAPTION_WORDS[i] for i in symbol_ids(tokens)]
