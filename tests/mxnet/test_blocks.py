"""Import paths (Gluon block, saved symbol + params, Symbol with params, Module), the wrapper
(a HybridBlock inside a larger hybridized network, the original Parameters, bad input), training
through autograd.record() (gradients, BatchNorm running statistics, Dropout, an SGD loss curve)
and the fallback, on x86."""

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

from mx_helpers import Cases, assert_close, copy_params, small_net  # noqa: E402


@pytest.fixture(scope="module")
def x() -> object:
    mx.random.seed(3)
    return mx.nd.random.uniform(-1, 1, shape=(4, 3, 8, 8))


@pytest.fixture(scope="module")
def trained_pair(x: object) -> tuple[object, object, object]:
    """(net, twin with the same weights, sol's block of net): one compile for the module."""
    net, twin = small_net(), small_net()
    net(x)
    twin(x)
    copy_params(net, twin)
    return net, twin, sol.mxnet.optimize(net, x, device="x86")


# --- import -------------------------------------------------------------------------------------

def test_symbol_file_params_file_and_symbolblock_imports(tmp_path: object, x: object) -> None:
    net = small_net()
    net.hybridize()
    want = net(x)
    prefix = str(tmp_path / "model")  # type: ignore[operator]
    net.export(prefix, epoch=0)
    block = gluon.SymbolBlock.imports(f"{prefix}-symbol.json", ["data"], f"{prefix}-0000.params")
    assert_close(sol.mxnet.optimize(block, x, device="x86")(x), want)
    # the same pair as a Symbol with its parameters (mx.model.load_checkpoint's form) and as a Module
    sym, arg_params, aux_params = mx.model.load_checkpoint(prefix, 0)
    assert_close(sol.mxnet.optimize(sym, x, params=(arg_params, aux_params), device="x86")(x), want)
    mod = mx.mod.Module(sym, data_names=["data"], label_names=None)
    mod.bind(data_shapes=[("data", x.shape)], for_training=False)
    mod.set_params(arg_params, aux_params)
    assert_close(sol.mxnet.optimize(mod, x, device="x86")(x), want)


def test_symbol_without_params_says_what_it_needs(x: object) -> None:
    with pytest.raises(TypeError, match="params="):
        sol.mxnet.optimize(mx.sym.relu(mx.sym.var("data")), x, device="x86")


# --- the wrapper --------------------------------------------------------------------------------

def test_parameters_are_the_original_ones(trained_pair: tuple) -> None:
    net, _, opt = trained_pair
    assert isinstance(opt, gluon.HybridBlock)
    originals = list(net.collect_params().values())
    assert all(any(p is q for q in originals) for p in opt.collect_params().values())
    assert len(list(opt.collect_params().values())) == len(originals)


def test_inside_a_larger_hybridized_network(trained_pair: tuple, x: object) -> None:
    net, twin, opt = trained_pair
    outer, ref = gluon.nn.HybridSequential(), gluon.nn.HybridSequential()
    outer.add(opt, gluon.nn.Dense(3, in_units=5))
    ref.add(twin, gluon.nn.Dense(3, in_units=5))
    outer[1].initialize()
    ref[1].initialize()
    copy_params(outer[1], ref[1])
    for block in (outer, ref):
        block.hybridize()
    assert_close(outer(x), ref(x))
    assert_close(outer(x), ref(x))  # the cached graph, second call


def test_weights_changed_after_optimize_are_used(x: object) -> None:
    net = small_net()
    net(x)
    opt = sol.mxnet.optimize(net, x, device="x86")
    w = net[0].weight
    w.set_data(w.data() * 2)
    assert_close(opt(x), net(x))


def test_bad_input_raises_mxnet_error(trained_pair: tuple, x: object) -> None:
    _, _, opt = trained_pair
    with pytest.raises(mx.base.MXNetError, match="expected dtype float32, got float64"):
        opt(x.astype("float64"))
    with pytest.raises(mx.base.MXNetError, match=r"expected rank 4 with shape \(4, 3, 8, 8\), got rank 3"):
        opt(x[0])
    with pytest.raises(mx.base.MXNetError, match="expected 1 input"):
        opt(x, x)


def test_other_batch_compiles_a_variant_and_dynamic_false_refuses(trained_pair: tuple, x: object) -> None:
    net, _, opt = trained_pair
    assert_close(opt(x[:2]), net(x[:2]))
    fixed = sol.mxnet.optimize(net, x, device="x86", dynamic=False)
    with pytest.raises(mx.base.MXNetError, match=r"expected shape \(4, 3, 8, 8\), got \(2, 3, 8, 8\)"):
        fixed(x[:2])


# --- training -----------------------------------------------------------------------------------

def _grads(block: gluon.Block) -> list[np.ndarray | None]:
    return [p.grad().asnumpy() if p.grad_req != "null" else None for p in block.collect_params().values()]


