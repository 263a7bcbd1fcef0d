"""The trace cache (``sol_pytorch.trace_cache``): a new process reuses a model's imported graph
instead of tracing it, with the model's current weights, and traces again whenever anything the
trace could see changed.

Each scenario runs in fresh processes sharing one temporary ``SOL_CACHE_DIR`` (on the NumPy
interpreter device of tests/core: the cache is the frontend's, whatever the device). A script
runs a list of steps and prints, per step, the trace cache counters it moved, the warnings it
raised, whether the compiled module matched eager PyTorch (values and output structure) and
whether ``torch._dynamo`` was imported by then.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
CORE = HERE.parent / "core"  # interpreter_device

MODELS = '''
import os
import sys

import torch
from torch import nn

import tcflags

FACTOR = 2.0


def scale(x):
    return x * FACTOR


class Net(nn.Module):
    def __init__(self, p=0.5, act="relu"):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(p)
        self.act = nn.ReLU() if act == "relu" else nn.GELU()
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        y = self.drop(self.act(self.bn(self.conv(x))))
        f = y.mean((2, 3))
        return self.fc(scale(f)), {"pooled": f}


class Net2(Net):
    pass


class Damaged1(Net):
    pass


class Damaged2(Net):
    pass


class Flags(nn.Module):
    """Reads what a program sets at run time: its arguments, its environment, a flag module."""

    def forward(self, x):
        y = torch.relu(x) if "--gelu" not in sys.argv else nn.functional.gelu(x)
        if os.environ.get("TC_DOUBLE"):
            y = y * 2
        return y * tcflags.SCALE


class Fallen(nn.Module):
    def forward(self, x):
        return torch.fft.rfft(torch.relu(x), dim=-1).abs()  # no sol op for FFTs: PyTorch runs it
'''

PRELUDE = '''
import importlib, json, logging, os, sys, warnings
sys.path[:0] = [{core!r}, {tmp!r}]
os.environ["SOL_PLUGIN_AUTOLOAD"] = "0"
import torch
import sol, sol.plugins, sol_pytorch.plugin, interpreter_device
from torch.utils import _pytree as pytree
sol.plugins.reset()
sol.plugins.register(sol_pytorch.plugin, "pytorch")
sol.plugins.register(interpreter_device, "interp")
from sol_pytorch import trace_cache
import tcmodels

results = {{}}
X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(7))


def entries():
    root = os.environ["SOL_CACHE_DIR"]
    names = os.listdir(root) if os.path.isdir(root) else []
    return {{e for e in names if os.path.exists(os.path.join(root, e, "graph.pkl"))}}


def reference(model, *inputs):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        out = model(*inputs)
    for m, t in modes:
        m.training = t
    return out


def same(out, ref):
    a, spec_a = pytree.tree_flatten(out)
    b, spec_b = pytree.tree_flatten(ref)
    return spec_a == spec_b and all(torch.allclose(p, q, atol=1e-5) for p, q in zip(a, b))


def run(name, model, *inputs, seed=0, call=None, **options):
    if seed is not None:
        torch.manual_seed(seed)
        for p in model.parameters():
            p.data.normal_(0, 0.5)
    before, had = dict(trace_cache.counts), entries()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = sol.optimize(model, *inputs, device="interp", **options)
        out = s(*(call or inputs))
    counts = {{k: v - before.get(k, 0) for k, v in trace_cache.counts.items() if v != before.get(k, 0)}}
    results[name] = dict(counts=counts, same=same(out, reference(model, *(call or inputs))),
                         warnings=sorted({{type(w.message).__name__ for w in caught}}),
                         dynamo="torch._dynamo" in sys.modules, new=sorted(entries() - had))
    return s


def error(s, *inputs):
    try:
        s(*inputs)
    except Exception as exc:
        return f"{{type(exc).__name__}}: {{exc}}"
    return "no error"
'''


def _run(tmp: Path, script: str) -> dict[str, Any]:
    code = PRELUDE.format(core=str(CORE), tmp=str(tmp)) + textwrap.dedent(script) + "\nprint(json.dumps(results))\n"
    env = {**os.environ, "SOL_CACHE_DIR": str(tmp / "cache"), "SOL_TRACE_CACHE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    results["stderr"] = done.stderr
    return results


def _damage(entry: Path, how: str) -> None:
    artifact = entry / "graph.pkl"
    if how == "checksum":  # the compile cache's check finds it
        artifact.write_bytes(artifact.read_bytes()[:-7])
        return
    artifact.write_bytes(b"\x80\x05not a graph")  # a sound entry that does not unpickle
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["sha256"] = hashlib.sha256(artifact.read_bytes()).hexdigest()
    (entry / "manifest.json").write_text(json.dumps(manifest))


def test_a_new_process_reuses_the_graph_and_traces_again_when_anything_traced_changes(tmp_path: Path) -> None:
    (tmp_path / "tcmodels.py").write_text(MODELS)
    (tmp_path / "tcflags.py").write_text("SCALE = 1.0\n")
    cold = _run(tmp_path, '''
        s = run("base", tcmodels.Net().eval(), X)
        run("flags", tcmodels.Flags().eval(), X)
        s(torch.randn(3, 3, 8, 8))  # a new shape imports again: stored too
        results["batch3"] = dict(counts=dict(trace_cache.counts))
        results["rank error"] = error(s, torch.randn(2, 3, 8))
        results["sources"] = [n.source for n in s.program.info["plan"].graph.nodes]
        run("damaged1", tcmodels.Damaged1().eval(), X)
        run("damaged2", tcmodels.Damaged2().eval(), X)
        run("fallen", tcmodels.Fallen().eval(), X)
    ''')
    assert cold["base"]["counts"] == {"miss": 1, "stored": 1} and cold["base"]["same"], cold
    assert cold["flags"]["counts"] == {"miss": 1, "stored": 1} and cold["flags"]["same"], cold
    assert cold["batch3"]["counts"]["stored"] == 3  # base, flags, base at batch 3
    assert cold["fallen"]["counts"] == {"miss": 1} and cold["fallen"]["warnings"] == ["SolFallbackWarning"]
    assert cold["fallen"]["same"]

    warm = _run(tmp_path, '''
        s = run("base", tcmodels.Net().eval(), X, seed=1)  # same architecture, other weights
        hits, Y = trace_cache.counts["hit"], torch.randn(3, 3, 8, 8)
        results["batch3"] = dict(same=same(s(Y), reference(s.model, Y)), hit=trace_cache.counts["hit"] - hits)
        results["rank error"] = error(s, torch.randn(2, 3, 8))
        results["sources"] = [n.source for n in s.program.info["plan"].graph.nodes]
        run("p", tcmodels.Net(p=0.1).eval(), X)
        run("act", tcmodels.Net(act="gelu").eval(), X)
        run("class", tcmodels.Net2().eval(), X)
        run("shape", tcmodels.Net().eval(), torch.randn(2, 3, 9, 9))
        run("dtype", tcmodels.Net().eval().double(), X.double())
        run("mode", tcmodels.Net().train(), X, training=False)
        run("option", tcmodels.Net().eval(), X, fallback=False)
        run("no cache", tcmodels.Net().eval(), X, trace_cache=False)
        os.environ["SOL_TRACE_CACHE"] = "0"
        run("no cache env", tcmodels.Net().eval(), X)
        os.environ["SOL_TRACE_CACHE"] = "1"
        hooked = tcmodels.Net().eval()
        hooked.fc.register_forward_hook(lambda m, i, o: o * 2)
        run("hook", hooked, X)
        run("hook again", hooked, X)
        run("fallen", tcmodels.Fallen().eval(), X)
        run("flags", tcmodels.Flags().eval(), X)
        sys.argv.append("--gelu")  # what the program was started with: the forward reads it
        run("flags argv", tcmodels.Flags().eval(), X)
        os.environ["TC_DOUBLE"] = "1"
        run("flags environ", tcmodels.Flags().eval(), X)
        import tcflags
        tcflags.SCALE = 3.0  # an argument parser setting a flag module's global: its file is unchanged
        run("flags module", tcmodels.Flags().eval(), X)
    ''')
    base = warm["base"]
    assert base["counts"] == {"hit": 1} and base["same"] and not base["dynamo"], warm
    assert "imported from the trace cache" not in warm["stderr"]  # an info line: silent by default
    assert warm["batch3"] == {"hit": 1, "same": True}
    assert warm["rank error"] == cold["rank error"] and warm["rank error"].startswith("ValueError"), warm
    assert warm["sources"] == cold["sources"] and "model.conv (tcmodels.py:" in str(cold["sources"]), cold["sources"]
    assert warm["flags"]["counts"] == {"hit": 1} and warm["flags"]["same"], warm["flags"]
    for step in ("p", "act", "class", "shape", "dtype", "mode", "option", "flags argv", "flags environ",
                 "flags module"):
        assert warm[step]["counts"] == {"miss": 1, "stored": 1} and warm[step]["same"], (step, warm[step])
    assert warm["mode"]["warnings"] == ["SolTrainingModeWarning"]
    for step in ("no cache", "no cache env"):
        assert warm[step]["counts"] == {} and warm[step]["same"], (step, warm[step])
    for step in ("hook", "hook again"):
        assert warm[step]["counts"] == {"unkeyable": 1} and warm[step]["same"], (step, warm[step])
    assert warm["fallen"]["counts"] == {"miss": 1} and warm["fallen"]["warnings"] == ["SolFallbackWarning"]

    [entry1], [entry2] = cold["damaged1"]["new"], cold["damaged2"]["new"]
    _damage(tmp_path / "cache" / entry1, "pickle")
    _damage(tmp_path / "cache" / entry2, "checksum")
    later = _run(tmp_path, '''
        run("mode", tcmodels.Net().train(), X, training=False)
        run("damaged1", tcmodels.Damaged1().eval(), X)
        run("damaged1 again", tcmodels.Damaged1().eval(), X)
        run("damaged2", tcmodels.Damaged2().eval(), X)
        run("damaged2 again", tcmodels.Damaged2().eval(), X)
        source = open(tcmodels.__file__).read()
        for name, old, new in [("global", "FACTOR = 2.0", "FACTOR = 3.0"),
                               ("forward", "f = y.mean((2, 3))", "f = y.amax((2, 3))")]:
            with open(tcmodels.__file__, "w") as f:
                f.write(source.replace(old, new))
            importlib.reload(tcmodels)
            run(name, tcmodels.Net().eval(), X)
    ''')
    assert later["mode"]["counts"] == {"hit": 1} and later["mode"]["warnings"] == ["SolTrainingModeWarning"]
    assert later["mode"]["same"]
    for name, warning in [("damaged1", "is unusable"), ("damaged2", "checksum mismatch")]:
        assert later[name]["counts"] == {"miss": 1, "stored": 1} and later[name]["same"], later
        assert later[f"{name} again"]["counts"] == {"hit": 1} and later[f"{name} again"]["same"], later
        assert warning in later["stderr"], later["stderr"]
    for name in ("global", "forward"):
        assert later[name]["counts"] == {"miss": 1, "stored": 1} and later[name]["same"], (name, later[name])


# --- the key, in this process -------------------------------------------------------------------


def _key(model: torch.nn.Module, x: torch.Tensor | None = None) -> str | None:
    from sol_pytorch.trace_cache import model_key

    return model_key(model, (torch.zeros(2, 4) if x is None else x,), {"training": False})


class _Table(torch.nn.Module):
    def __init__(self, order: dict[str, float]) -> None:
        super().__init__()
        self.order = order

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x * v for v in self.order.values()]


class _Closure(torch.nn.Module):
    def __init__(self, k: float) -> None:
        super().__init__()
        self.f = lambda x: x * k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


class _Config:
    p = 0.5


class _Opaque(torch.nn.Module):
    cfg = _Config()  # a class attribute the key cannot describe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.cfg.p


def test_the_key_follows_values_code_reads_and_never_weight_values() -> None:
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    assert _key(a) == _key(b) is not None  # other weight values: same key
    tied = torch.nn.Sequential(a, torch.nn.ReLU(), torch.nn.Linear(3, 4), torch.nn.Linear(4, 3))
    untied = torch.nn.Sequential(a, torch.nn.ReLU(), torch.nn.Linear(3, 4), torch.nn.Linear(4, 3))
    tied[3].weight = tied[0].weight
    assert _key(tied) != _key(untied)  # shared weights stay shared
    assert _key(a) != _key(a, torch.zeros(4, 2).t())  # strides of the input
    assert _key(_Table({"a": 1.0, "b": 2.0})) != _key(_Table({"b": 2.0, "a": 1.0}))  # dict order
    assert _key(_Closure(2.0)) != _key(_Closure(3.0))  # closure values
    assert _key(_Opaque()) is None
    with torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o):
        assert _key(a) is None  # global hooks


class _Masked(torch.nn.Module):
    """Attention over a boolean mask buffer: the converter folds the buffer's values."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=self.mask)


