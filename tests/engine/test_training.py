"""Training: loss falls, seeds reproduce, early stopping keeps the best weights, callbacks, interrupts,
continued training."""

from __future__ import annotations

import copy

import math
import subprocess
import sys

import pytest
import torch

import lm_magics as lm
from lm_magics.engine import training
from lm_magics.engine.model import build_network, network_hparams
from lm_magics.engine.training import auto_config


def _same_state(a, b) -> bool:
    sa, sb = a.net.state_dict(), b.net.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_loss_falls(tiny_text):
    # 12 epochs: the loss ratio is 0.42-0.48 over seeds 0-5 (at 6 epochs it was 0.77-0.92, too close to call)
    m = lm.train(tiny_text, hidden_dim=32, embed_dim=16, epochs=12, seed=0, seq_len=10, lr=0.03, dropout=0.1)
    losses = m.report.losses
    k = max(3, len(losses) // 5)
    assert sum(losses[-k:]) / k < 0.8 * sum(losses[:k]) / k
    hist = m.report.history
    assert hist[-1].val_ppl < hist[0].val_ppl
    assert m.report.stop_reason in ("finished", "early stop") and not m.interrupted


def test_same_seed_same_model_on_cpu(tiny_text, tiny_options, tiny_model):
    again = lm.train(tiny_text, **tiny_options)
    assert _same_state(again, tiny_model)
    other = lm.train(tiny_text, **{**tiny_options, "seed": 1})
    assert not _same_state(other, tiny_model)


def test_callbacks_see_every_step_and_epoch(tiny_text, tiny_options):
    steps, epochs = [], []
    m = lm.train(tiny_text, **tiny_options, on_step=steps.append, on_epoch=epochs.append)
    assert [s.step for s in steps] == list(range(1, m.report.steps + 1))
    assert steps[-1].total_steps == m.report.steps
    assert all(math.isfinite(s.loss) and s.lr > 0 and s.tokens > 0 for s in steps)
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert epochs == m.report.history
    assert m.report.tokens_seen == steps[-1].tokens


def test_max_steps(tiny_text, tiny_options):
    m = lm.train(tiny_text, **{**tiny_options, "epochs": 50}, max_steps=4)
    assert m.report.steps == 4 and m.report.stop_reason == "max_steps"


def _fake_val(monkeypatch, ppls):
    """Make validation report the given perplexities, epoch by epoch."""
    it = iter(ppls)
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: next(it))


def test_early_stopping_keeps_the_best_weights(tiny_text, tiny_options, monkeypatch):
    _fake_val(monkeypatch, [30.0, 20.0, 25.0, 26.0, 27.0, 28.0, 29.0])
    snapshots = {}
    holder = {}

    def on_epoch(info):  # snapshot the weights the model has at the end of each epoch
        snapshots[info.epoch] = {k: v.clone() for k, v in holder["net"].state_dict().items()}

    real_fit = training.fit

    def spy_fit(net, *a, **k):
        holder["net"] = net
        return real_fit(net, *a, **k)

    monkeypatch.setattr(lm.api, "fit", spy_fit)
    m = lm.train(tiny_text, **{**tiny_options, "epochs": 10}, patience=2, on_epoch=on_epoch)
    assert m.report.stop_reason == "early stop" and len(m.report.history) == 4
    assert m.report.best_epoch == 2 and m.report.best_val_ppl == 20.0
    assert any("stopped early" in n for n in m.report.notes)
    sd = m.net.state_dict()
    assert all(torch.equal(sd[k], snapshots[2][k]) for k in sd)        # epoch 2's weights, not epoch 4's
    assert not all(torch.equal(sd[k], snapshots[4][k]) for k in sd)


def test_stop_training_from_a_callback_keeps_the_best_model(tiny_text, tiny_options):
    def stop_in_epoch_3(info):
        if info.epoch == 3:
            raise lm.StopTraining()

    m = lm.train(tiny_text, **{**tiny_options, "epochs": 10}, on_step=stop_in_epoch_3)
    assert m.interrupted and m.report.stop_reason == "interrupted"
    assert m.report.best_epoch in (1, 2) and len(m.report.history) == 2
    assert any("interrupted" in n for n in m.report.notes)
    assert m.next_words("the cat")                              # usable


