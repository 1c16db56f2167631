"""The network: shapes, normalized log-probabilities (full and adaptive softmax), weight tying."""

from __future__ import annotations

import pytest
import torch

from lm_magics.engine.model import LSTMLanguageModel, adaptive_cutoffs


def _net(**kw):
    torch.manual_seed(0)
    args = dict(vocab_size=50, embed_dim=8, hidden_dim=12, num_layers=2, dropout=0.0)
    if kw.get("adaptive"):
        args["hidden_dim"] = 32   # tail clusters shrink by 4 per cluster: keep them at least 2 wide
    args.update(kw)
    return LSTMLanguageModel(**args).eval()


@pytest.mark.parametrize("adaptive", [False, True])
def test_shapes(adaptive):
    net = _net(adaptive=adaptive, cutoffs=[10, 30] if adaptive else None)
    ids = torch.randint(0, 50, (7, 3))                              # (T, B)
    lp, (h, c) = net(ids)
    assert lp.shape == (7, 3, 50)
    assert h.shape == c.shape == (2, 3, net.hidden_dim)                         # (layers, B, H)
    loss, _ = net(ids, targets=torch.randint(0, 50, (7, 3)))
    assert loss.dim() == 0 and torch.isfinite(loss)
    feats, _ = net.features(ids)
    assert net.nll(feats, torch.zeros(7, 3, dtype=torch.long)).shape == (21,)


@pytest.mark.parametrize("adaptive", [False, True])
def test_log_probs_sum_to_one_and_agree_with_nll(adaptive):
    net = _net(adaptive=adaptive, cutoffs=[10, 30] if adaptive else None)
    ids = torch.randint(0, 50, (5, 2))
    with torch.no_grad():
        feats, _ = net.features(ids)
        lp = net.log_probs(feats)                                   # (5, 2, V)
        assert torch.allclose(lp.exp().sum(-1), torch.ones(5, 2), atol=1e-5)
        targets = torch.randint(0, 50, (5, 2))
        nll = net.nll(feats, targets)
        picked = -lp.gather(-1, targets.unsqueeze(-1)).reshape(-1)
        assert torch.allclose(nll, picked, atol=1e-5)


def test_state_carries_across_calls():
    net = _net()
    ids = torch.randint(0, 50, (9, 1))
    with torch.no_grad():
        whole, _ = net(ids)
        first, st = net(ids[:4])
        rest, _ = net(ids[4:], st)
    assert torch.allclose(torch.cat([first, rest]), whole, atol=1e-6)


def test_tied_weights_share_storage_and_project_when_sizes_differ():
    net = _net(tie_weights=True)
    assert net.tied and net.decoder.weight is net.embed.weight
    assert net.proj is not None                                    # hidden 12 -> embed 8 before the decoder
    same = _net(tie_weights=True, embed_dim=12)
    assert same.proj is None
    untied = _net(tie_weights=False)
    assert not untied.tied and untied.decoder.weight is not untied.embed.weight
    n_tied, n_untied = net.num_parameters(), untied.num_parameters()
    assert n_tied < n_untied                                        # the shared matrix counts once


def test_adaptive_head_is_never_tied():
    net = _net(adaptive=True, tie_weights=True, cutoffs=[10])
    assert net.adaptive and not net.tied and net.decoder is None
    assert net.hparams()["tie_weights"] is False and net.hparams()["cutoffs"] == [10]


def test_adaptive_cutoffs():
    assert adaptive_cutoffs(33_000) == [2_000, 10_000]
    assert adaptive_cutoffs(5_000) == [2_000]
    assert adaptive_cutoffs(100) == [50]
    for v in (4, 100, 2_001, 10_002, 50_000):
        cuts = adaptive_cutoffs(v)
        assert all(0 < c < v for c in cuts) and cuts == sorted(cuts)


def test_hparams_rebuild_the_same_network():
    net = _net(adaptive=True, cutoffs=[10, 30])
    h = net.hparams()
    twin = LSTMLanguageModel(**h).eval()
    twin.load_state_dict(net.state_dict())
    ids = torch.randint(0, 50, (4, 2))
    with torch.no_grad():
        assert torch.equal(net(ids)[0], twin(ids)[0])


def _tail_heavy_adaptive():
    """An adaptive model whose tail clusters carry most of the mass (so pruning is really exercised)."""
    torch.manual_seed(0)
    m = LSTMLanguageModel(12_000, 16, 32, 1, 0.0, adaptive=True).eval()
    with torch.no_grad():
        m.head.head.weight[-2:] *= 30
    return m


