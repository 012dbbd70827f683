import math

import numpy as np
import pytest
import torch

from utils import checks, data, metrics, plotting, system, train


def test_set_seed_makes_torch_repeatable():
    g1 = system.set_seed(3)
    a = torch.randn(3), torch.randn(2, generator=g1)
    g2 = system.set_seed(3)
    b = torch.randn(3), torch.randn(2, generator=g2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_get_device_is_cpu_without_accelerator():
    if not torch.cuda.is_available():
        assert system.get_device().type in ("cpu", "mps")


@pytest.mark.parametrize("value,quiet", [("", False), ("0", False), ("1", True), ("true", True)])
def test_is_quiet_reads_environment(monkeypatch, value, quiet):
    for name in system.QUIET_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DLCOURSE_QUIET", value)
    assert system.is_quiet() is quiet


def test_digits_split_is_fixed_stratified_and_scaled():
    d1, d2 = data.load_digits(), data.load_digits()
    assert d1.x_train.shape == (1347, 1, 8, 8) and d1.x_test.shape == (450, 1, 8, 8)
    assert torch.equal(d1.y_test, d2.y_test)
    assert 0.0 <= d1.x_train.min() and d1.x_train.max() <= 1.0
    assert torch.bincount(d1.y_test).min() >= 40  # every class in the test split


def test_loader_is_seeded_and_covers_every_row():
    x = torch.arange(10)
    order = lambda seed: torch.cat([b[0] for b in data.make_loader(x, batch_size=3, seed=seed)])
    assert torch.equal(order(1), order(1)) and not torch.equal(order(1), order(2))
    assert sorted(order(1).tolist()) == list(range(10))
    assert len(data.make_loader(x, batch_size=3)) == 4
    with pytest.raises(ValueError):
        data.make_loader(x, torch.arange(3))


def test_generated_sentences_are_repeatable_and_weighted():
    s1, t1 = data.generate_sentences(200, seed=5)
    s2, t2 = data.generate_sentences(200, seed=5)
    assert s1 == s2 and t1 == t2 and set(t1) == set(data.GENERAL_TOPICS)
    _, t = data.generate_sentences(2000, {"summer": 9.0, "winter": 1.0}, seed=0)
    assert 0.85 < t.count("summer") / len(t) < 0.95
    assert all("{" not in w for s in s1 for w in s)
    with pytest.raises(ValueError):
        data.generate_sentences(3, ("no-such-topic",))


def test_fit_reduces_loss_and_returns_history():
    system.set_seed(0)
    x = torch.randn(256, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1
    model = torch.nn.Linear(3, 1)
    loss_fn = lambda b: ((model(b[0])[:, 0] - b[1]) ** 2).mean()
    hist = train.fit(model, data.make_loader(x, y, batch_size=32), loss_fn, epochs=20, lr=0.05,
                     eval_fn=lambda: {"mse": loss_fn((x, y)).item()})
    assert hist["epoch"] == list(range(1, 21)) and len(hist["mse"]) == 20
    assert hist["loss"][-1] < 0.01 * hist["loss"][0] and hist["mse"][-1] < 1e-3
    assert hist["seconds"] == sorted(hist["seconds"])


def test_fit_stops_on_a_nan_loss():
    model = torch.nn.Linear(1, 1)
    with pytest.raises(FloatingPointError, match="learning rate"):
        train.fit(model, [(torch.ones(1),)], lambda b: model(b[0]).sum() * float("nan"))


def test_frechet_distance_matches_closed_forms():
    mu, cov = torch.zeros(3), torch.eye(3)
    assert metrics.frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)
    # identity vs scaled identity: tr(I + s^2 I - 2 s I) = d (1 - s)^2
    assert metrics.frechet_distance(mu, cov, mu + 1, 4 * cov) == pytest.approx(3 + 3 * (1 - 2) ** 2)
    a = torch.randn(5, 5, dtype=torch.float64)
    b = torch.randn(5, 5, dtype=torch.float64)
    c1, c2 = a @ a.T + 0.1 * torch.eye(5), b @ b.T + 0.1 * torch.eye(5)
    import scipy.linalg

    n1, n2 = c1.numpy(), c2.numpy()
    ref = np.trace(n1 + n2 - 2 * scipy.linalg.sqrtm(n1 @ n2).real)
    assert metrics.frechet_distance(torch.zeros(5), c1, torch.zeros(5), c2) == pytest.approx(ref, rel=1e-6)


def test_accuracy_and_bits():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert metrics.accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    assert metrics.nats_to_bits(math.log(2)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.accuracy(logits, torch.tensor([0]))


def test_checks_explain_what_is_wrong():
    expected = torch.tensor([1.0, 2.0])
    checks.check_close(torch.tensor([1.0, 2.0]), expected, "x")
    with pytest.raises(checks.CheckFailed, match="shape"):
        checks.check_close(torch.tensor([1.0]), expected, "x")
    with pytest.raises(checks.CheckFailed, match="dtype"):
        checks.check_close(torch.tensor([1, 2]), expected, "x")
    with pytest.raises(checks.CheckFailed, match="index \\(1,\\)"):
        checks.check_close(torch.tensor([1.0, 2.5]), expected, "x")
    with pytest.raises(checks.CheckFailed, match="NaN"):
        checks.check_close(torch.tensor([1.0, float("nan")]), expected, "x")


def test_checks_refuse_objects_that_pretend_to_be_equal():
    class AlwaysEqual(torch.Tensor):
        def __eq__(self, other):
            return True

    fake = torch.tensor([9.0, 9.0]).as_subclass(AlwaysEqual)
    with pytest.raises(checks.CheckFailed, match="torch.Tensor"):
        checks.check_close(fake, torch.tensor([1.0, 2.0]), "x")
    with pytest.raises(checks.CheckFailed, match="number"):
        checks.check_scalar("1.0", 1.0, "s")
    checks.check_scalar(torch.tensor(1.0), 1.0, "s")


def test_check_gradient_catches_a_wrong_backward():
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x**2

        @staticmethod
        def backward(ctx, g):
            return g  # should be 2 x g

    checks.check_gradient(lambda x: x**2, [torch.randn(3)], "square")
    with pytest.raises(checks.CheckFailed, match="gradient"):
        checks.check_gradient(Wrong.apply, [torch.randn(3)], "wrong square")


def test_plotting_functions_draw(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    plotting.use_style()
    fig = plotting.show_images(torch.rand(5, 1, 8, 8), ncols=3, titles=list("abcde"))
    assert len([ax for ax in fig.axes if ax.images]) == 5
    ax = plotting.plot_history({"epoch": [1, 2], "loss": [1.0, 0.5]})
    assert len(ax.lines) == 1
    ax = plotting.heatmap(torch.eye(2), ["a", "b"], ["c", "d"])
    assert len(ax.texts) == 4
    ax = plotting.scatter_2d(torch.randn(6, 2), groups=list("aabbcc"), texts=list("uvwxyz"))
    assert len(ax.collections) == 3 and len(ax.texts) == 6
    ax.figure.savefig(tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 1000


def test_fit_cosine_decay_reaches_zero_learning_rate():
    model = torch.nn.Linear(2, 1)
    loader = data.make_loader(torch.randn(40, 2), torch.randn(40, 1), batch_size=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []

    def loss_fn(batch):  # called once per step, before the update: record the rate in use
        seen.append(optimizer.param_groups[0]["lr"])
        return torch.nn.functional.mse_loss(model(batch[0]), batch[1])

    train.fit(model, loader, loss_fn, epochs=2, optimizer=optimizer, cosine_decay=True)
    assert len(seen) == 8 and seen[0] == pytest.approx(0.1)
    assert seen[4] == pytest.approx(0.05)  # halfway: half the rate
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


# --- the device is real: samplers and losses compute where the model's parameters are ----------

def on_meta(module):
    """A module moved to the meta device: any tensor a sampler makes on the CPU and mixes with
    its outputs raises, so a CPU machine checks what a GPU reader would hit."""
    return module.to("meta")


class GeneratorOnItsDevice(torch.overrides.TorchFunctionMode):
    """Fails a draw made with a generator on another device than the tensor drawn: CUDA refuses
    a CPU generator for a CUDA tensor, the meta device lets it pass. A meta tensor copied to the
    CPU arrives as ones (meta has no values), as an accelerator's probabilities would arrive."""

    DRAWS = {torch.randn, torch.rand, torch.randint, torch.multinomial, torch.normal, torch.bernoulli}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cpu and args[0].device.type == "meta":
            return torch.ones(args[0].shape, dtype=args[0].dtype)
        if func in self.DRAWS and kwargs.get("generator") is not None:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            device = torch.device(kwargs.get("device") or (tensors[0].device if tensors else "cpu"))
            assert device.type == kwargs["generator"].device.type, f"{func.__name__} on {device} with a CPU generator"
        return func(*args, **kwargs)


def test_samplers_and_losses_allocate_on_the_device_of_the_model():
    from utils import autoencoder, diffusion, ebm, flows, gan, rnn, vae, vq

    g = torch.Generator().manual_seed(0)
    schedule = diffusion.cosine_schedule(20)
    unet = on_meta(diffusion.UNet(channels=8, t_dim=16))
    mlp = on_meta(diffusion.ResidualMLP(hidden=16, blocks=1, t_dim=8))
    meta = lambda *shape: torch.zeros(*shape, device="meta")  # noqa: E731
    with GeneratorOnItsDevice():
        results = {
            "ddpm": diffusion.sample(unet, (2, 1, 8, 8), schedule, generator=g)[0],
            "guided": diffusion.sample(diffusion.Guided(on_meta(diffusion.UNet(channels=8, t_dim=16, classes=3)),
                                                        torch.tensor([0, 2]), 1.0), (2, 1, 8, 8), schedule,
                                       steps=3, generator=g)[0],
            "ddim": diffusion.sample(mlp, (3, 2), schedule, steps=4, clip=1.0, generator=g)[0],
            "diffusion loss": diffusion.diffusion_loss(mlp, meta(3, 2), schedule, g),
            "langevin": ebm.langevin_energy(on_meta(ebm.EnergyMLP(hidden=8)), meta(3, 2), 0.01, 2, g),
            "dsm loss": ebm.denoising_score_matching_loss(lambda x: -x, meta(3, 2), 0.5, g),
            "vae": on_meta(vae.VAE(latent=2, hidden=8)).sample(3, g),
            "flow": on_meta(flows.coupling_flow(hidden=8, n_layers=2)).sample(3, 2, g),
            "gumbel": vq.gumbel_softmax(meta(3, 4), 0.5, generator=g),
            "corrupt": autoencoder.corrupt(meta(2, 1, 8, 8), "gaussian", 0.3, g),
            "mask": autoencoder.corrupt(meta(2, 1, 8, 8), "mask", 0.5, g),
            "gradient penalty": gan.gradient_penalty(on_meta(torch.nn.Linear(2, 1)), meta(3, 2), meta(3, 2), g),
            "reparameterize": vae.reparameterize(meta(3, 2), meta(3, 2), generator=g),
        }
        for tricks in (gan.Tricks(), gan.Tricks(conditional=True, gaussian_z=False)):
            model = gan.digit_gan(tricks, z_dim=4, width=4)
            model.G, model.D = on_meta(model.G), on_meta(model.D)
            results[f"gan {tricks.conditional}"] = model.sample(3, g)
        results["code prior"] = on_meta(vq.CodePrior(K=4, dim=4, hidden=8)).sample(2, (2, 2), generator=g)
        results["char LM"] = on_meta(rnn.CharLM(5, dim=4, hidden=8)).generate(
            torch.zeros(3, dtype=torch.long, device="meta"), 4, temperature=1.0, generator=g
        )
    assert {name: x.device.type for name, x in results.items()} == dict.fromkeys(results, "meta")


class ReadsMetaAsZero(GeneratorOnItsDevice):
    """Also reads a meta scalar as 0.0 and a meta truth value as True (meta tensors have no
    values), so that a training loop on the meta device runs to its end."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.item, torch.Tensor.__bool__) and args[0].device.type == "meta":
            return 0.0 if func is torch.Tensor.item else True
        return super().__torch_function__(func, types, args, kwargs)


def test_training_loops_and_the_judge_move_data_to_the_model():
    """Data on the CPU, the model elsewhere (as a GPU reader has it): train.fit and train_gan
    move the batches, the judge the samples, and the parameters stay where they were."""
    from utils import gan

    x = torch.rand(16, 1, 8, 8)
    net = on_meta(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1)))
    model = gan.digit_gan(gan.Tricks(conditional=True), z_dim=4, width=4)
    model.G, model.D = on_meta(model.G), on_meta(model.D)
    judge = on_meta(metrics.DigitJudge(width=4, n_features=8))
    with ReadsMetaAsZero():
        history = train.fit(net, data.make_loader(x, torch.zeros(16), batch_size=8),
                            lambda batch: (net(batch[0]).squeeze(1) - batch[1]).pow(2).mean(), epochs=1)
        gan.train_gan(model, x, torch.arange(16) % 10, steps=2, batch_size=4, ema=0.9)
        judged = judge.legible(x), judge.inception_score(x)
    assert history["loss"] == [0.0] and judged == (0.0, 1.0)  # ran to the end, on meta
    devices = {p.device.type for m in (net, model.G, model.D, model.G_ema, judge) for p in m.parameters()}
    assert devices == {"meta"}


def test_to_device_moves_tensors_in_a_batch_and_leaves_the_rest():
    batch = (torch.zeros(2), [torch.ones(1), "label"], 3)
    moved = system.to_device(batch, torch.device("meta"))
    assert type(moved) is tuple and type(moved[1]) is list and moved[1][1] == "label" and moved[2] == 3
    assert moved[0].device.type == moved[1][0].device.type == "meta"
    assert system.to_device(batch[0], torch.device("cpu")) is batch[0]  # already there: no copy


def test_sampling_on_the_cpu_gives_the_same_numbers_as_before():
    """The noise is drawn with the CPU generator and moved: a seed gives the numbers it always gave."""
    from utils import diffusion

    torch.manual_seed(0)
    model = diffusion.ResidualMLP(hidden=16, blocks=1, t_dim=8)
    schedule = diffusion.cosine_schedule(10)
    x, _ = diffusion.sample(model, (4, 2), schedule, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    expected = torch.randn(4, 2, generator=g)
    with torch.no_grad():
        for t in range(10, 0, -1):
            eps = model(expected, torch.full((4,), t, dtype=torch.long))
            expected = diffusion.p_sample(eps, expected, t, schedule, torch.randn(4, 2, generator=g))
    assert torch.equal(x, expected)
