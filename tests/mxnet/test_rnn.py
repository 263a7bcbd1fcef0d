"""MXNet's RNN operator (LSTM, GRU; stacked, bidirectional, begin states) and an LSTM language
model against MXNet itself: forward outputs and final states, and the gradients of training."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

# "mxnet.gluon", not "mxnet": where MXNet is absent, this folder (tests/mxnet, on sys.path through
# tests/) would import as an empty namespace package named mxnet.
pytest.importorskip("mxnet.gluon", reason="MXNet 1.9 lives in its own environment (scripts/env_mxnet.sh)")
import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402

import sol.mxnet  # noqa: E402
from sol.plugin_api import SolFallbackWarning, UnsupportedOpError  # noqa: E402

from mx_helpers import assert_close  # noqa: E402


class Recurrent(gluon.HybridBlock):
    """A 2-layer bidirectional LSTM with given begin states (time-major) and a 2-layer GRU with
    Gluon's zero begin state (batch-major): every layout and state path in one compile."""

    def __init__(self) -> None:
        super().__init__()
        with self.name_scope():
            self.lstm = gluon.rnn.LSTM(6, num_layers=2, bidirectional=True, input_size=5)
            self.gru = gluon.rnn.GRU(4, num_layers=2, layout="NTC", input_size=5)

    def hybrid_forward(self, F, x, h, c):  # noqa: ANN001, ANN201, N803
        y, (h1, c1) = self.lstm(x, [h, c])
        z = self.gru(F.swapaxes(x, 0, 1))
        return y, [h1, c1], z


def _close_init(block: gluon.Block) -> None:
    mx.random.seed(3)
    block.initialize(mx.init.Uniform(0.4))
    for name, p in block.collect_params().items():  # non-zero biases: MXNet initializes them to 0
        if name.endswith("bias"):
            p.set_data(mx.nd.random.uniform(-0.3, 0.3, shape=p.shape))


def test_lstm_gru_layers_match_mxnet() -> None:
    net = Recurrent()
    _close_init(net)
    x = mx.nd.random.normal(shape=(7, 3, 5))
    h, c = (mx.nd.random.normal(shape=(4, 3, 6)) for _ in range(2))
    want = net(x, h, c)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)
        opt = sol.mxnet.optimize(net, x, h, c)
    got = opt(x, h, c)
    # the nesting of MXNet's result: (y, [h, c], z)
    assert isinstance(got, tuple) and isinstance(got[1], list) and len(got[1]) == 2
    flat = [got[0], *got[1], got[2]]
    assert_close(flat, [want[0], *want[1], want[2]], names=["lstm y", "lstm h", "lstm c", "gru y"])


def test_rnn_symbol_with_a_flat_parameter_vector() -> None:
    """A Symbol model's RNN reads one flat ``parameters`` variable (sliced per layer and direction)
    and returns its states (``state_outputs``)."""
    hidden, inputs = 5, 3
    data, params, state = mx.sym.var("data"), mx.sym.var("rnn_params"), mx.sym.var("rnn_state")
    sym = mx.sym.RNN(data, params, state, state_size=hidden, num_layers=2, bidirectional=True, mode="gru",
                     state_outputs=True)
    size = 2 * (3 * hidden * inputs + 3 * hidden * hidden) + 2 * (3 * hidden * 2 * hidden + 3 * hidden * hidden) \
        + 4 * 2 * 3 * hidden
    mx.random.seed(5)
    values = {"rnn_params": mx.nd.random.uniform(-0.4, 0.4, shape=(size,)),
              "rnn_state": mx.nd.random.normal(shape=(4, 2, hidden))}
    x = mx.nd.random.normal(shape=(6, 2, inputs))
    want = sym.eval(ctx=mx.cpu(), data=x, **values)
    # the state is a parameter here: the model's own begin state
    opt = sol.mxnet.optimize(sym, x, params=values, data_names=["data"])
    assert not opt.fallback_ops
    assert_close(opt(x), list(want))


class LanguageModel(gluon.HybridBlock):
    """Embedding -> 2-layer LSTM -> Dense over the vocabulary (a word-level language model)."""

    def __init__(self, vocab: int = 20, embed: int = 8, hidden: int = 12) -> None:
        super().__init__()
        with self.name_scope():
            self.embed = gluon.nn.Embedding(vocab, embed)
            self.lstm = gluon.rnn.LSTM(hidden, num_layers=2, input_size=embed)
            self.decoder = gluon.nn.Dense(vocab, flatten=False, in_units=hidden)

    def hybrid_forward(self, F, tokens):  # noqa: ANN001, ANN201, N803
        return self.decoder(self.lstm(self.embed(tokens)))


def _tokens(steps: int, batch: int, seed: int) -> mx.nd.NDArray:
    rng = np.random.default_rng(seed)
    return mx.nd.array(rng.integers(0, 20, size=(steps, batch)))


def test_lstm_language_model_forward_and_gradients() -> None:
    ref, net = LanguageModel(), LanguageModel()
    _close_init(ref)
    _close_init(net)
    tokens = _tokens(9, 4, 0)
    opt = sol.mxnet.optimize(net, tokens, fallback=False)
    assert_close(opt(tokens), ref(tokens))
    t1 = _tokens(9, 1, 1)  # batch 1: a variant compiled on first use
    assert_close(opt(t1), ref(t1))
    # training: gradients of every parameter, then 5 SGD steps following MXNet's loss curve
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    target = _tokens(9, 4, 2)
    trainers = [gluon.Trainer(b.collect_params(), "sgd", {"learning_rate": 0.5}) for b in (ref, opt)]
    curves: list[list[float]] = [[], []]
    for step in range(5):
        for k, block in enumerate((ref, opt)):
            with autograd.record():
                loss = loss_fn(block(tokens), target)
            loss.backward()
            curves[k].append(float(loss.mean().asscalar()))
            if step == 0:
                grads = [p.grad().asnumpy() for p in block.collect_params().values()]
                if k == 0:
                    want_grads = grads
                else:
                    names = list(block.collect_params())
                    for name, g, w in zip(names, grads, want_grads):
                        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6, err_msg=name)
            trainers[k].step(tokens.shape[1])
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-4)
    assert curves[0][-1] < curves[0][0]  # it learns: the check compares a moving curve


def test_unsupported_rnn_mode_falls_back_or_raises() -> None:
    """A vanilla (tanh) RNN has no sol op: MXNet runs it, one warning names it; fallback=False raises."""
    net = gluon.rnn.RNN(4, activation="tanh", input_size=3)
    _close_init(net)
    x = mx.nd.random.normal(shape=(5, 2, 3))
    with pytest.warns(SolFallbackWarning, match=r"RNN \(node '.*rnn0'\): RNN mode='rnn_tanh'"):
        opt = sol.mxnet.optimize(net, x)
    assert opt.fallback_ops == ["RNN"]
    assert_close(opt(x), net(x))
    with pytest.raises(UnsupportedOpError, match="rnn_tanh"):
        sol.mxnet.optimize(net, x, fallback=False)