def test_gradients_and_running_statistics_match_mxnet(x: object) -> None:
    net, twin = small_net(), small_net()
    net(x)
    twin(x)
    copy_params(net, twin)
    opt = sol.mxnet.optimize(net, x, device="x86")
    xs = []
    for block in (opt, twin):
        xi = x.copy()
        xi.attach_grad()
        with autograd.record():
            loss = (block(xi) ** 2).sum()
        loss.backward()
        xs.append(xi.grad.asnumpy())
    np.testing.assert_allclose(xs[0], xs[1], rtol=1e-4, atol=1e-6)
    for name, g, w in zip(net.collect_params(), _grads(net), _grads(twin)):
        if g is not None:
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(w).max())), err_msg=name)
    # BatchNorm's running statistics moved as MXNet moves them (momentum 0.9, biased batch variance)
    for name in ("running_mean", "running_var"):
        mine, theirs = getattr(net[1], name).data().asnumpy(), getattr(twin[1], name).data().asnumpy()
        assert not np.allclose(mine, np.zeros_like(mine) if name == "running_mean" else np.ones_like(mine))
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6, err_msg=name)


def test_dropout_in_training_mode(x: object) -> None:
    net = small_net(dropout=0.5)
    net(x)
    opt = sol.mxnet.optimize(net, x, device="x86")
    with autograd.record():
        out = opt(x)
        hidden = opt.model[4](opt.model[3](opt.model[2](opt.model[1](opt.model[0](x)))))
    assert_close(opt(x), net(x))  # inference: no dropout
    # training mode: the 16 dropped units give outputs that differ from inference, and differ between calls
    with autograd.record():
        a, b = opt(x), opt(x)
    assert not np.allclose(a.asnumpy(), b.asnumpy())
    assert out.shape == (4, 5) and hidden.shape == (4, 16)


def test_dropout_mask_and_scaling_match_mxnet_semantics() -> None:
    block = Cases(lambda F, x: [F.Dropout(x, p=0.25) * 1.0])
    block.initialize()
    x = mx.nd.ones((64, 32))
    opt = sol.mxnet.optimize(block, x, device="x86")
    x.attach_grad()
    with autograd.record():
        (y,) = opt(x)
    y.backward()
    y, g = y.asnumpy(), x.grad.asnumpy()
    kept = y != 0
    assert 0.6 < kept.mean() < 0.9
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_allclose(g, y, rtol=1e-6)  # the gradient is the same scaled mask


def test_sgd_loss_curve_matches_mxnet(x: object) -> None:
    net, twin = small_net(), small_net()
    net(x)
    twin(x)
    copy_params(net, twin)
    opt = sol.mxnet.optimize(net, x, device="x86")
    label = mx.nd.array([0, 1, 2, 3])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    curves = []
    for block, params in ((opt, opt.collect_params()), (twin, twin.collect_params())):
        trainer = gluon.Trainer(params, "sgd", {"learning_rate": 0.05})
        curve = []
        for _ in range(50):
            with autograd.record():
                loss = loss_fn(block(x), label)
            loss.backward()
            trainer.step(x.shape[0])
            curve.append(float(loss.mean().asscalar()))
        curves.append(curve)
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-3, atol=1e-5)
    assert curves[0][-1] < curves[0][0] * 0.5
    assert_close(opt(x), twin(x), rtol=1e-3, atol=1e-4)  # inference after training reads the trained weights


# --- fallback -----------------------------------------------------------------------------------

def _with_sin() -> Cases:
    return Cases(lambda F, x, w: [F.relu(F.sin(F.FullyConnected(x, w, num_hidden=4, no_bias=True)) + 1.0)],
                 {"w": (4, 6)})


def test_fallback_runs_the_operator_in_mxnet_with_one_warning() -> None:
    block = _with_sin()
    block.initialize()
    x = mx.nd.random.normal(shape=(3, 6))
    with pytest.warns(SolFallbackWarning, match=r"sin \(node '.*sin.*'\)") as record:
        opt = sol.mxnet.optimize(block, x, device="x86")
    assert len([w for w in record if issubclass(w.category, SolFallbackWarning)]) == 1
    assert opt.fallback_ops == ["sin"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)
        assert_close(opt(x), block(x))
        assert_close(opt(x[:2]), block(x[:2]))  # another shape: no second warning
    # training through a partly compiled block: MXNet trains the whole block, with its own warning
    with pytest.warns(SolFallbackWarning, match="MXNet runs the whole block"):
        with autograd.record():
            y = opt(x)[0]
    assert_close(y, block(x)[0])


def test_fallback_false_names_the_operator() -> None:
    block = _with_sin()
    block.initialize()
    with pytest.raises(UnsupportedOpError, match=r"sin \(node '.*sin.*'\)"):
        sol.mxnet.optimize(block, mx.nd.ones((3, 6)), device="x86", fallback=False)