def test_a_graph_holding_buffer_values_is_not_reused(device: str) -> None:
    import sol
    from sol_pytorch import trace_cache

    q = torch.randn(1, 2, 4, 8)
    for mask in (torch.ones(4, 4, dtype=torch.bool).tril(), torch.ones(4, 4, dtype=torch.bool)):
        model = _Masked(mask).eval()
        hits = trace_cache.counts["hit"]
        out = sol.optimize(model, q, device=device)(q)
        assert trace_cache.counts["hit"] == hits
        torch.testing.assert_close(out, model(q), rtol=1e-4, atol=1e-5)


class _ScalarAttribute(torch.nn.Module):
    """A 0-dim tensor held as a plain attribute (not a buffer): the key hashes its value."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.scale = torch.tensor(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def test_a_zero_dim_tensor_attribute_is_keyed_by_its_value(device: str) -> None:
    """Hashing viewed the tensor as bytes, which PyTorch refuses for a 0-dim float tensor:
    optimize raised a RuntimeError for such a model."""
    import sol

    assert _key(_ScalarAttribute(2.0)) != _key(_ScalarAttribute(3.0)) is not None
    x = torch.randn(3)
    model = _ScalarAttribute(2.0).eval()
    torch.testing.assert_close(sol.optimize(model, x, device=device)(x), x * 2.0)
