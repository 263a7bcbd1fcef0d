"""Keras 3 writes inference BatchNormalization as mul/add on per-channel constants; core's
fold_affine pass folds them into the convolution or dense layer before them."""

from __future__ import annotations

import keras
import numpy as np
from tf_helpers import assert_close

import sol

L = keras.layers


def test_keras_conv_and_dense_batchnorm_are_absorbed_and_match(device: str) -> None:
    keras.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.Input((8, 8, 3)), L.Conv2D(6, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
        L.Conv2D(4, 3, use_bias=False), L.BatchNormalization(epsilon=1e-5), L.Activation("relu"),
        L.GlobalAveragePooling2D(), L.Dense(5), L.BatchNormalization()])
    rng = np.random.default_rng(5)
    for layer in model.layers:  # non-trivial statistics, as after training
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(0, 1, c), rng.normal(0, 1, c),
                               rng.uniform(0.5, 2, c)])
    x = rng.uniform(-1, 1, (2, 8, 8, 3)).astype("float32")
    plan = sol.explain(model, x, device=device).plan
    bn_ops = [n for g in plan.groups for n in g.nodes if n.op != "add" and "batch_normalization" in (n.source or "")]
    assert not bn_ops, bn_ops  # no separate mul/sub for any BatchNormalization: only the folded bias add
    ops = [n.op for n in plan.graph.nodes]
    assert ops.count("mul") == 0 and ops.count("add") == 3, ops
    opt = sol.optimize(model, x, device=device, fallback=False)
    assert_close(opt(x).numpy(), model(x, training=False).numpy(), 1e-4)
