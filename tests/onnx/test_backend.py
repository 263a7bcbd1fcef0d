"""ONNX's own backend test suite (``onnx.backend.test.BackendTest``) against sol's ONNX backend
(:mod:`sol_onnx.backend`): every case (node, simple, PyTorch-converted and -operator) but those
``backend_exclusions.txt`` lists with their reasons, with ``fallback=False`` (a case must compile
in sol, never pass through ONNX Runtime). ``backend_scan.py`` rewrites the exclusions.

Where: the cases run on sol's reference device ``interp`` (core's plan run group by group with
the ops' NumPy references: the frontend's conversion, core's passes and planner, no C compile),
about 820 cases in ~20 s. On x86 each case is a g++ compile of its own (0.5-1.5 s each on this
2-core machine), so the whole set on x86 is a one-off check (``backend_scan.py --device x86``)
and the suite compiles a representative few, about one per converter family (``X86_CASES``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx.backend.test
import pytest
from onnx.backend.test.loader import load_model_tests

from sol_onnx.backend import SolBackend, SolBackendRep

EXCLUSIONS = Path(__file__).with_name("backend_exclusions.txt")


def excluded() -> dict[str, str]:
    """Case name -> why it is excluded."""
    out = {}
    for line in EXCLUSIONS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition("#")
            out[name.strip()] = why.strip()
    return out


class InterpBackend(SolBackend):
    """sol's backend on the reference device, with fallback off: a refused node fails the case."""

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> SolBackendRep:
        return super().prepare(model, device, sol_device="interp", fallback=False, **kwargs)


@pytest.fixture(autouse=True, scope="module")
def _reference_device() -> Any:
    from sol.testing import reference_device

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # special values in ONNX's reference data
        with reference_device():
            yield


def _backend_cases() -> dict[str, type]:
    """ONNX's test classes with the excluded cases (and the CUDA copies: the reference device
    runs on the host) taken out, so that pytest lists only what runs."""
    cases = onnx.backend.test.BackendTest(InterpBackend, __name__).test_cases
    names = excluded()
    for cls in cases.values():
        for attr in [a for a in vars(cls) if a.startswith("test_")]:
            case, _, device = attr.rpartition("_")
            if device == "cuda" or case in names:
                delattr(cls, attr)
    return cases


globals().update(_backend_cases())


def test_every_exclusion_names_a_case_and_gives_a_reason() -> None:
    known = {c.name for kind in ("node", "simple", "pytorch-converted", "pytorch-operator", "real")
             for c in load_model_tests(kind=kind)}
    found = excluded()
    assert not [n for n in found if n not in known], "exclusions naming no ONNX test case"
    assert all(found.values()), "every exclusion says why"


# One case per converter family, compiled for x86 (about 1 s of g++ each).
X86_CASES = ["test_conv_with_strides_and_asymmetric_padding", "test_gemm_all_attributes", "test_matmul_4d",
             "test_maxpool_2d_precomputed_same_upper", "test_averagepool_2d_precomputed_pads_count_include_pad",
             "test_globalaveragepool", "test_batchnorm_epsilon", "test_softmax_axis_1",
             "test_split_equal_parts_2d_opset13",
             "test_gather_1", "test_layer_normalization_2d_axis1", "test_clip_splitbounds", "test_where_example",
             "test_transpose_all_permutations_3", "test_concat_3d_axis_negative_1", "test_erf", "test_pow",
             "test_convtranspose_pads", "test_gelu_tanh_2", "test_argmax_keepdims_random", "test_flatten_axis2",
             "test_cast_FLOAT_to_DOUBLE", "test_rms_normalization_2d_axis1", "test_instancenorm_example",
             "test_group_normalization_example", "test_depthtospace_crd_mode_example", "test_selu", "test_sign",
             "test_hardmax_axis_1", "test_lppool_2d_strides",
             "test_attention_4d_gqa", "test_softplus"]  # the last two: compiled from ONNX's function bodies


@pytest.mark.parametrize("name", X86_CASES)
def test_node_case_on_x86(name: str) -> None:
    case = next(c for c in load_model_tests(kind="node") if c.name == name)
    assert case.data_sets
    inputs, expected = case.data_sets[0]
    expected = [onnx.numpy_helper.to_array(e) if isinstance(e, onnx.TensorProto) else e for e in expected]
    got = SolBackend.prepare(case.model, "CPU", sol_device="x86", fallback=False).run(list(inputs))
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=case.rtol, atol=case.atol)