def test_keyboard_interrupt_mid_training_returns_the_model(tiny_text, tiny_options):
    def interrupt(info):
        if info.step == 3:
            raise KeyboardInterrupt

    m = lm.train(tiny_text, **tiny_options, on_step=interrupt)
    assert m.interrupted and m.report.steps == 3
    assert m.report.best_val_ppl is not None and math.isfinite(m.report.best_val_ppl)
    assert m.meta["interrupted"] is True
    assert len(m.next_words("the", k=3)) == 3


def test_keyboard_interrupt_before_any_step_propagates(tiny_text, tiny_options, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_make_optimizers", boom)
    with pytest.raises(KeyboardInterrupt):
        lm.train(tiny_text, **tiny_options)


def test_continue_training_keeps_vocabulary_and_leaves_init_alone(tiny_model):
    before = tiny_model.next_words("the cat", k=10)
    state_before = {k: v.clone() for k, v in tiny_model.net.state_dict().items()}
    more = "the cat sat on the zebra.\nthe dog saw a giraffe and a zebra.\n" * 10
    m2 = lm.train(more, init=tiny_model, epochs=2)
    assert m2.vocab == tiny_model.vocab
    assert "zebra" not in m2.tokenizer.stoi
    assert m2.meta["unk_tokens"] > 0
    assert any("<unk>" in n and "kept its vocabulary" in n for n in m2.report.notes)
    # Settings kept unless overridden.
    assert (m2.info["hidden_dim"], m2.info["embed_dim"]) == (32, 16)
    assert m2.meta["runs"] == 2 and m2.meta["tokens_seen"] > tiny_model.meta["tokens_seen"]
    # The original model is untouched.
    assert tiny_model.next_words("the cat", k=10) == before
    sd = tiny_model.net.state_dict()
    assert all(torch.equal(sd[k], state_before[k]) for k in sd)
    assert not _same_state(m2, tiny_model)


def test_init_must_be_a_model(tiny_text):
    with pytest.raises(lm.ConfigError, match="init must be a LanguageModel"):
        lm.train(tiny_text, init="model.lm")


def test_auto_config_sizes_by_data():
    cfg = lm.TrainConfig()
    small, why = auto_config(cfg, 500)
    assert (small.embed_dim, small.hidden_dim, small.num_layers, small.epochs) == (200, 200, 1, 30) and why
    big, _ = auto_config(cfg, 5_000_000)
    assert (big.hidden_dim, big.num_layers, big.epochs) == (512, 2, 1)
    given, why = auto_config(cfg.replace(hidden_dim=7, embed_dim=5, num_layers=1, dropout=0.0, optimizer="adamw",
                                         batch_size=2, epochs=1, lr=0.01, grad_clip=0.5), 500)
    assert given.hidden_dim == 7 and given.grad_clip == 0.5 and why == []


@pytest.mark.parametrize("tokens, given, expected", [
    (500, {}, ("sgd", 20.0, 0.25)),                          # a cell: the textbook's SGD
    (299_999, {}, ("sgd", 20.0, 0.25)),                      # ... and a column
    (300_000, {}, ("adamw", 0.003, 1.0)),                    # a corpus: AdamW
    (5_000_000, {}, ("adamw", 0.003, 1.0)),
    (50_000, {"lr": 0.02}, ("adamw", 0.02, 1.0)),
    (500, {"lr": 0.03}, ("adamw", 0.03, 1.0)),               # a given lr tells which optimizer it is for
    (500, {"lr": 0.999}, ("adamw", 0.999, 1.0)),
    (500_000, {"lr": 1.0}, ("sgd", 1.0, 0.25)),
    (500_000, {"lr": 20}, ("sgd", 20.0, 0.25)),
    (500, {"optimizer": "adamw"}, ("adamw", 0.03, 1.0)),
    (5_000_000, {"optimizer": "sgd"}, ("sgd", 20.0, 0.25)),
    (500, {"optimizer": "sgd", "lr": 5.0}, ("sgd", 5.0, 0.25)),
    (500, {"grad_clip": 0.0}, ("sgd", 20.0, 0.0)),           # 0: no clipping, kept
    (50_000, {"grad_clip": 2.0}, ("sgd", 20.0, 2.0)),
    (50_000, {"optimizer": "adamw"}, ("adamw", 0.01, 1.0)),
])
def test_auto_config_chooses_the_optimizer_from_data_and_given_lr(tokens, given, expected):
    cfg, why = auto_config(lm.TrainConfig(**given), tokens)
    assert (cfg.optimizer, cfg.lr, cfg.grad_clip) == expected
    if "optimizer" not in given:
        assert f"optimizer={expected[0]}" in why[0]          # the summary says what was chosen


@pytest.mark.parametrize("tokens, optimizer, net", [
    (5_000, "auto", (200, 200, 0.6)), (5_000, "adamw", (200, 200, 0.6)),
    (100_000, "auto", (200, 200, 0.6)), (100_000, "adamw", (128, 256, 0.5)),   # each optimizer its own network
    (1_000_000, "auto", (256, 256, 0.2)), (1_000_000, "sgd", (256, 256, 0.2)),
])
def test_auto_config_gives_each_optimizer_its_network(tokens, optimizer, net):
    cfg, _ = auto_config(lm.TrainConfig(optimizer=optimizer), tokens)
    assert (cfg.embed_dim, cfg.hidden_dim, cfg.dropout) == net


def test_fit_refuses_a_config_left_to_the_data(tiny_text):
    from lm_magics.engine.data import prepare
    from lm_magics.engine.tokenizer import Tokenizer
    tok = Tokenizer()
    corpus = prepare(tiny_text, tok, val_fraction=0.0, seed=0)
    cfg = auto_config(lm.TrainConfig(), 100)[0]
    net = build_network(network_hparams(cfg, len(tok))[0], seed=0)
    with pytest.raises(ValueError, match=r"\(optimizer left to the data\)"):
        training.fit(net, corpus, cfg.replace(optimizer="auto"))
    with pytest.raises(ValueError, match=r"\(lr, grad_clip left to the data\)"):
        training.fit(net, corpus, cfg.replace(lr=None, grad_clip=None))


def test_models_record_the_optimizer_they_trained_with_and_continuing_chooses_again(tiny_text):
    model = lm.train(tiny_text, epochs=2, seed=0, baseline=False)
    assert (model.config.optimizer, model.config.lr, model.config.grad_clip) == ("sgd", 20.0, 0.25)
    more = lm.train(tiny_text, init=model, epochs=1, lr=0.02, seed=0, baseline=False)
    assert (more.config.optimizer, more.config.lr, more.config.grad_clip) == ("adamw", 0.02, 1.0)
    again = lm.train(tiny_text, init=more, epochs=1, seed=0, baseline=False)
    assert (again.config.optimizer, again.config.lr) == ("sgd", 20.0)


def test_resolve_device():
    assert training.resolve_device("cpu").type == "cpu"
    assert training.resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(lm.ConfigError, match="device"):
        training.resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(lm.ConfigError, match="no CUDA"):
            training.resolve_device("cuda")


@pytest.mark.parametrize("name", ["meta", "cuda:x", "xla", "cpu:0", "CUDA", " cpu", "cuda:", "cuda:12345"])
def test_resolve_device_refuses_what_torch_takes_but_lm_magics_cannot_use(name):
    with pytest.raises(lm.ConfigError, match=r"Unknown device .*use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"):
        training.resolve_device(name)


def test_resolve_device_checks_the_gpu_index(monkeypatch):
    # Without a GPU here, pretend one: cuda:0 is it, cuda:1 is named as missing before anything is built.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert training.resolve_device("cuda:0") == torch.device("cuda:0")
    assert training.resolve_device(torch.device("cuda", 0)) == torch.device("cuda:0")
    with pytest.raises(lm.ConfigError, match=r"device='cuda:1' but this machine has 1 CUDA GPU\(s\) \(cuda:0 to cuda:0\)"):
        training.resolve_device("cuda:1")


def test_interrupt_during_validation_keeps_the_last_best_epoch(tiny_text, tiny_options, monkeypatch, interrupt_at):
    interrupt_at(training, "evaluate", 2)       # Ctrl-C while validating epoch 2
    holder, snapshots = {}, []
    real_fit = training.fit

    def spy_fit(net, *a, **k):
        holder["net"] = net
        return real_fit(net, *a, **k)

    monkeypatch.setattr(lm.api, "fit", spy_fit)
    on_epoch = lambda info: snapshots.append({k: v.clone() for k, v in holder["net"].state_dict().items()})
    m = lm.train(tiny_text, **{**tiny_options, "epochs": 5}, on_epoch=on_epoch)
    assert m.interrupted and m.report.best_epoch == 1 and len(m.report.history) == 1
    sd = m.net.state_dict()
    assert all(torch.equal(sd[k], snapshots[0][k]) for k in sd)       # exactly epoch 1's weights
    assert len(m.next_words("the", k=3)) == 3


def test_interrupt_during_first_validation_measures_what_it_has(tiny_text, tiny_options, interrupt_at):
    interrupt_at(training, "evaluate", 1)
    m = lm.train(tiny_text, **tiny_options)
    assert m.interrupted and m.report.best_epoch is None and m.report.history == []
    assert m.report.best_val_ppl is not None and math.isfinite(m.report.best_val_ppl)


def test_interrupt_while_tokenizing_propagates_and_leaves_models_alone(tiny_text, tiny_model, monkeypatch,
                                                                      interrupt_at):
    from lm_magics.engine.tokenizer import Tokenizer

    before = tiny_model.next_words("the cat", k=5)
    interrupt_at(Tokenizer, "encode_line", 3)
    with pytest.raises(KeyboardInterrupt):
        lm.train(tiny_text, init=tiny_model, epochs=1)
    monkeypatch.undo()
    assert tiny_model.next_words("the cat", k=5) == before
    assert lm.train(tiny_text, init=tiny_model, epochs=1).vocab == tiny_model.vocab   # and training works again


def test_interrupt_while_copying_the_best_weights_keeps_the_previous_best():
    from lm_magics.engine.model import LSTMLanguageModel

    net = LSTMLanguageModel(10, 4, 8, 1, 0.0, False, False)
    best = training.BestWeights(patience=2)
    best.update(net, 1, 50.0)

    class CutShort(torch.nn.Module):
        def state_dict(self, *a, **k):      # Ctrl-C in the middle of taking the snapshot
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        best.update(CutShort(), 2, 40.0)
    assert (best.ppl, best.epoch) == (50.0, 1) and best.state.keys() == net.state_dict().keys()


def test_second_interrupt_while_measuring_leaves_the_perplexity_unknown(tiny_text, tiny_options, monkeypatch):
    def always(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "evaluate", always)   # Ctrl-C in validation, and again while measuring
    try:
        m = lm.train(tiny_text, **tiny_options)
    except KeyboardInterrupt:
        pytest.fail("a second Ctrl-C while measuring lost the run")
    assert m.interrupted and m.report.best_val_ppl is None and m.meta["val_ppl"] is None



def test_row_adam_makes_sparse_adams_updates():
    """RowAdam (the embedding's optimizer) gives torch.optim.SparseAdam's weights, step after step, with
    repeated and missing rows and a changing lr."""
    torch.manual_seed(0)
    ours = torch.nn.Embedding(30, 5, sparse=True)
    ref = torch.nn.Embedding(30, 5, sparse=True)
    ref.load_state_dict(ours.state_dict())
    start = ours.weight.detach().clone()
    a = training.RowAdam(ours.weight, lr=0.01, betas=(0.7, 0.95))
    b = torch.optim.SparseAdam([ref.weight], lr=0.01, betas=(0.7, 0.95))
    for step in range(6):
        ids = torch.randint(0, 12, (7, 3))                         # rows 12-29 never get a gradient
        target = torch.randn(7, 3, 5)
        for emb, opt in ((ours, a), (ref, b)):
            opt.param_groups[0]["lr"] = 0.01 * (step + 1)
            opt.zero_grad()
            (emb(ids) - target).square().sum().backward()
            opt.step()
        assert torch.allclose(ours.weight, ref.weight, atol=1e-6), step
    moved = (ours.weight.detach() != start).any(dim=1)
    assert moved[:12].all() and not moved[12:].any()                # lazy: unseen rows keep their values


def test_plain_sgd_makes_torch_sgds_updates():
    """PlainSGD (the cell tier's optimizer) gives torch.optim.SGD's weights, step after step, with a
    changing lr and a parameter that gets no gradient."""
    torch.manual_seed(0)
    ours, ref = torch.nn.LSTM(4, 6), torch.nn.LSTM(4, 6)
    ref.load_state_dict(ours.state_dict())
    unused = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))]
    a = training.PlainSGD(list(ours.parameters()) + unused[:1], lr=1.0)
    b = torch.optim.SGD(list(ref.parameters()) + unused[1:], lr=1.0)
    for step in range(5):
        x = torch.randn(7, 2, 4)
        for net, opt in ((ours, a), (ref, b)):
            opt.param_groups[0]["lr"] = 0.5 * (step + 1)
            opt.zero_grad()
            net(x)[0].square().sum().backward()
            opt.step()
        for p, q in zip(ours.parameters(), ref.parameters()):
            assert torch.equal(p, q), step
    assert torch.equal(unused[0], torch.ones(3))


