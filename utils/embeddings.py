"""Word embeddings: vocabulary, skip-gram with negative sampling, an ELMo-style biLM.

Sources: Mikolov et al. 2013 (skip-gram, negative sampling, the 3/4-power noise
distribution); Peters et al. 2018 (ELMo: contextual vectors from a bidirectional LM).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, UNK = "<pad>", "<unk>"


@dataclass
class Vocab:
    """A word <-> index table; index 0 is padding, 1 the unknown word."""

    itos: list[str]
    counts: list[int]
    stoi: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences: list[list[str]], min_count: int = 1) -> "Vocab":
        """Words seen at least min_count times, most frequent first (ties alphabetical)."""
        counter = Counter(w for s in sentences for w in s)
        words = sorted((w for w, c in counter.items() if c >= min_count), key=lambda w: (-counter[w], w))
        return cls([PAD, UNK] + words, [0, 0] + [counter[w] for w in words])

    def __len__(self) -> int:
        return len(self.itos)

    def __getitem__(self, word: str) -> int:
        return self.stoi.get(word, self.stoi[UNK])

    def encode(self, sentence: list[str]) -> list[int]:
        return [self[w] for w in sentence]


def onehot_lookup(weight: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """An embedding lookup written as a matrix product: one_hot(idx) @ W.

    weight (V, D), idx (...) integer -> (..., D). Equal to nn.Embedding, at V times the cost.
    """
    V = weight.shape[0]
    return F.one_hot(idx, V).to(weight.dtype) @ weight


def skipgram_pairs(sentences: list[list[int]], window: int = 2) -> torch.Tensor:
    """All (center, context) index pairs within `window` words: (N, 2) long.

    Mikolov et al. 2013, eq. 1: the skip-gram model predicts each neighbour from the center.
    """
    pairs = [
        (s[i], s[j])
        for s in sentences
        for i in range(len(s))
        for j in range(max(0, i - window), min(len(s), i + window + 1))
        if j != i
    ]
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)


def noise_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """Negative-sampling distribution P_n(w) proportional to count(w)^power (Mikolov et al. 2013)."""
    weights = counts.double().clamp(min=0) ** power
    if weights.sum() <= 0:
        raise ValueError("noise_distribution needs at least one positive count")
    return (weights / weights.sum()).float()


class SkipGramNS(nn.Module):
    """Skip-gram with negative sampling: an input table v and an output table u, both (V, D).

    Loss per pair (Mikolov et al. 2013, eq. 4):
        -log sigma(u_o . v_c) - sum_k log sigma(-u_k . v_c),  u_k drawn from P_n.
    """

    def __init__(self, vocab_size: int, dim: int = 32) -> None:
        super().__init__()
        self.v = nn.Embedding(vocab_size, dim)  # center ("input") vectors: the embedding we keep
        self.u = nn.Embedding(vocab_size, dim)  # context ("output") vectors
        nn.init.uniform_(self.v.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.u.weight)

    def forward(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """center (B,), context (B,), negatives (B, K) -> mean loss over the batch."""
        v_c = self.v(center)  # (B, D)
        pos = (self.u(context) * v_c).sum(-1)  # (B,)
        neg = torch.einsum("bkd,bd->bk", self.u(negatives), v_c)  # (B, K)
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()


def cosine_matrix(E: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pair of rows: E (V, D) -> (V, V)."""
    En = F.normalize(E, dim=-1)
    return En @ En.T


def nearest(E: torch.Tensor, vocab: Vocab, word: str, k: int = 5) -> list[tuple[str, float]]:
    """The k words whose vectors have the highest cosine with `word`'s (itself and specials excluded)."""
    if word not in vocab.stoi:
        raise KeyError(f"{word!r} is not in the vocabulary")
    sims = F.normalize(E, dim=-1) @ F.normalize(E[vocab[word]], dim=-1)
    sims[[vocab[word], vocab[PAD], vocab[UNK]]] = -2.0
    top = sims.topk(k)
    return [(vocab.itos[i], round(s, 3)) for s, i in zip(top.values.tolist(), top.indices.tolist())]


class BiLM(nn.Module):
    """An ELMo-style bidirectional language model (Peters et al. 2018), one layer each way.

    The forward LSTM reads x_1..x_t and predicts x_{t+1}; the backward LSTM reads x_T..x_t and
    predicts x_{t-1}. The contextual vector of x_t is [h_fwd_t ; h_bwd_t], of size 2H.
    """

    def __init__(self, vocab_size: int, dim: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.fwd = nn.LSTM(dim, hidden, batch_first=True)
        self.bwd = nn.LSTM(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)  # shared by both directions, as in ELMo

    def states(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, T) -> forward and backward hidden states, each (B, T, H)."""
        x = self.embed(ids)  # (B, T, D)
        h_fwd, _ = self.fwd(x)
        h_bwd, _ = self.bwd(x.flip(1))
        return h_fwd, h_bwd.flip(1)  # flip back: h_bwd[:, t] has read x_T..x_t

    def contextual(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> contextual vectors (B, T, 2H)."""
        return torch.cat(self.states(ids), dim=-1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean of the two next-word cross-entropies (nats per token), padding ignored."""
        h_fwd, h_bwd = self.states(ids)
        V = self.head.out_features
        loss_f = F.cross_entropy(self.head(h_fwd[:, :-1]).reshape(-1, V), ids[:, 1:].reshape(-1), ignore_index=0)
        loss_b = F.cross_entropy(self.head(h_bwd[:, 1:]).reshape(-1, V), ids[:, :-1].reshape(-1), ignore_index=0)
        return (loss_f + loss_b) / 2


def pad_batch(sentences: list[list[int]], length: int | None = None) -> torch.Tensor:
    """Right-pad index lists with 0 into a (B, T) long tensor."""
    T = length or max(len(s) for s in sentences)
    out = torch.zeros(len(sentences), T, dtype=torch.long)
    for i, s in enumerate(sentences):
        out[i, : min(T, len(s))] = torch.tensor(s[:T], dtype=torch.long)
    return out
