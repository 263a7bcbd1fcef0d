"""The compile cache: artifacts keyed by a hash of source, compiler identity and plugin versions.

An entry is a directory holding the artifact and a manifest with the artifact's SHA-256. It is
built in a private temporary directory and renamed into place, so a reader never sees half an
entry and two processes building the same key both succeed (the loser discards its copy). An
entry whose manifest or checksum does not match, or that is no directory at all (a file, a
symlink), is rebuilt, never loaded.

Everything else that writes into the cache uses the helpers here too: :func:`write_file`
(atomic, for single files) and :func:`write_checked` / :func:`read_checked` (a file carrying its
own SHA-256, for data that must not be trusted when damaged: compiled templates).

Temporaries (a build folder, a file being written) are named ``.NAME.tmp-HOST-PID-RANDOM``, so a
process killed mid-build leaves something recognisable: one whose process is gone (same host) or
that is older than :data:`STALE_SECONDS` is removed by the next build in that cache and by ``sol
cache clear``, and ``sol cache info`` counts them.

Entries and files are created as the process's umask allows (as ``mkdir`` and ``open`` do), not
private to the user, so a cache shared by a group (umask 002, a setgid folder) works.

Where the cache cannot be written: an explicit ``$SOL_CACHE_DIR`` is the user's decision (e.g. a
cache shared by a team), so sol stops with a :class:`~sol.errors.CacheError` that names it rather
than silently recompiling in every process; the default location (``~/.cache/sol``, read-only on
some clusters and containers) falls back to a private temporary cache for the rest of the
process, with one warning.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sol.errors import CacheError

log = logging.getLogger("sol")
MANIFEST = "manifest.json"
TEMPLATES = ".jinja2"
"""The folder of compiled templates (:mod:`sol.codegen`)."""
STALE_SECONDS = 24 * 3600
"""A temporary older than this is stale even if its process may live (another host's, a reused pid)."""

_TEMP = re.compile(r"^\..*\.tmp-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[A-Za-z0-9_]+$")
# mkdtemp's names before temporaries carried their owner (".KEY.abcd1234"): stale by age only
_LEGACY_TEMP = re.compile(r"^\.[^.]+\.[a-z0-9_]{8}$")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHECKED_MAGIC = b"sol-checked-1\n"
_lock = threading.Lock()
_fallback: Path | None = None
_swept: set[str] = set()


def _default_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "sol"


def cache_dir() -> Path:
    """``$SOL_CACHE_DIR``, else the XDG cache folder (or this process's private fallback when
    that one turned out not to be writable)."""
    root = os.environ.get("SOL_CACHE_DIR")
    if root:
        return Path(root)
    return _fallback or _default_dir()


def key_of(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- entries ----------------------------------------------------------------------------------


def lookup(key: str) -> Path | None:
    """The artifact for ``key`` if a sound entry exists, else None (a damaged one is removed)."""
    entry = cache_dir() / key
    try:
        st = entry.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:  # e.g. the cache folder itself is a file: nothing to find there
        log.debug("sol: cache entry %s cannot be examined (%s)", entry, exc)
        return None
    if not stat.S_ISDIR(st.st_mode):  # a file or a symlink (a loop, or pointing anywhere) in its place
        log.warning("sol cache entry %s is not a directory; rebuilding", entry)
        _remove(entry)
        return None
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        artifact = _artifact_of(entry, manifest)
        if _sha256(artifact) == manifest["sha256"]:
            return artifact
        log.warning("sol cache entry %s is damaged (checksum mismatch); rebuilding", entry)
    except FileNotFoundError:
        log.warning("sol cache entry %s is incomplete; rebuilding", entry)
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        log.warning("sol cache entry %s is unreadable (%s); rebuilding", entry, exc)
    _remove(entry)
    return None


def _artifact_of(entry: Path, manifest: object) -> Path:
    """The artifact a manifest names, checked: a relative path to a regular file inside the
    entry (a manifest of another shape, or naming ``../x``, is damage, never followed)."""
    if not isinstance(manifest, dict):
        raise ValueError(f"manifest is a {type(manifest).__name__}, not an object")
    name, digest = manifest.get("artifact"), manifest.get("sha256")
    if not isinstance(name, str) or not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise ValueError("manifest lacks a valid artifact name or sha256")
    rel = PurePosixPath(name)
    if not name or "\0" in name or rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"manifest names an artifact outside its entry: {name!r}")
    artifact = entry / rel
    if not artifact.is_file() or artifact.is_symlink():
        raise ValueError(f"artifact {name!r} is not a regular file")
    return artifact


def get_or_build(key: str, build: Callable[[Path], Path]) -> tuple[Path, bool]:
    """Return (artifact path, was_cached). ``build(tmpdir)`` writes the artifact into tmpdir."""
    found = lookup(key)
    if found is not None:
        return found, True
    root, tmp = _temp_dir(key)
    try:
        artifact = build(tmp)
        rel = artifact.relative_to(tmp).as_posix()
        manifest = {"artifact": rel, "sha256": _sha256(artifact)}
        (tmp / MANIFEST).write_text(json.dumps(manifest))
        # mkdtemp makes the folder private (0700): give it the mode mkdir would have
        os.chmod(tmp, 0o777 & ~_umask())
        entry = root / key
        try:
            os.rename(tmp, entry)
        except OSError:  # another process won the race, or a damaged entry is in the way
            found = lookup(key)
            if found is not None:
                return found, True
            _remove(entry)
            try:
                os.rename(tmp, entry)
            except OSError:  # yet another process put its entry there in between
                found = lookup(key)
                if found is None:
                    raise
                return found, True
        return entry / rel, False
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)


