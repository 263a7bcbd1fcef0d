"""Inference programs hold the weights compiled in; every way an MXNet user changes a parameter
must reach the next call (a stale program would be a silently wrong result).

One optimized block per test module where possible (one compile; later builds come from the
compile cache). Each case changes the weights, checks that the change moves MXNet's own output
(so a stale program could not pass), and that sol's next output equals MXNet's."""

from __future__ import annotations

import numpy as np
import pytest

# "mxnet.gluon", not "mxnet": where MXNet is absent, this folder (tests/mxnet, on sys.path through
# tests/) would import as an empty namespace package named mxnet.
pytest.importorskip("mxnet.gluon", reason="MXNet 1.9 lives in its own environment (scripts/env_mxnet.sh)")
import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402

import sol.mxnet  # noqa: E402
from sol.plugin_api import SolFallbackWarning  # noqa: E402

from mx_helpers import Cases, assert_close, small_net  # noqa: E402


@pytest.fixture(scope="module")
def x() -> object:
    mx.random.seed(5)
    return mx.nd.random.uniform(-1, 1, shape=(4, 3, 8, 8))


@pytest.fixture(scope="module")
def pair(x: object) -> tuple[object, object]:
    """(net, its optimized block): the tests below change ``net``'s parameters in turn."""
    net = small_net()
    net(x)
    return net, sol.mxnet.optimize(net, x, device="x86")


def _changes_and_matches(net: object, opt: object, x: object, before: np.ndarray) -> np.ndarray:
    """MXNet's output moved away from ``before`` and sol's equals it; returns it."""
    want = net(x)
    assert not np.allclose(want.asnumpy(), before, rtol=1e-3, atol=1e-4), "the change must move MXNet's output"
    assert_close(opt(x), want, rtol=1e-4, atol=1e-5)
    return want.asnumpy()  # type: ignore[no-any-return]


def test_weights_are_compiled_in(pair: tuple, x: object) -> None:
    """The premise of this file: the inference program takes the data only (weights held)."""
    net, opt = pair
    assert [t.shape for t in opt.programs[0].input_types] == [tuple(x.shape)]
    assert_close(opt(x), net(x))


def test_set_data_and_data_slice_assignment(pair: tuple, x: object) -> None:
    net, opt = pair
    before = opt(x).asnumpy()
    w = net[0].weight
    w.set_data(w.data() * 1.5)
    before = _changes_and_matches(net, opt, x, before)
    w.data()[:] = w.data() * -0.5 + 0.01  # in place, through the array itself
    before = _changes_and_matches(net, opt, x, before)
    net[4].bias.data()[1:3] = 2.0  # a slice of a small parameter
    before = _changes_and_matches(net, opt, x, before)
    net[5].weight.data()[:] = np.ones(net[5].weight.shape, "float32")  # a NumPy value copied in
    _changes_and_matches(net, opt, x, before)


def test_batchnorm_statistics_set_and_updated_by_a_training_mode_call(pair: tuple, x: object) -> None:
    net, opt = pair
    before = opt(x).asnumpy()
    net[1].running_mean.set_data(mx.nd.random.uniform(-0.5, 0.5, shape=(6,)))
    net[1].running_var.data()[:] = mx.nd.random.uniform(0.2, 2.0, shape=(6,))
    before = _changes_and_matches(net, opt, x, before)
    # a training-mode call outside record() updates the running statistics (sol's own program)
    with autograd.train_mode():
        opt(x * 3.0 + 1.0)
    _changes_and_matches(net, opt, x, before)


def test_trainer_step_plain_and_on_kvstore(pair: tuple, x: object) -> None:
    net, opt = pair
    label = mx.nd.array([0, 1, 2, 3])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    before = opt(x).asnumpy()
    for kwargs in ({}, {"kvstore": mx.kv.create("local"), "update_on_kvstore": True}):  # a kvstore object: one
        # context alone makes no kvstore from a name
        trainer = gluon.Trainer(opt.collect_params(), "sgd", {"learning_rate": 0.5}, **kwargs)
        with autograd.record():
            loss = loss_fn(opt(x), label)
        loss.backward()
        trainer.step(x.shape[0])  # asynchronous: the next call must wait for it
        before = _changes_and_matches(net, opt, x, before)


def test_load_parameters_and_force_reinit(pair: tuple, x: object, tmp_path: object) -> None:
    net, opt = pair
    before = opt(x).asnumpy()
    other = small_net()
    other(x)
    path = str(tmp_path / "other.params")  # type: ignore[operator]
    other.save_parameters(path)
    net.load_parameters(path)
    before = _changes_and_matches(net, opt, x, before)
    net.initialize(mx.init.Uniform(0.3), force_reinit=True)  # new arrays, not writes into the old ones
    _changes_and_matches(net, opt, x, before)


