"""Recurrent cells written out with PyTorch's weight layout, and the tools to study them.

Every cell here uses the parameters of the matching `torch.nn` module as they are
(`weight_ih_l0` of shape (G*H, D), `weight_hh_l0` of shape (G*H, H), two biases), so a
hand-written cell and the library module can share weights and be compared exactly.
"""
from __future__ import annotations

import torch
import torch.nn as nn

Params = dict[str, torch.Tensor]


def layer_params(module: nn.RNNBase, layer: int = 0, reverse: bool = False) -> Params:
    """The four tensors of one layer (and direction) of nn.RNN / nn.LSTM / nn.GRU."""
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return {name: getattr(module, name + suffix) for name in names}


def rnn_cell(x_t: torch.Tensor, h: torch.Tensor, p: Params) -> torch.Tensor:
    """Elman cell: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh). (B, D), (B, H) -> (B, H)"""
    return torch.tanh(x_t @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"])


def lstm_cell(x_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], p: Params
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM cell with a forget gate (Gers et al., 2000), PyTorch's gate order i, f, g, o.

    i, f, o = sigma(.), g = tanh(.) of W_ih x_t + b_ih + W_hh h_{t-1} + b_hh (split in 4);
    c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t).  (B, D), ((B, H), (B, H)) -> same
    """
    h, c = state
    gates = x_t @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_cell(x_t: torch.Tensor, h: torch.Tensor, p: Params) -> torch.Tensor:
    """GRU cell in PyTorch's convention (gate order r, z, n).

    r = sigma(W_ir x + b_ir + W_hr h + b_hr), z likewise,
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h_t = (1 - z) * n + z * h_{t-1}.
    Note: z keeps the *old* state here; Cho et al. (2014) and many slides write it the other
    way round, and put r inside the matrix product, r * h before W_hn.
    """
    x_r, x_z, x_n = (x_t @ p["weight_ih"].T + p["bias_ih"]).chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ p["weight_hh"].T + p["bias_hh"]).chunk(3, dim=-1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def unroll(cell, x: torch.Tensor, state, p: Params):
    """Run `cell` over time: x (B, T, D) batch-first -> outputs (B, T, H), final state."""
    outputs = []
    for t in range(x.shape[1]):
        state = cell(x[:, t], state, p)
        outputs.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(outputs, dim=1), state


def gradient_by_lag(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """|| d h_T / d x_t || for every t: how much the last output still feels each input.

    model maps (B, T, D) -> (outputs (B, T, H), anything), batch-first. The gradient of
    the sum of the last output is taken with respect to every input step; returns (T,) with
    entry t the norm for lag T - 1 - t, averaged over the batch.
    """
    x = x.detach().clone().requires_grad_(True)
    outputs, _ = model(x)
    (grad,) = torch.autograd.grad(outputs[:, -1].sum(), x)
    return grad.norm(dim=-1).mean(0)


def set_forget_bias(lstm: nn.LSTM, value: float = 1.0) -> None:
    """Set the forget-gate bias of every layer to `value` (Gers et al., 2000; Jozefowicz et al., 2015).

    PyTorch adds bias_ih and bias_hh, so the forget slice of one is set to `value` and of
    the other to zero.
    """
    H = lstm.hidden_size
    with torch.no_grad():
        for name, b in lstm.named_parameters():
            if name.startswith("bias_ih"):
                b[H:2 * H] = value
            elif name.startswith("bias_hh"):
                b[H:2 * H] = 0.0


def detach_state(state):
    """Cut the graph behind a carried state (truncated BPTT): tensors or tuples of them."""
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class SequenceClassifier(nn.Module):
    """Embedding -> LSTM -> linear on the last state: many-to-one (N -> 1) classification.

    idx (B, T) with 0 = padding on the right, lengths (B,) -> logits (B, n_classes).
    Packing makes the LSTM stop at each sequence's true end; a bidirectional model
    concatenates the forward state at the end and the backward state at the start.
    """

    def __init__(self, vocab_size: int, n_classes: int, dim: int = 32, hidden: int = 64,
                 bidirectional: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), n_classes)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(idx), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # h_n: (directions, B, H)
        return self.head(torch.cat(list(h_n), dim=-1))  # (B, directions * H)


class CharLM(nn.Module):
    """Character-level language model: embedding -> LSTM -> logits over the next character.

    idx (B, T), state -> logits (B, T, V), state. Pass the returned state back in to go on
    where the last call stopped (what Keras calls a stateful LSTM). With readout > 0 the
    logits come from a hidden layer of that width (ReLU) on the LSTM's output instead of
    straight from it: a deep output (Pascanu et al. 2014), capacity that costs no recurrent
    step.
    """

    def __init__(self, vocab_size: int, dim: int = 32, hidden: int = 128, layers: int = 1,
                 readout: int = 0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.lstm = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True)
        self.head = (nn.Sequential(nn.Linear(hidden, readout), nn.ReLU(), nn.Linear(readout, vocab_size))
                     if readout else nn.Linear(hidden, vocab_size))

    def forward(self, idx: torch.Tensor, state=None):
        y, state = self.lstm(self.embed(idx), state)
        return self.head(y), state

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue `prompt` (T,) by n tokens, one at a time with the state carried along.

        temperature 0 is greedy (argmax); otherwise sample from softmax(logits / temperature).
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        logits, state = self(prompt[None])
        out = []
        for _ in range(n):
            last = logits[0, -1]
            if temperature == 0:
                token = last.argmax()
            else:
                probs = torch.softmax(last / temperature, dim=-1)
                # the CPU generator draws on the CPU (CUDA refuses it), then the token moves back
                token = torch.multinomial(probs.cpu(), 1, generator=generator)[0].to(probs.device)
            out.append(token)
            logits, state = self(token.view(1, 1), state)
        return torch.stack(out)