def discard(key: str) -> None:
    """Remove the entry of ``key`` (its content turned out unusable to the one who stored it)."""
    _remove(cache_dir() / key)


def _remove(path: Path) -> None:
    """Remove a file, a symlink (never what it points to) or a folder tree; errors are ignored
    (another process may be removing it too)."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
            return
    except OSError:
        return
    shutil.rmtree(path, ignore_errors=True)


# --- writing ----------------------------------------------------------------------------------


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``os.umask`` can
    only be read by setting it, which races with other threads creating files)."""
    with suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _lock:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


@functools.cache
def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temp_prefix(name: str) -> str:
    return f".{name}.tmp-{_host()}-{os.getpid()}-"


def _temp_dir(key: str) -> tuple[Path, Path]:
    """(cache root, a new temporary build folder in it); see the module docstring for where
    the cache cannot be written."""
    root = cache_dir()
    try:
        return root, _make_temp_dir(root, key)
    except OSError as exc:
        if os.environ.get("SOL_CACHE_DIR"):
            raise CacheError(
                f"the compile cache SOL_CACHE_DIR={root} is not writable ({_reason(exc)}): make that folder "
                f"writable for this user, point SOL_CACHE_DIR to a writable folder, or unset it to use "
                f"{_default_dir()}") from exc
        fallback = _fall_back(root, exc)
        try:
            return fallback, _make_temp_dir(fallback, key)
        except OSError as again:
            raise CacheError(f"no writable compile cache: {root} ({_reason(exc)}) and the temporary "
                             f"{fallback} ({_reason(again)}); set SOL_CACHE_DIR to a writable folder") from again


