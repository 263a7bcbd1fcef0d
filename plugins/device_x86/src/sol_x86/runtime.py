"""Load a compiled network (``network.so``) and run it through its C ABI with ctypes.

One ``sol_forward`` call per forward: the Python side only collects pointers.

Lifetime: a network's library stays loaded exactly as long as its :class:`NetworkLibrary` (the
``Program`` that runs it, and any call in flight, hold it): when the last reference goes,
``sol_destroy`` frees the network's state and the library is unloaded (``dlclose``), so a
process that optimizes and drops many models does not keep every library mapped. The shared
oneDNN runtime library (``libsol_x86_onednn.so``) is a dependency of the networks and stays
loaded while any network needs it, as the dynamic loader counts.

Memory and threads (the plugin contract, ``sol_core/PLUGIN_GUIDE.md``): a network runs on the
caller's memory (the device keeps core's default, host memory), so a contiguous CPU tensor is
used in place: ``Program.run`` hands its pointer to ``sol_forward`` as it is, and the outputs
are written where the caller says (:meth:`NetworkLibrary.run_into`). One network may be called
from several threads at once: every call gets its own outputs and pointer tables, and the
network's scratch is per call (network.cpp.j2). Calls run on the caller's thread, whichever it
is: nothing here is tied to the thread that loaded the network. The OpenMP thread pool is this
device's, and so is its wait policy (:func:`openmp_wait_policy`).
"""

from __future__ import annotations

import _ctypes
import ctypes
import mmap
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sol.plugin_api import Buffer, IndexOutOfRangeError, LinAlgError, Plan, Program, SolError, cache_dir
from sol_x86.threads import ThreadGovernor

ABI_VERSION = 1
# The network's C ABI (network.cpp.j2). A library holding several networks (a batch compile, a
# deployment) renames them per network: ``sol_create`` -> ``sol3_create`` (:func:`abi_renames`).
ABI_SYMBOLS = ("sol_abi_version", "sol_workspace_bytes", "sol_num_params", "sol_create", "sol_forward",
               "sol_profile", "sol_describe", "sol_destroy")


def abi_renames(prefix: str, namespace: str) -> dict[str, str]:
    """The preprocessor renames that give one network of a shared library its own names: its
    C ABI ``sol_X`` -> ``{prefix}X`` and its C++ namespace -> ``namespace``."""
    return {"sol_network": namespace, **{sym: prefix + sym.removeprefix("sol_") for sym in ABI_SYMBOLS}}
_ERR_LEN = 2048
# sol_forward's return codes that name a failure in the input data (network.cpp.j2): 2 an index
# out of range, 4 a checked factorization (a singular matrix). 1 is any other error, 3 is handled
# apart (a non-finite input: the exact variant runs instead).
_ERRORS: dict[int, type[SolError]] = {2: IndexOutOfRangeError, 4: LinAlgError}


class OutputPool:
    """The output arrays of one network, handed out again once nothing outside holds them.

    A fresh large array is fresh memory: glibc maps blocks over 32 MiB anew at every
    allocation, and the kernel zero-fills each 4 KiB page on first touch, inside the group that
    writes it. A training forward's saved tensors are hundreds of MiB per step (MobileNetV2 at
    batch 8: 60,000 page faults, about 50 ms of a 500 ms step). An array is reused only when the
    pool holds its last reference: the caller's tensors, views, and anything built on them
    (``torch.from_numpy`` keeps a reference) keep it out of the pool, so nothing a caller can
    still see is overwritten. Two arrays per output cover a training loop, where one step's
    saved tensors live until the next step's forward has run.
    """

    MIN_BYTES = 1 << 20  # smaller blocks come from malloc's free lists anyway
    PER_OUTPUT = 2

    def __init__(self, types: list[tuple[tuple[int, ...], np.dtype]]) -> None:
        self.types = types
        self.pooled = [np.dtype(d).itemsize * int(np.prod(shape)) >= self.MIN_BYTES for shape, d in types]
        self.slots: list[list[np.ndarray]] = [[] for _ in types]

    def take(self) -> list[np.ndarray]:
        out = []
        for (shape, dtype), pooled, slot in zip(self.types, self.pooled, self.slots):
            if not pooled:
                out.append(np.empty(shape, dtype))
                continue
            for a in slot:
                if sys.getrefcount(a) == 3:  # the slot, the loop variable, getrefcount's argument
                    out.append(a)
                    break
            else:
                a = np.empty(shape, dtype)
                if len(slot) < self.PER_OUTPUT:
                    slot.append(a)
                out.append(a)
        return out