def test_a_cell_trains_without_importing_torchs_compiler(tmp_path):
    """torch.optim's first step imports torch._dynamo (about 1 s, more than a cell's whole training run):
    the default cell optimizer must not pay it. In a fresh process, as a notebook's first %%lm_train."""
    code = ("import sys, lm_magics as lm\n"
            "lm.train('the cat sat on the mat.\\nthe dog sat on the log.\\n' * 20, epochs=1, seed=0)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_model_worse_than_guessing_is_a_diverged_run(tiny_text):
    """lr=1e30 either makes the loss NaN during the loop (raised there) or, with the loss kept finite by
    clipping, leaves a model worse than guessing or with NaN weights (raised after it): which one depends
    on the CPU (AMD and Intel round differently); the outcome is the same TrainingDiverged."""
    with pytest.raises(lm.TrainingDiverged, match="lower lr|smaller lr") as caught:
        lm.train(tiny_text, epochs=1, seed=0, baseline=False, lr=1e30)          # SGD at an absurd step
    assert isinstance(caught.value, lm.LMError) and "\n" not in str(caught.value)
    good = lm.train(tiny_text, epochs=3, seed=0, baseline=False)
    assert good.report.best_val_ppl < len(good.tokenizer)


def test_divergence_rule_decides_from_the_report(tiny_model):
    from lm_magics.engine.outcome import divergence, worse_than_guessing

    V = len(tiny_model.tokenizer)
    report = copy.copy(tiny_model.report)
    assert divergence(report, tiny_model.net, V) is None
    report.best_val_ppl = V * 1.2          # just above guessing (tiny texts end there): kept, with a note
    assert divergence(report, tiny_model.net, V) is None
    assert "worse than guessing" in worse_than_guessing(report, V)
    report.best_val_ppl = V * 3.0
    assert "worse than guessing" in divergence(report, tiny_model.net, V)
    report.history = []                    # not validated (stopped after a few steps): not judged by ppl
    assert divergence(report, tiny_model.net, V) is None
    net = copy.deepcopy(tiny_model.net)
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("nan")
    assert "NaN" in divergence(report, net, V)


@pytest.mark.parametrize("hidden, batch, vocab, one", [
    (128, 16, 1_000, True), (32, 4, 200, True),
    (200, 16, 800, False),                     # 3,200 units x streams: both cores
    (200, 9, 7_203, False),                    # a column's output layer: both cores (1.5x faster)
])
def test_one_thread_only_for_tiny_networks_over_small_vocabularies(hidden, batch, vocab, one):
    assert training.one_thread_is_enough(hidden, batch, vocab) is one