def _make_temp_dir(root: Path, key: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if str(root) not in _swept:  # once per process and cache: temporaries of builds that died
        _swept.add(str(root))
        sweep(root)
    return Path(tempfile.mkdtemp(prefix=_temp_prefix(key), dir=root))


def _reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def _fall_back(root: Path, exc: OSError) -> Path:
    global _fallback
    with _lock:
        if _fallback is None or not _fallback.is_dir():
            _fallback = Path(tempfile.mkdtemp(prefix="sol-cache-"))
            warnings.warn(f"sol: the compile cache {root} is not writable ({_reason(exc)}); this process uses "
                          f"the temporary cache {_fallback}, so compiled networks are not kept for the next "
                          f"run: set SOL_CACHE_DIR to a writable folder to keep them", stacklevel=2)
        return _fallback


def write_file(path: Path, data: bytes) -> None:
    """Replace ``path`` by a file holding ``data``, atomically (a reader sees the old file or the
    new one, never part of one) and with the mode ``open`` would give it (umask)."""
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def write_checked(path: Path, data: bytes) -> None:
    """:func:`write_file` with the SHA-256 of ``data`` in front, checked by :func:`read_checked`."""
    write_file(path, _CHECKED_MAGIC + hashlib.sha256(data).digest() + data)


def read_checked(path: Path) -> bytes | None:
    """The data :func:`write_checked` stored at ``path``; None if absent, unreadable, of another
    format, or damaged (checksum mismatch). Meant for data that is unsafe to use when damaged
    (marshalled code objects can crash the interpreter)."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    head = len(_CHECKED_MAGIC) + 32
    if len(blob) < head or not blob.startswith(_CHECKED_MAGIC):
        return None
    data = blob[head:]
    if hashlib.sha256(data).digest() != blob[len(_CHECKED_MAGIC):head]:
        log.debug("sol: %s is damaged (checksum mismatch); ignored", path)
        return None
    return data


# --- temporaries, info, clear -----------------------------------------------------------------


def _temporary(path: Path) -> tuple[bool, bool]:
    """(is a temporary, is stale): stale when its process is gone on this host or it is old."""
    m = _TEMP.match(path.name)
    if m is None and not _LEGACY_TEMP.match(path.name):
        return False, False
    try:
        age = time.time() - path.lstat().st_mtime
    except OSError:
        return True, False
    if age > STALE_SECONDS:
        return True, True
    if m is None or m["host"] != _host():
        return True, False
    return True, not _alive(int(m["pid"]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _folders(root: Path) -> list[Path]:
    return [root, root / TEMPLATES]


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def sweep(root: Path | None = None) -> int:
    """Remove the stale temporaries in the cache (and its compiled-template folder); return how many."""
    removed = 0
    for folder in _folders(root or cache_dir()):
        for p in _listing(folder):
            temporary, stale = _temporary(p)
            if temporary and stale:
                _remove(p)
                removed += not os.path.lexists(p)
    return removed


def _size(path: Path) -> int:
    try:
        if path.is_symlink() or not path.is_dir():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def info() -> dict[str, object]:
    """The cache's path, its number of entries, its temporaries (builds in progress or left by
    killed ones; ``stale``: removable) and its size in bytes (all of it)."""
    root = cache_dir()
    entries = temporaries = stale = size = 0
    for folder in _folders(root):
        for p in _listing(folder):
            temporary, old = _temporary(p)
            temporaries += temporary
            stale += old
            entries += folder == root and not temporary and not p.name.startswith(".") and p.is_dir()
            if p.name != TEMPLATES:
                size += _size(p)
    return {"path": str(root), "entries": entries, "temporaries": temporaries, "stale": stale, "bytes": size}


@dataclass(frozen=True)
class Cleared:
    entries: int
    """entries removed"""
    temporaries: int
    """stale temporaries removed"""
    in_progress: int
    """temporaries of builds still running, left alone (removing them would fail those builds)"""


def clear() -> Cleared:
    """Remove every entry, the compiled templates and the stale temporaries."""
    root = cache_dir()
    temporaries = sweep(root)
    entries = in_progress = 0
    for p in _listing(root):
        if _temporary(p)[0]:
            in_progress += 1
        elif p.name == TEMPLATES:
            _remove(p)
        elif not p.name.startswith(".") and (p.is_dir() or p.is_symlink()):
            _remove(p)
            entries += 1
    return Cleared(entries, temporaries, in_progress)
