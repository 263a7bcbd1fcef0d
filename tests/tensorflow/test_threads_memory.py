"""TensorFlow tensors cross into sol without copies where they can (DLPack, x86), programs run
on the caller's thread (no worker thread of the frontend's), and one optimized model called from
four threads at once, inference and training, gives TensorFlow's results."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers as L
from tf_helpers import assert_close

import sol
from sol.memory import Buffer
from sol_tensorflow import variants

RTOL = 1e-4


def _conv_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(6, 3, padding="same", activation="relu"),
                             L.GlobalAveragePooling2D(), L.Dense(4)])  # no BatchNorm: training calls change no state


def test_eager_tensors_cross_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _conv_model(1)
    x = tf.random.normal((2, 8, 8, 3), seed=1)
    opt = sol.optimize(model, x, device="x86")
    program = opt.program
    seen: list[list[int]] = []
    real = program._run_into

    def run_into(ins: list[Buffer], outs: list[Buffer]) -> None:
        seen.append([b.ptr for b in ins])
        real(ins, outs)

    monkeypatch.setattr(program, "_run_into", run_into)
    out = opt(x)
    assert_close(out.numpy(), model(x).numpy(), RTOL)
    assert seen == [[np.from_dlpack(x).__array_interface__["data"][0]]]  # the tensor's own memory
    # an aligned result goes to TensorFlow in place; bool (no DLPack in TensorFlow) is copied
    a = variants.aligned_empty((3, 5), np.dtype("float32"))
    a[...] = 2
    t = variants.to_tensor(a)
    assert np.from_dlpack(t).__array_interface__["data"][0] == a.__array_interface__["data"][0]
    flags = variants.to_tensor(np.array([True, False]))
    assert flags.dtype == tf.bool and flags.numpy().tolist() == [True, False]


def test_the_frontend_sets_no_openmp_policy() -> None:
    """The OpenMP wait policy is the x86 device's (sol_x86.runtime.openmp_wait_policy), which
    set a bounded spin before loading its first library because TensorFlow is in this process
    (unless the user chose a policy or a spin count)."""
    from sol_x86 import runtime

    model = _conv_model(2)
    sol.optimize(model, np.zeros((1, 8, 8, 3), "float32"), device="x86")(np.zeros((1, 8, 8, 3), "float32"))
    policy = runtime.openmp_wait_policy()
    if os.environ.get("OMP_WAIT_POLICY"):
        assert policy == os.environ["OMP_WAIT_POLICY"]
    else:
        assert policy == f"GOMP_SPINCOUNT={runtime.TF_SPINCOUNT}"


def test_the_bounded_spin_is_set_only_where_the_user_chose_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from sol_x86 import runtime

    for chosen in ({}, {"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "5"}):
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
        for k, v in chosen.items():
            monkeypatch.setenv(k, v)
        policy = runtime.openmp_wait_policy()  # TensorFlow is loaded in this process
        if not chosen:
            assert policy == f"GOMP_SPINCOUNT={runtime.TF_SPINCOUNT}" and "OMP_WAIT_POLICY" not in os.environ
        else:
            assert {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} == {
                "OMP_WAIT_POLICY": chosen.get("OMP_WAIT_POLICY"), "GOMP_SPINCOUNT": chosen.get("GOMP_SPINCOUNT")}


def test_four_threads_at_once_inference_and_training() -> None:
    """Inference and gradient calls on one optimized model from four threads at once (none of
    them the thread that compiled the programs): TensorFlow's results and gradients. Training
    programs used to run on one worker thread of the frontend (a oneDNN convolution with
    run-time weights was said to crash on another thread than its creator's)."""
    model = _conv_model(3)
    opt = sol.optimize(model, np.zeros((2, 8, 8, 3), "float32"), device="x86")
    xs = [tf.constant(np.random.default_rng(i).standard_normal((2, 8, 8, 3)).astype("float32")) for i in range(4)]

    def grads(fn: Any, x: tf.Tensor) -> list[np.ndarray]:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(fn(x, training=True) ** 2)
        return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]

    want = [(model(x).numpy(), grads(model, x)) for x in xs]
    grads(opt, xs[0])  # compiled on this thread; the threads below run what it compiled
    opt(xs[0])
    start = threading.Barrier(4)
    callers = set()

    def work(i: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        start.wait()
        callers.add(threading.get_ident())
        return [(opt(xs[i]).numpy(), grads(opt, xs[i])) for _ in range(5)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    assert threading.get_ident() not in callers
    for (out_ref, g_ref), got in zip(want, results):
        for out, gs in got:
            assert_close(out, out_ref, RTOL)
            for g, r in zip(gs, g_ref):
                assert_close(g, r, 1e-3)
