"""The chapters compute on system.get_device(): each runs here on an emulated accelerator.

tests/accelerator.py makes a device whose tensors refuse to mix with CPU ones, as a GPU's do.
Every chapter runs with system.get_device() returning it, shortened: train.fit runs at most two
epochs of two batches, train_gan two steps, the Config's epochs are at most two, the judge
trains one epoch. The chapters' own checks of what a full run reaches (their asserts) cannot
hold after that and are skipped; any other error fails the test, and so does a model trained on
another device than the chapter's.
"""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import jupytext
import matplotlib
import pytest
import torch

from accelerator import DEVICE, Accelerator

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parent.parent
# chapter 7 (closed forms), the 2-D examples of chapters 10 to 12 and the appendices stay on the CPU
ON_DEVICE = ("01_embeddings", "02_lstm", "03_rnn_applications", "04_seq2seq", "05_attention", "06_autoencoders",
             "08_vae", "09_vq_vae", "10c_gan_digits", "11b_diffusion_digits", "11c_model_comparison")
CHAPTERS = [REPO / "notebooks" / f"{name}.md" for name in ON_DEVICE]
SHORT = 2  # steps, epochs, batches
LOOPS = {"linear_steps": 100}  # the steps of a chapter's own loop (06 records its angles every 100)


class Batches:
    """The first SHORT batches of a loader."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return min(SHORT, len(self.loader))

    def __iter__(self):
        return itertools.islice(iter(self.loader), SHORT)


class WrongDevice(Exception):
    """A model trained elsewhere than on system.get_device() (not an AssertionError, which the
    chapters' own checks raise)."""


def on_device(model: torch.nn.Module, what: str) -> None:
    devices = {p.device for p in model.parameters()}
    if devices != {DEVICE}:
        raise WrongDevice(f"{what} trains on {devices}, not on system.get_device()")


def shortened(config):
    """The chapter's Config with at most SHORT epochs, and LOOPS' step counts."""
    fields = {f.name: min(getattr(config, f.name), SHORT) for f in dataclasses.fields(config)
              if f.name.endswith("epochs")}
    fields.update({name: steps for name, steps in LOOPS.items() if hasattr(config, name)})
    return dataclasses.replace(config, **fields)


@pytest.fixture
def accelerator(monkeypatch):
    from utils import gan, metrics, system, train

    fit, train_gan, train_judge = train.fit, gan.train_gan, metrics.train_judge

    def short_fit(model, loader, loss_fn, **kwargs):
        on_device(model, "a model given to train.fit")
        epochs = min(kwargs.pop("epochs", 1), SHORT)
        return fit(model, Batches(loader), loss_fn, epochs=epochs, **kwargs)

    def short_gan(model, *args, **kwargs):
        on_device(model.G, "a GAN's generator")
        on_device(model.D, "a GAN's discriminator")
        return train_gan(model, *args, **{**kwargs, "steps": SHORT, "every": 1})

    monkeypatch.setattr(system, "get_device", lambda: DEVICE)
    monkeypatch.setattr(system, "glue", lambda name, value: None)
    monkeypatch.setattr(train, "fit", short_fit)
    monkeypatch.setattr(gan, "train_gan", short_gan)
    monkeypatch.setattr(metrics, "train_judge", lambda digits, **kw: train_judge(digits, **{**kw, "epochs": 1}))
    with Accelerator():
        yield


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_on_the_device_it_asks_for(md, accelerator):
    import matplotlib.pyplot as plt

    namespace = {"__name__": "__main__", "shortened": shortened}
    cells = [c for c in jupytext.read(md).cells if c.cell_type == "code"]
    assert any("cfg = Config()" in c.source for c in cells), "no Config to shorten"
    for i, cell in enumerate(cells):
        source = cell.source.replace("cfg = Config()", "cfg = shortened(Config())")
        try:
            exec(compile(source, f"{md.stem}, code cell {i}", "exec"), namespace)
        except AssertionError:
            pass  # a check of what the full run reaches
        finally:
            plt.close("all")


# --- the emulation itself: the CPU's numbers, and CUDA's refusals -------------------------------

def test_the_emulated_accelerator_computes_what_the_cpu_computes():
    from utils import data, rnn, train

    def trained(device):
        torch.manual_seed(0)
        lm = rnn.CharLM(12, dim=4, hidden=8).to(device)
        x = torch.randint(0, 12, (32, 9), generator=torch.Generator().manual_seed(1))
        history = train.fit(lm, data.make_loader(x, batch_size=8), epochs=2, grad_clip=1.0,
                            loss_fn=lambda b: torch.nn.functional.cross_entropy(
                                lm(b[0][:, :-1])[0].flatten(0, 1), b[0][:, 1:].flatten()))
        sample = lm.generate(torch.tensor([1, 2], device=device), 6, 1.0, torch.Generator().manual_seed(2))
        return history["loss"], sample.cpu(), next(lm.parameters()).device

    loss_cpu, sample_cpu, _ = trained("cpu")
    with Accelerator():
        loss_acc, sample_acc, where = trained(DEVICE)
    assert where == DEVICE and loss_acc == loss_cpu and torch.equal(sample_acc, sample_cpu)


@pytest.mark.parametrize("mistake", ["mixed", "numpy", "generator", "float64", "cpu index"])
def test_the_emulated_accelerator_refuses_what_cuda_refuses(mistake):
    with Accelerator():
        x = torch.ones(3, 2).to(DEVICE)
        if mistake == "cpu index":  # allowed, as on CUDA
            assert x[torch.tensor([0, 2])].cpu().tolist() == [[1.0, 1.0], [1.0, 1.0]]
            return
        with pytest.raises((RuntimeError, TypeError)):
            if mistake == "mixed":
                x + torch.ones(3, 2)
            elif mistake == "numpy":
                x.numpy()
            elif mistake == "float64":
                x.double()
            else:
                torch.randn(3, generator=torch.Generator(), device=DEVICE)
        assert (x + torch.tensor(1.0)).cpu().tolist() == [[2.0, 2.0]] * 3  # a 0-dim CPU tensor mixes
