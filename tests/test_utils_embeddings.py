import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils import embeddings


def test_vocab_orders_by_frequency_and_maps_unknown_words():
    vocab = embeddings.Vocab.build([["b", "a", "b"], ["c", "b", "a"]])
    assert vocab.itos == ["<pad>", "<unk>", "b", "a", "c"]
    assert vocab.counts == [0, 0, 3, 2, 1]
    assert vocab.encode(["a", "zebra"]) == [3, 1]
    assert len(embeddings.Vocab.build([["x", "y", "y"]], min_count=2)) == 3


def test_onehot_lookup_equals_nn_embedding():
    layer = nn.Embedding(13, 5)
    idx = torch.randint(0, 13, (4, 7))
    assert torch.allclose(embeddings.onehot_lookup(layer.weight, idx), layer(idx))


def test_skipgram_pairs_match_a_direct_count():
    pairs = embeddings.skipgram_pairs([[1, 2, 3], [4]], window=1).tolist()
    assert sorted(map(tuple, pairs)) == [(1, 2), (2, 1), (2, 3), (3, 2)]
    assert embeddings.skipgram_pairs([[5]], window=3).shape == (0, 2)


def test_noise_distribution_is_the_three_quarter_power():
    counts = torch.tensor([0.0, 1.0, 16.0])
    p = embeddings.noise_distribution(counts)
    assert torch.allclose(p, torch.tensor([0.0, 1.0, 8.0]) / 9.0)
    with pytest.raises(ValueError):
        embeddings.noise_distribution(torch.zeros(3))


def test_sgns_loss_equals_binary_cross_entropy_reference():
    torch.manual_seed(0)
    model = embeddings.SkipGramNS(20, 6)
    nn.init.normal_(model.u.weight)
    center, context, negatives = torch.randint(0, 20, (8,)), torch.randint(0, 20, (8,)), torch.randint(0, 20, (8, 4))
    v = model.v(center)
    logits = torch.cat([(model.u(context) * v).sum(-1, keepdim=True), (model.u(negatives) @ v[:, :, None])[..., 0]], 1)
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1
    ref = F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / 8
    assert torch.allclose(model(center, context, negatives), ref, atol=1e-6)


def test_sgns_loss_at_initialization_is_one_plus_k_log_two():
    model = embeddings.SkipGramNS(10, 4)  # u starts at zero: every logit is 0
    loss = model(torch.tensor([1]), torch.tensor([2]), torch.tensor([[3, 4, 5]]))
    assert math.isclose(loss.item(), 4 * math.log(2), rel_tol=1e-6)


def test_cosine_matrix_and_nearest():
    E = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [2.0, 0.1], [0.0, 1.0]])
    vocab = embeddings.Vocab(["<pad>", "<unk>", "a", "b", "c"], [0, 0, 1, 1, 1])
    C = embeddings.cosine_matrix(E[2:])
    assert torch.allclose(C, F.cosine_similarity(E[2:, None], E[None, 2:], dim=-1), atol=1e-6)
    assert [w for w, _ in embeddings.nearest(E, vocab, "a", k=2)] == ["b", "c"]
    with pytest.raises(KeyError):
        embeddings.nearest(E, vocab, "zzz")


def test_bilm_directions_only_see_their_side():
    torch.manual_seed(0)
    lm = embeddings.BiLM(12, 4, 5)
    a = torch.tensor([[2, 3, 4, 5, 6]])
    b = a.clone()
    b[0, 4] = 7  # change the last word only
    (fa, ba), (fb, bb) = lm.states(a), lm.states(b)
    assert torch.allclose(fa[:, :4], fb[:, :4])  # forward states before it do not change
    assert not torch.allclose(ba[:, :4], bb[:, :4])  # backward states do
    assert lm.contextual(a).shape == (1, 5, 10)


def test_bilm_loss_is_mean_of_two_cross_entropies():
    torch.manual_seed(1)
    lm = embeddings.BiLM(9, 3, 4)
    ids = torch.tensor([[2, 3, 4, 0], [5, 6, 0, 0]])
    f, b = lm.states(ids)
    lf = F.cross_entropy(lm.head(f[:, :-1]).reshape(-1, 9), ids[:, 1:].reshape(-1), ignore_index=0)
    lb = F.cross_entropy(lm.head(b[:, 1:]).reshape(-1, 9), ids[:, :-1].reshape(-1), ignore_index=0)
    assert torch.allclose(lm(ids), (lf + lb) / 2)


def test_pad_batch():
    out = embeddings.pad_batch([[1, 2, 3], [4]])
    assert out.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert embeddings.pad_batch([[1, 2, 3]], length=2).tolist() == [[1, 2]]