def test_pruned_topk_equals_full_distribution_topk():
    m = _tail_heavy_adaptive()
    exclude = torch.tensor([0, 1])
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for _ in range(100):
            f = torch.randn(32, generator=g) * 3
            lp = m.log_probs(f.unsqueeze(0))[0]
            lp[exclude] = float("-inf")
            want_v, want_i = torch.topk(lp, 10)
            got_v, got_i = m.topk_next(f, 10, exclude)
            assert torch.equal(got_i, want_i)
            assert torch.allclose(got_v, want_v, atol=1e-5)


def test_hierarchical_sampling_matches_the_distribution():
    m = _tail_heavy_adaptive()
    f = torch.randn(32, generator=torch.Generator().manual_seed(2)) * 3
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        p = m.log_probs(f.unsqueeze(0))[0].exp()
        ids = torch.tensor([m.sample_next(f, g, torch.tensor([0])) for _ in range(4000)])
    assert not (ids == 0).any()                       # excluded ids are never drawn
    p = p.clone()
    p[0] = 0
    p /= p.sum()
    # Mass per cluster (head, tail 1, tail 2) within sampling error (4000 draws: sd <= 0.008).
    for lo, hi in [(0, 2000), (2000, 10000), (10000, 12000)]:
        assert abs(((ids >= lo) & (ids < hi)).float().mean().item() - p[lo:hi].sum().item()) < 0.04


# ---- the training path (issue 16): our own dropout masks and one torch.lstm call per layer

def test_dropout_zeroes_a_fraction_p_and_keeps_the_mean():
    from lm_magics.engine.model import _dropout
    torch.manual_seed(0)
    x = torch.ones(200_000)
    for p in (0.1, 0.3, 0.5, 0.9):
        y = _dropout(x, p)
        zero = (y == 0).float().mean().item()
        assert abs(zero - p) < 0.01                                 # ~0.001 standard error + 1/512 steps
        kept = y[y != 0]
        assert torch.allclose(kept, torch.full_like(kept, kept[0].item()))      # one scale ...
        assert abs(kept[0].item() - 1 / (1 - p)) < 0.02 / (1 - p)              # ... about 1/(1-p)
        assert abs(y.mean().item() - 1.0) < 0.03                   # the expected activation is kept
    y = _dropout(torch.ones(4, 1000, dtype=torch.bfloat16), 0.2)   # autocast activations: same dtype back
    assert y.dtype == torch.bfloat16 and y.shape == (4, 1000)
    assert _dropout(x, 0.0) is x


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_training_features_are_nn_lstm_with_the_masks_taken_out(monkeypatch, layers):
    """With the masks made the identity, the per-layer path gives nn.LSTM's outputs, state and gradients."""
    from lm_magics.engine import model as M
    net = _net(num_layers=layers, dropout=0.3, tie_weights=False).train()
    net.lstm.dropout = 0.3 if layers > 1 else 0.0
    seen = []
    monkeypatch.setattr(M, "_dropout", lambda x, p: seen.append(p) or x)
    ids = torch.randint(0, 50, (6, 4))
    h0 = (torch.randn(layers, 4, 12), torch.randn(layers, 4, 12))
    out, (h, c) = net.features(ids, h0)
    assert seen == [0.3] * (layers + 1)                             # embedding, between layers, output
    net.lstm.dropout = 0.0                                          # nn.LSTM's own path, no dropout at all
    want, (wh, wc) = net.lstm(net.embed(ids), h0)
    assert torch.allclose(out, want, atol=1e-6) and torch.allclose(h, wh, atol=1e-6)
    assert torch.allclose(c, wc, atol=1e-6)
    g1 = torch.autograd.grad(out.sum(), net.lstm.weight_hh_l0)[0]
    g2 = torch.autograd.grad(want.sum(), net.lstm.weight_hh_l0)[0]
    assert torch.allclose(g1, g2, atol=1e-5)


def test_new_adaptive_networks_have_a_head_bias_and_old_files_build_without():
    from lm_magics.engine.model import build_network, network_hparams
    from lm_magics.config import TrainConfig
    h, _ = network_hparams(TrainConfig(embed_dim=8, hidden_dim=32, num_layers=1, dropout=0.1, softmax="adaptive"), 60)
    net = build_network(h)
    assert net.head.head.bias is not None and net.hparams()["head_bias"] is True
    old = {k: v for k, v in net.hparams().items() if k != "head_bias"}        # a file from before
    assert build_network(old).head.head.bias is None
    assert "head.head.bias" not in build_network(old).state_dict()
