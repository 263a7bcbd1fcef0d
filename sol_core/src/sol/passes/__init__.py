"""Core's graph passes, registered through the builtin plugin like any plugin's passes."""

from __future__ import annotations

from sol.passes import affine, batchnorm, batchnorm_elementwise, canonicalize, commute, empty, recurrent, simplify
from sol.passes.manager import PassRegistry


def builtin_passes(registry: PassRegistry) -> None:
    # First: no later pass, nor the planner, ever sees a node that reads or writes no elements.
    registry.register("fold_empty", empty.fold_empty, stage="canonicalize")
    registry.register("split_bias", canonicalize.split_bias, stage="canonicalize")
    registry.register("fuse_silu", canonicalize.fuse_silu, stage="canonicalize")
    registry.register("remove_stop_gradient", canonicalize.remove_stop_gradient, stage="canonicalize")
    registry.register("remove_identity", canonicalize.remove_identity, stage="canonicalize")
    registry.register("hoist_input_projection", recurrent.hoist_input_projection, stage="canonicalize")
    registry.register("dead_code", simplify.dead_code, stage="simplify")
    registry.register("constant_fold", simplify.constant_fold, stage="simplify")
    registry.register("merge_reshapes", simplify.merge_reshapes, stage="simplify")
    registry.register("merge_transposes", simplify.merge_transposes, stage="simplify")
    registry.register("cse", simplify.common_subexpressions, stage="simplify")
    registry.register("remove_dropout", canonicalize.remove_dropout, stage="inference", inference_only=True)
    registry.register("fold_batchnorm", batchnorm.fold_into_producer, stage="inference", inference_only=True)
    registry.register("batchnorm_to_affine", batchnorm.to_affine, stage="inference", inference_only=True)
    registry.register("fold_params", simplify.fold_params, stage="inference", inference_only=True)
    registry.register("fold_affine", affine.fold_into_producer, stage="inference", inference_only=True)
    # After the folds (an affine folded into a convolution costs nothing at all): work moved past
    # poolings, to the smaller tensor. Training too: gradients come from the graph sol.autodiff
    # differentiated before any pass ran (sol.passes.commute says why that matters).
    registry.register("monotone_past_max_pool", commute.monotone_past_max_pool, stage="inference")
    registry.register("linear_past_avg_pool", commute.linear_past_avg_pool, stage="inference")
    # What the inference passes left (training: run-time statistics/weights) as element-wise ops.
    registry.register("batchnorm_to_elementwise", batchnorm_elementwise.to_elementwise, stage="late")
    registry.register("dead_code_late", simplify.dead_code, stage="late")