class NonFiniteInput(Exception):
    """sol_forward found a NaN or an infinity in an input its finite-only fusions depend on and
    ran nothing (network.cpp.j2): the caller runs the exact variant (:class:`FiniteGuard`)."""


_preloaded: dict[str, ctypes.CDLL] = {}

# Frameworks whose own thread pools spin between their ops (TensorFlow's Eigen pool: its
# workers busy-wait for new work after each op).
_SPINNING_POOLS = ("tensorflow",)


TF_SPINCOUNT = 10000
"""OpenMP spin iterations before an idle thread sleeps, where TensorFlow is in the process."""


def openmp_wait_policy() -> str | None:
    """Choose how this device's OpenMP threads wait between parallel regions, before the first
    library that loads libgomp (a network, or the oneDNN runtime): libgomp reads its environment
    once, when it loads, and offers no call to change it later.

    A bounded spin (``GOMP_SPINCOUNT``, :data:`TF_SPINCOUNT` iterations, tens of microseconds)
    when a framework whose own thread pools spin is in the process and the user set neither
    ``OMP_WAIT_POLICY`` nor ``GOMP_SPINCOUNT``. Why: spinning OpenMP threads and spinning framework
    threads starve each other, and threads that sleep at once pay a wake-up per parallel region.
    Measured on this 2-core machine (TensorFlow 2.21, a Keras MobileNetV2 at batch 1, 32x32, each
    sol call right after a ``tf.function`` call): 4.9 ms per sol call with sleeping threads
    (``PASSIVE``, this function's earlier choice), 2.7 ms with the bounded spin; alone 5.2 and
    1.2 ms. In ``benchmarks/keras_speed.py`` the bounded spin took DenseNet121 at batch 1 from
    18.3 to 8.4 ms and the transformer encoder at batch 8 from 1.8 to 1.3 ms (every engine called
    in turn). Otherwise libgomp's default (spin longer, then sleep) stays: it wakes fastest for
    back-to-back calls. Returns what is in force: ``OMP_WAIT_POLICY``'s value, else
    ``GOMP_SPINCOUNT=<n>``, else None (libgomp's default)."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ and any(
            sys.modules.get(m) is not None for m in _SPINNING_POOLS):
        os.environ["GOMP_SPINCOUNT"] = str(TF_SPINCOUNT)
    if os.environ.get("OMP_WAIT_POLICY"):
        return os.environ["OMP_WAIT_POLICY"]
    spin = os.environ.get("GOMP_SPINCOUNT")
    return f"GOMP_SPINCOUNT={spin}" if spin else None


def _load_library(path: str) -> ctypes.CDLL:
    openmp_wait_policy()
    return ctypes.CDLL(path)


def preload(path: Path) -> None:
    """Load the oneDNN runtime library on its own, once per process, before any network that
    needs it. Loaded as a network's dependency instead, it resolves its own references to C++
    type information and template statics (also defined in the network) to that first network,
    which ties the network to it: that network could never be unloaded (dlclose keeps it)."""
    key = str(path)
    if key not in _preloaded:
        _preloaded[key] = _load_library(key)


class NetworkLibrary:
    """The loaded shared object and one network instance created from the plan's parameters."""

    handle: ctypes.c_void_p | None = None
    _library: int | None = None  # the dlopen handle, closed once the network is destroyed

    def __init__(self, artifact: Path, plan: Plan, prefix: str = "sol_") -> None:
        lib = _load_library(str(artifact))
        self._library = lib._handle
        self._symbols = {sym: getattr(lib, prefix + sym.removeprefix("sol_")) for sym in ABI_SYMBOLS}
        abi_version = self._symbols["sol_abi_version"]
        abi_version.restype = ctypes.c_int
        if abi_version() != ABI_VERSION:
            raise SolError(f"{artifact}: network ABI {abi_version()}, this sol-device-x86 speaks {ABI_VERSION}")
        create, forward, destroy = (self._symbols[s] for s in ("sol_create", "sol_forward", "sol_destroy"))
        create.restype = ctypes.c_void_p
        create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_long]
        forward.restype = ctypes.c_int
        forward.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_long]
        destroy.argtypes = [ctypes.c_void_p]
        self.lib = lib
        graph = plan.graph
        # Parameters stay the framework's own arrays wherever they are contiguous (no copy);
        # the library ops copy their weights into their preferred layout once, in sol_create.
        # Constants follow the parameters: large ones are read through this array (render.py).
        self.params = [np.asarray(v.data, order="C") for v in graph.params + graph.consts]
        self.param_names = [v.name for v in graph.params + graph.consts]
        self._create = create
        self.name = graph.name
        err = ctypes.create_string_buffer(_ERR_LEN)
        self.handle: ctypes.c_void_p | None = self._new_instance(err)
        self._reduced_handle: ctypes.c_void_p | None = None  # made on half the threads, when first needed
        self._reduced_lock = threading.Lock()
        self._destroy = destroy
        self.out_types = [(v.shape, np.dtype(v.dtype)) for v in graph.outputs]
        self._outputs = OutputPool(self.out_types)
        # The pointer-array types, made once (a ctypes array type costs more to make than to fill).
        self._in_array = ctypes.c_void_p * max(len(graph.inputs), 1)
        self._out_array = ctypes.c_void_p * max(len(graph.outputs), 1)
        self._forward = forward
        self._err = err
        self.threads = ThreadGovernor()  # fewer threads while another process holds a core

    def _new_instance(self, err: ctypes.Array[ctypes.c_char]) -> ctypes.c_void_p:
        ptrs = (ctypes.c_void_p * max(len(self.params), 1))(*[a.ctypes.data for a in self.params])
        handle = self._create(ptrs, err, _ERR_LEN)
        if not handle:
            raise SolError(f"sol x86: creating network {self.name} failed: {err.value.decode(errors='replace')}")
        return ctypes.c_void_p(handle)

    def release(self, positions: list[int], plan: Plan) -> int:
        """Stop holding in memory the parameters at ``positions`` (those the network read only in
        sol_create, having copied them into its ops' own layouts: NetworkRenderer's
        ``create_only_params``) where they are sol's own arrays (folded weights), not the
        framework's. Each moves to an unlinked file, mapped read-only: resident again only while
        a second instance (fewer threads) or the exact variant reads it. Returns the bytes moved."""
        g = plan.graph
        values = [*g.params, *g.consts]
        moved = 0
        for i in positions:
            a = self.params[i]
            if not _numpy_allocated(a) or a.nbytes < _RELEASE_MIN_BYTES:
                continue  # the framework's own memory, or too small to matter
            mapped = _file_backed(a)
            self.params[i] = mapped
            if values[i].data is a:
                values[i].data = mapped
            moved += a.nbytes
        return moved

    def _instance(self, reduced: bool) -> ctypes.c_void_p | None:
        """The network instance for this call: the one made on half the threads for a reduced
        call (sol_x86.threads: the governor has set the thread count already, so the instance's
        oneDNN primitives are created for it)."""
        if not reduced:
            return self.handle
        if self._reduced_handle is None:
            with self._reduced_lock:
                if self._reduced_handle is None:
                    self._reduced_handle = self._new_instance(ctypes.create_string_buffer(_ERR_LEN))
                    self.drop_mapped_pages()
        return self._reduced_handle

    def drop_mapped_pages(self) -> int:
        """Unmap the pages of the released parameters (``release``) from this process, after
        an instance was created from them: the creation read them back in (ResNet-50: 90 MB more
        resident for the rest of the process), and nothing reads them again until the next
        creation. The kernel keeps them in its page cache; a later read maps them again.
        Returns the bytes of mapping dropped."""
        dropped = 0
        for a in self.params:
            mapping = getattr(a, "_mmap", None) if isinstance(a, np.memmap) else None  # NumPy's mmap.mmap
            if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
                mapping.madvise(mmap.MADV_DONTNEED)
                dropped += a.nbytes
        return dropped

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        outputs = self._outputs.take()
        # Fresh pointer arrays per call: the C side reads them while the GIL is released, so a
        # shared one could be overwritten by a concurrent call on another thread.
        ins = self._in_array(*[a.__array_interface__["data"][0] for a in inputs])
        outs = self._out_array(*[a.__array_interface__["data"][0] for a in outputs])
        self._check(self.threads.call(lambda reduced: self._forward(self._instance(reduced), ins, outs, self._err,
                                                                    _ERR_LEN)))
        return outputs

    def run_into(self, inputs: list[Buffer], outputs: list[Buffer]) -> None:
        """One forward on buffers of host memory (core checked them: types, contiguous, the
        outputs apart from the inputs): their pointers go to ``sol_forward`` as they are, so a
        framework's tensors are read and written in place."""
        ins = self._in_array(*[b.ptr for b in inputs])
        outs = self._out_array(*[b.ptr for b in outputs])
        self._check(self.threads.call(lambda reduced: self._forward(self._instance(reduced), ins, outs, self._err,
                                                                    _ERR_LEN)))

    def _check(self, rc: int) -> None:
        if rc == 3:
            raise NonFiniteInput(self._err.value.decode(errors="replace"))
        if rc != 0:
            error = _ERRORS.get(rc, SolError)
            raise error(f"sol x86: {self.name} failed: {self._err.value.decode(errors='replace')}")

    def describe(self) -> str:
        """Per library group: the implementation the library chose and its layout conversions."""
        describe = self._symbols["sol_describe"]
        describe.restype = ctypes.c_char_p
        describe.argtypes = [ctypes.c_void_p]
        return (describe(self.handle) or b"").decode()

    def profile(self, groups: int) -> list[float] | None:
        """Seconds spent in each group so far, or None if the network was built without
        profiling (``optimize(..., profile=True)``)."""
        seconds = (ctypes.c_double * groups)()
        profile = self._symbols["sol_profile"]
        profile.restype = ctypes.c_int
        if not profile(self.handle, seconds, groups):
            return None
        return list(seconds)

    def close(self) -> None:
        """Destroy the network and unload its library. Only ``__del__`` calls it: by then nothing
        can call into the library any more (a call in flight holds a reference to this object)."""
        handle, self.handle = self.handle, None
        reduced, self._reduced_handle = getattr(self, "_reduced_handle", None), None
        for h in (handle, reduced):
            if h:
                self._destroy(h)
        library, self._library = self._library, None
        if library:
            _ctypes.dlclose(library)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: ctypes may be torn down already
            pass


