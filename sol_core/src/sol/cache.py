"""The compile cache: artifacts keyed by a hash of source, compiler identity and plugin versions.

An entry is a directory holding the artifact and a manifest with the artifact's SHA-256. It is
built in a private temporary directory and renamed into place, so a reader never sees half an
entry and two processes building the same key both succeed (the loser discards its copy). An
entry whose manifest or checksum does not match is rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("sol")
MANIFEST = "manifest.json"


def cache_dir() -> Path:
    root = os.environ.get("SOL_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "sol"


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


def lookup(key: str) -> Path | None:
    """The artifact for ``key`` if a sound entry exists, else None (a damaged one is removed)."""
    entry = cache_dir() / key
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        artifact = entry / manifest["artifact"]
        if _sha256(artifact) == manifest["sha256"]:
            return artifact
        log.warning("sol cache entry %s is damaged (checksum mismatch); rebuilding", entry)
    except FileNotFoundError:
        if not entry.exists():
            return None
        log.warning("sol cache entry %s is incomplete; rebuilding", entry)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("sol cache entry %s is unreadable (%s); rebuilding", entry, exc)
    _remove(entry)
    return None


def get_or_build(key: str, build: Callable[[Path], Path]) -> tuple[Path, bool]:
    """Return (artifact path, was_cached). ``build(tmpdir)`` writes the artifact into tmpdir."""
    found = lookup(key)
    if found is not None:
        return found, True
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        artifact = build(tmp)
        manifest = {"artifact": artifact.relative_to(tmp).as_posix(), "sha256": _sha256(artifact)}
        (tmp / MANIFEST).write_text(json.dumps(manifest))
        entry = root / key
        try:
            os.rename(tmp, entry)
        except OSError:  # another process won the race, or a damaged entry is in the way
            found = lookup(key)
            if found is not None:
                return found, True
            _remove(entry)
            os.rename(tmp, entry)
        return entry / manifest["artifact"], False
    finally:
        if tmp.exists():
            _remove(tmp)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def info() -> dict[str, object]:
    root = cache_dir()
    entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")] if root.exists() else []
    size = sum(f.stat().st_size for p in entries for f in p.rglob("*") if f.is_file())
    return {"path": str(root), "entries": len(entries), "bytes": size}


def clear() -> int:
    root = cache_dir()
    if not root.exists():
        return 0
    n = 0
    for p in root.iterdir():
        if p.is_dir():
            _remove(p)
            n += 1
    return n