def test_cast_and_context_move(x: object) -> None:
    net = small_net()
    net(x)
    opt = sol.mxnet.optimize(net, x, device="x86")
    assert_close(opt(x), net(x))
    # cast: MXNet then needs float64 inputs, and so does sol (float32 ones raise MXNet's error)
    net.cast("float64")
    x64 = x.astype("float64")
    with pytest.warns(SolFallbackWarning, match="float64"):  # x86 has no float64 convolution: MXNet runs it
        got = opt(x64)
    assert_close(got, net(x64), rtol=1e-10, atol=1e-12)
    with pytest.raises(mx.base.MXNetError):
        opt(x)
    net.cast("float32")
    # another CPU context: new arrays there, changed afterwards
    net.collect_params().reset_ctx(mx.cpu(1))
    x1 = x.as_in_context(mx.cpu(1))
    before = net(x1)
    assert_close(opt(x1), before)
    net[0].weight.set_data(net[0].weight.data(mx.cpu(1)) * 2.0)
    assert opt(x1).context == mx.cpu(1)
    _changes_and_matches(net, opt, x1, before.asnumpy())


def test_other_shapes_see_the_change_too(pair: tuple, x: object) -> None:
    net, opt = pair
    small = x[:2]
    assert_close(opt(small), net(small))  # a second variant
    net[4].weight.set_data(net[4].weight.data() * 0.25)
    assert_close(opt(small), net(small))
    assert_close(opt(x), net(x))


def test_no_rebuild_without_a_change(pair: tuple, x: object) -> None:
    """MXNet bumps the write counters of a BatchNorm's statistics whenever it runs the original
    block, and a write of equal values bumps them too: the program must stay (a rebuild costs a
    plan and a load)."""
    net, opt = pair
    opt(x)
    program = opt.programs[0]
    net(x).wait_to_read()  # MXNet runs the original block
    net[0].weight.data()[:] = net[0].weight.data().copy()  # the same values written again
    assert_close(opt(x), net(x))
    assert opt.programs[0] is program


def test_outputs_are_not_overwritten_by_the_next_call(pair: tuple, x: object) -> None:
    """Outputs share the program's memory (DLPack): a later call must not write into them."""
    net, opt = pair
    first = opt(x)
    kept = first.asnumpy().copy()
    opt(x * 2.0).wait_to_read()
    np.testing.assert_array_equal(first.asnumpy(), kept)


def test_live_weights_option_reads_them_at_every_call(x: object) -> None:
    net = small_net()
    net(x)
    opt = sol.mxnet.optimize(net, x, device="x86", live_weights=True)
    assert len(opt.programs[0].input_types) > 1  # the parameters are inputs
    before = opt(x).asnumpy()
    net[0].weight.set_data(net[0].weight.data() * 3.0)
    _changes_and_matches(net, opt, x, before)


def test_partly_compiled_block_sees_changes() -> None:
    """The compiled parts hold the weights; the operator MXNet runs reads its parameter itself."""
    block = Cases(lambda F, x, w, v: [F.FullyConnected(F.sin(F.FullyConnected(x, w, num_hidden=4, no_bias=True)),
                                                       v, num_hidden=3, no_bias=True)],
                  {"w": (4, 6), "v": (3, 4)})
    block.initialize()
    x = mx.nd.random.normal(shape=(3, 6))
    with pytest.warns(SolFallbackWarning, match="sin"):
        opt = sol.mxnet.optimize(block, x, device="x86")
    assert_close(opt(x), block(x))
    before = opt(x)[0].asnumpy()
    block.w.set_data(block.w.data() * 2.0)
    want = block(x)[0].asnumpy()
    assert not np.allclose(want, before)
    assert_close(opt(x), block(x))
    block.v.data()[:] = 0.5
    assert_close(opt(x), block(x))


def test_where_the_version_reader_cannot_be_built_weights_are_read_at_every_call(
        x: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """MXNet's write counters need a small function compiled against MXNet's headers; where it
    cannot be built (no compiler, headers that do not compile: simulated by a broken source),
    the block says so once and reads the weights at every call (exact, slower)."""
    from sol_mxnet import versions

    monkeypatch.setattr(versions, "_TRIED", False)
    monkeypatch.setattr(versions, "_READER", None)
    monkeypatch.setattr(versions, "SOURCE", versions.SOURCE + "\n#error sol test: this build must fail\n")
    net = small_net()
    net(x)
    with caplog.at_level("WARNING", logger="sol"):
        opt = sol.mxnet.optimize(net, x, device="x86")
    assert "cannot read MXNet's weight versions" in caplog.text and "at every call" in caplog.text
    assert len(opt.programs[0].input_types) > 1  # the parameters are inputs
    before = opt(x).asnumpy()
    net[0].weight.set_data(net[0].weight.data() * 3.0)
    _changes_and_matches(net, opt, x, before)