class FiniteGuard:
    """Runs a network with finite-only fusions (library post-ops exact only for finite operands,
    see sol_x86.libraries) where their premise holds, and its exact variant where it does not.

    The premise: the parameters and inputs those operands depend on are finite. The parameters
    are checked once here, at load (a frontend that sees weights change compiles and loads
    again); the inputs by the network itself at every call, before anything runs (sol_forward
    returns 3). The exact variant, the same network planned without finite-only fusions, is
    built when first needed (compiled, or found in the compile cache) and kept.

    ``exact_calls``: how many calls the exact variant ran (``program.info["finite_guard"]``).
    The exact variant is a second network with its own workspace; ``profile=True`` times the
    fused one's groups only.
    """

    def __init__(self, fast: NetworkLibrary, params: list[int], build_exact: Callable[[], Program]) -> None:
        self.fast = fast
        bad = [i for i in params if not _all_finite(fast.params[i])]
        self.nonfinite_params = [fast.param_names[i] for i in bad]
        self.checked_params = len(params)
        self.exact_calls = 0
        self._build_exact = build_exact
        self._exact: Program | None = None
        self._lock = threading.Lock()

    @property
    def fast_usable(self) -> bool:
        return not self.nonfinite_params

    def exact(self) -> Program:
        """The exact variant, built on first use (one build however many threads ask)."""
        with self._lock:
            if self._exact is None:
                self._exact = self._build_exact()
                self.fast.drop_mapped_pages()  # the exact network read the released parameters too
            return self._exact

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if not self.nonfinite_params:
            try:
                return self.fast(inputs)
            except NonFiniteInput:
                pass
        exact = self.exact()
        self.exact_calls += 1
        return exact(*inputs)

    def run_into(self, inputs: list[Buffer], outputs: list[Buffer]) -> None:
        """:meth:`__call__` on buffers (``Program.run``)."""
        if not self.nonfinite_params:
            try:
                self.fast.run_into(inputs, outputs)
                return
            except NonFiniteInput:  # nothing ran: the outputs are untouched
                pass
        exact = self.exact()
        self.exact_calls += 1
        exact.run(inputs, outputs)


