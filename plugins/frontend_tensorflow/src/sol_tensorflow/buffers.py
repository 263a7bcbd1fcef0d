"""Where each resource variable's buffer is now, for many variables in one TensorFlow op.

Why: :class:`sol_tensorflow.weights.WeightsWatch` decides whether a compiled program's weights
are still the model's by comparing buffer addresses at every call. Reading them through
TensorFlow's own ops costs about 4.5 us per variable (one ``tf.function`` whose NumPy callback
receives every value: 2.8-3.6 ms per call for DenseNet121's 606 variables, measured on this
2-core machine, about a sixth of the whole forward at 64x64). This op reads the addresses in C++
under each variable's lock: about 0.7 us per variable (406 us for the 606, same machine).

It is a TensorFlow custom op built against the installed TensorFlow's headers and framework
library (``tf.sysconfig``), once per installation, into sol's compile cache (in a background
thread started when a watch is made: :func:`prepare`), and tried in a child
process before this process loads it (an op library that does not match the framework could
crash the process loading it). Without a C++ compiler, or where the build or the check fails,
:func:`reader` is None (with one log message) and the watch reads through TensorFlow's ops as
before (exact, slower).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from sol.plugin_api import cache_get_or_build, cache_key

log = logging.getLogger("sol")

SOURCE = r"""
#include <cstdint>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

// Per resource variable: the address of the buffer its tensor holds now (see buffers.py).
class SolVariableBuffers : public tensorflow::OpKernel {
 public:
  explicit SolVariableBuffers(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(tensorflow::OpKernelContext* ctx) override {
    const int n = ctx->num_inputs();
    tensorflow::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tensorflow::TensorShape({n}), &out));
    auto addresses = out->vec<int64_t>();
    for (int i = 0; i < n; ++i) {
      tensorflow::core::RefCountPtr<tensorflow::Var> var;
      OP_REQUIRES_OK(ctx, tensorflow::LookupResource(ctx, tensorflow::HandleFromInput(ctx, i), &var));
      tensorflow::tf_shared_lock lock(*var->mu());
      addresses(i) = static_cast<int64_t>(reinterpret_cast<intptr_t>(var->tensor()->data()));
    }
  }
};

}  // namespace

REGISTER_OP("SolVariableBuffers")
    .Input("resources: N * resource")
    .Attr("N: int >= 1")
    .Output("addresses: int64")
    .SetIsStateful()
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(c->num_inputs()));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("SolVariableBuffers").Device(tensorflow::DEVICE_CPU), SolVariableBuffers);
"""

# Run in a child process on a freshly built op library: the address must be the buffer a read
# returns, move on every kind of write, and stay put on a read.
SELF_TEST = r"""
import sys
import numpy as np
import tensorflow as tf
op = tf.load_op_library(sys.argv[1]).sol_variable_buffers
def address(a):
    return a.__array_interface__["data"][0]
v = tf.Variable(tf.ones((3, 4)))
w = tf.Variable(tf.zeros((5,)))
view = np.asarray(v.value())
first = op([v.handle, w.handle]).numpy()
assert first[0] == address(view), (first, address(view))
assert op([v.handle]).numpy()[0] == first[0]
v.assign_add(tf.ones((3, 4)))
assert op([v.handle]).numpy()[0] != first[0]
w_view = np.asarray(w.value())
tf.function(lambda: w.assign(tf.fill((5,), 2.0)))()
assert op([w.handle]).numpy()[0] != address(w_view)
print("ok")
"""

_READER: Callable[[Sequence[Any]], np.ndarray] | None = None
_TRIED = False
_LOCK = threading.Lock()
_STARTED = False
_START_LOCK = threading.Lock()


def prepare() -> None:
    """Start making the op in a background thread, once per process. Why: the first build takes
    seconds (the compiler, then a child process importing TensorFlow for the check); a compiled
    model's first calls should not wait for it. Until it is ready (:func:`ready`), the weight
    check reads through TensorFlow as before."""
    global _STARTED
    with _START_LOCK:
        if _STARTED:
            return
        _STARTED = True
    threading.Thread(target=reader, name="sol-tf-buffers", daemon=True).start()


def ready() -> Callable[[Sequence[Any]], np.ndarray] | None:
    """The reader if it has been made (without waiting for a build under way); else None."""
    return _READER if _TRIED else None


def reader() -> Callable[[Sequence[Any]], np.ndarray] | None:
    """``read(handles) -> int64 addresses`` for this TensorFlow installation, built and checked
    once; None where it cannot be had (see the module doc)."""
    global _READER, _TRIED
    if _TRIED:
        return _READER
    with _LOCK:
        if not _TRIED:
            try:
                _READER = _load()
            except Exception as exc:  # noqa: BLE001 - any failure: the exact, slower path
                log.warning("sol: the TensorFlow frontend cannot build its variable-buffer op (%s); compiled "
                            "models check their weights through TensorFlow's own reads (exact, slower)", exc)
                _READER = None
            _TRIED = True
    return _READER


def _load() -> Callable[[Sequence[Any]], np.ndarray]:
    compiler = os.environ.get("SOL_CXX") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None or shutil.which(compiler) is None:
        raise RuntimeError("no C++ compiler (install g++ or set SOL_CXX)")
    compile_flags, link_flags = tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags()
    framework = [Path(f[2:]) for f in link_flags if f.startswith("-L")]
    stamps = [f"{p}:{p.stat().st_mtime_ns}" for d in framework for p in sorted(d.glob("libtensorflow_framework*"))]
    key = cache_key("sol_tensorflow.buffers", SOURCE, SELF_TEST, compiler, " ".join(compile_flags),
                    " ".join(link_flags), tf.__version__, *stamps)

    def build(tmp: Path) -> Path:
        src = tmp / "buffers.cc"
        out = tmp / "sol_tf_buffers.so"
        src.write_text(SOURCE)
        rpath = [f"-Wl,-rpath,{d}" for d in framework]
        run = subprocess.run([compiler, "-std=c++17", "-O2", "-fPIC", "-shared", "-w", *compile_flags, str(src),
                              "-o", str(out), *link_flags, *rpath], capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            raise RuntimeError(f"compiling the op failed: {run.stderr.strip()[-400:]}")
        check = subprocess.run([sys.executable, "-c", SELF_TEST, str(out)], capture_output=True, text=True,
                               timeout=600)
        if check.returncode != 0 or check.stdout.strip().splitlines()[-1:] != ["ok"]:
            raise RuntimeError(f"the op failed its check (exit {check.returncode}): "
                               f"{(check.stderr or check.stdout).strip()[-400:]}")
        return out

    path, _ = cache_get_or_build(key, build)
    op = tf.load_op_library(str(path)).sol_variable_buffers

    def read(handles: Sequence[Any]) -> np.ndarray:
        with tf.init_scope():  # eager, also when called while a tf.function traces
            return np.asarray(op(list(handles)))

    return read
