"""Encoder-decoder LSTMs (Sutskever et al., 2014), with optional dot attention (Luong et al., 2015).

Tokens: 0 = padding, 1 = START, 2 = END (see utils.sequences). Training uses teacher
forcing: the decoder reads the true previous token. Inference feeds back its own
prediction, from START until it writes END.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import attention
from .sequences import END, PAD, START


class Encoder(nn.Module):
    """Embedding -> LSTM over a right-padded batch, packed so each row stops at its length.

    src (B, S), lengths (B,) -> outputs (B, S, H) (zeros at padding), state (h, c) each (1, B, H).
    """

    def __init__(self, vocab_size: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor):
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(src), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, state = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        return out, state


class Decoder(nn.Module):
    """Embedding -> LSTM started from the encoder's state -> logits, with or without attention.

    With attention, each decoder state s_t attends over all encoder states h_i and the output
    layer reads [a_t; s_t] (the slides' concatenation); without it, only s_t.
    """

    def __init__(self, vocab_size: int, dim: int, hidden: int, use_attention: bool) -> None:
        super().__init__()
        self.use_attention = use_attention
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        width = 2 * hidden if use_attention else hidden
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, vocab_size))

    def forward(self, y_in: torch.Tensor, state, enc_out: torch.Tensor, src_mask: torch.Tensor):
        """y_in (B, T) -> logits (B, T, V), state, alpha (B, T, S) or None."""
        s, state = self.lstm(self.embed(y_in), state)  # (B, T, H)
        if not self.use_attention:
            return self.head(s), state, None
        a, alpha = attention.dot_attention(s, enc_out, src_mask)  # (B, T, H), (B, T, S)
        return self.head(torch.cat([a, s], dim=-1)), state, alpha


class Seq2Seq(nn.Module):
    """An encoder and a decoder sharing one vocabulary."""

    def __init__(self, vocab_size: int, dim: int = 32, hidden: int = 128, use_attention: bool = False) -> None:
        super().__init__()
        self.encoder = Encoder(vocab_size, dim, hidden)
        self.decoder = Decoder(vocab_size, dim, hidden, use_attention)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor, tgt_in: torch.Tensor):
        """Teacher forcing: src (B, S), tgt_in (B, T) starting with START -> logits (B, T, V), alpha."""
        enc_out, state = self.encoder(src, lengths)
        logits, _, alpha = self.decoder(tgt_in, state, enc_out, src != PAD)
        return logits, alpha

    def loss(self, src: torch.Tensor, lengths: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of predicting tgt[:, 1:] from tgt[:, :-1], padding ignored (mean per token)."""
        logits, _ = self(src, lengths, tgt[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD)

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, lengths: torch.Tensor, max_len: int):
        """Decode from START, feeding back the argmax, for max_len steps (rows stop at END).

        -> tokens (B, max_len) with PAD after END, attention weights (B, max_len, S) or None.
        """
        enc_out, state = self.encoder(src, lengths)
        return greedy_decode(self.decoder, state, enc_out, src != PAD, max_len)


@torch.no_grad()
def greedy_decode(decoder: Decoder, state, memory: torch.Tensor, mask: torch.Tensor | None, max_len: int):
    """Run `decoder` from START on its own argmax predictions until every row wrote END.

    memory (B, S, H) is what attention reads (the encoder states), mask (B, S) its real positions.
    -> tokens (B, max_len), PAD after END; attention weights (B, max_len, S) or None.
    """
    B = memory.shape[0]
    token = torch.full((B, 1), START, dtype=torch.long, device=memory.device)
    done = torch.zeros(B, dtype=torch.bool, device=memory.device)
    tokens, alphas = [], []
    for _ in range(max_len):
        logits, state, alpha = decoder(token, state, memory, mask)
        token = logits[:, -1].argmax(-1, keepdim=True)
        token[done] = PAD
        tokens.append(token)
        if alpha is not None:
            alphas.append(alpha)
        done |= token[:, 0] == END
        if done.all():
            break
    tokens = torch.cat(tokens, dim=1)
    tokens = F.pad(tokens, (0, max_len - tokens.shape[1]), value=PAD)
    alphas = F.pad(torch.cat(alphas, dim=1), (0, 0, 0, max_len - len(alphas))) if alphas else None
    return tokens, alphas


class Captioner(nn.Module):
    """Show, attend and tell (Xu et al., 2015), small: a CNN turns the image into a grid of
    L = 36 feature vectors a_i, and an LSTM writes the caption, looking at the grid:

    e_ti = a_i . W h_{t-1},  alpha_t = softmax(e_t),  z_t = sum_i alpha_ti a_i,
    h_t = LSTM([E y_{t-1}; z_t], h_{t-1}),  p(y_t) = softmax(f([h_t; z_t])).

    images (B, 3, 24, 24); the state starts from the mean feature.
    """

    def __init__(self, vocab_size: int, dim: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 12, 12)
            nn.Conv2d(32, hidden, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, H, 6, 6)
        )
        self.position = nn.Parameter(0.1 * torch.randn(36, hidden))  # where each feature sits
        self.init_h, self.init_c = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.query = nn.Linear(hidden, hidden, bias=False)
        self.cell = nn.LSTMCell(dim + hidden, hidden)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, vocab_size))

    def encode(self, images: torch.Tensor):
        features = self.cnn(images).flatten(2).transpose(1, 2) + self.position  # (B, L, H)
        mean = features.mean(1)
        return features, (torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)))

    def step(self, token: torch.Tensor, state, features: torch.Tensor):
        """One word: token (B,) -> logits (B, V), new state, alpha (B, L)."""
        h, _ = state
        z, alpha = attention.dot_attention(self.query(h)[:, None], features)  # (B, 1, H), (B, 1, L)
        z, alpha = z[:, 0], alpha[:, 0]
        h, c = self.cell(torch.cat([self.embed(token), z], dim=-1), state)
        return self.head(torch.cat([h, z], dim=-1)), (h, c), alpha

    def forward(self, images: torch.Tensor, y_in: torch.Tensor):
        """Teacher forcing: y_in (B, T) -> logits (B, T, V), attention (B, T, L)."""
        features, state = self.encode(images)
        logits, alphas = [], []
        for t in range(y_in.shape[1]):
            out, state, alpha = self.step(y_in[:, t], state, features)
            logits.append(out)
            alphas.append(alpha)
        return torch.stack(logits, 1), torch.stack(alphas, 1)

    def loss(self, images: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        logits, _ = self(images, tgt[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD)

    @torch.no_grad()
    def caption(self, images: torch.Tensor, max_len: int):
        """Greedy captions (B, max_len), PAD after END, and each word's attention (B, max_len, L)."""
        features, state = self.encode(images)
        token = torch.full((images.shape[0],), START, dtype=torch.long, device=images.device)
        done = torch.zeros_like(token, dtype=torch.bool)
        tokens, alphas = [], []
        for _ in range(max_len):
            logits, state, alpha = self.step(token, state, features)
            token = logits.argmax(-1).masked_fill(done, PAD)
            done = done | (token == END)
            tokens.append(token)
            alphas.append(alpha)
        return torch.stack(tokens, 1), torch.stack(alphas, 1)


def exact_match(pred: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Per row: did the prediction reproduce the target up to and including END? -> (B,) bool.

    pred (B, L) decoded tokens; tgt (B, L') = START, answer, END, padding.
    """
    answer = tgt[:, 1:]
    L = max(pred.shape[1], answer.shape[1])
    pred, answer = F.pad(pred, (0, L - pred.shape[1])), F.pad(answer, (0, L - answer.shape[1]))
    return (pred == answer).all(dim=1)