# Smaller arrays stay: a file and a mapping each would cost more than they free.
_RELEASE_MIN_BYTES = 64 * 1024


def _numpy_allocated(a: np.ndarray) -> bool:
    """Whether ``a``'s memory is NumPy's own allocation (an array sol computed: a folded weight,
    a framework tensor's copy), not memory a framework lends (``tensor.numpy()``, whose chain of
    bases ends in the tensor) or a mapped file."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a.base is None and a.flags.owndata and not isinstance(a, np.memmap)


def _file_backed(a: np.ndarray) -> np.ndarray:
    """``a``'s values in an unlinked temporary file, mapped read-only (np.memmap): the pages are
    the kernel's page cache, counted in this process's memory only while mapped and read."""
    folder = cache_dir()  # the compile cache's disk, not a RAM-backed /tmp
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder) as f:
        np.ascontiguousarray(a).tofile(f)
        f.flush()
        return np.memmap(f, dtype=a.dtype, mode="r", shape=a.shape)


def _return_freed_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``). Why: NumPy's
    arrays come from malloc, and glibc serves large requests from its heap once the mmap
    threshold has grown past them; freeing them then keeps the pages in this process (measured:
    ResNet-50's 94 MB of released folded weights stayed resident without this). Elsewhere, a no-op."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


def _all_finite(a: np.ndarray) -> bool:
    return not np.issubdtype(a.dtype, np.floating) or bool(np.isfinite(a).all())


def load(artifact: Path, plan: Plan, device: str, exact: Callable[[], Program] | None = None,
         finite_params: list[int] | None = None, prefix: str = "sol_", create_only: list[int] | None = None) -> Program:
    """The loaded network as a Program. ``exact``: builds the network's exact variant, given for
    a network with finite-only fusions, whose premise is then guarded (``finite_params``: the
    parameters it depends on, by position; :class:`FiniteGuard`). ``create_only``: parameters the
    network read only while it was created, released from memory after that
    (:meth:`NetworkLibrary.release`)."""
    net = NetworkLibrary(artifact, plan, prefix)
    # A profile times the groups of one instance: its calls all stay on the full thread count.
    net.threads.fixed = bool(plan.options.get("profile"))
    g = plan.graph
    groups = len(plan.groups)
    info: dict[str, object] = {"libraries": net.describe(), "threads": net.threads}
    runner: NetworkLibrary | FiniteGuard = net
    if exact is not None:
        guard = FiniteGuard(net, finite_params or [], exact)
        info["finite_guard"] = runner = guard
    # After the finiteness check above, which reads every parameter it depends on once.
    info["released_bytes"] = net.release(create_only or [], plan)
    if info["released_bytes"]:
        _return_freed_memory()
    return Program(g.name, device, [v.name for v in g.inputs], [v.type for v in g.inputs],
                   [v.type for v in g.outputs], runner, info=info, keepalive=runner,
                   profiler=lambda: net.profile(groups), run_into=runner.run_into)
