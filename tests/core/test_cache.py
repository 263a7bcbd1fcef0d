"""The compile cache: reuse, damage detection, concurrent writers."""

from __future__ import annotations

import hashlib
import io
import json
import marshal
import os
import pickle
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sol import cache


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path))
    return tmp_path


def _build(payload: bytes):  # type: ignore[no-untyped-def]
    calls = []

    def build(tmp: Path) -> Path:
        calls.append(tmp)
        out = tmp / "lib.so"
        out.write_bytes(payload)
        return out

    return build, calls


def test_second_lookup_hits() -> None:
    build, calls = _build(b"abc")
    a, hit1 = cache.get_or_build("k1", build)
    b, hit2 = cache.get_or_build("k1", build)
    assert (hit1, hit2) == (False, True) and a == b and len(calls) == 1
    assert a.read_bytes() == b"abc"


def test_damaged_entry_is_rebuilt_not_loaded(caplog: pytest.LogCaptureFixture) -> None:
    build, calls = _build(b"good")
    art, _ = cache.get_or_build("k2", build)
    art.write_bytes(b"corrupted")
    again, hit = cache.get_or_build("k2", build)
    assert not hit and len(calls) == 2 and again.read_bytes() == b"good"
    assert "damaged" in caplog.text


def test_entry_without_manifest_is_rebuilt(_private_cache: Path) -> None:
    (_private_cache / "k3").mkdir()
    (_private_cache / "k3" / "lib.so").write_bytes(b"half")
    build, calls = _build(b"full")
    art, hit = cache.get_or_build("k3", build)
    assert not hit and art.read_bytes() == b"full"


def test_failed_build_leaves_nothing_behind(_private_cache: Path) -> None:
    def boom(tmp: Path) -> Path:
        (tmp / "partial").write_text("x")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("k4", boom)
    assert list(_private_cache.iterdir()) == []


_WORKER = """
import sys
from sol import cache
art, _ = cache.get_or_build("shared", lambda tmp: (tmp / "a.bin").write_bytes(b"x" * 100000) and tmp / "a.bin")
sys.stdout.write(art.read_bytes()[:10].decode())
"""


def test_concurrent_processes_agree(_private_cache: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs == ["x" * 10] * 4
    assert [p.name for p in _private_cache.iterdir()] == ["shared"]


# --- damage of every kind is a miss, never a crash (issue #14, item 6) -------------------------


@pytest.mark.parametrize("manifest", ["[]", '{"artifact": 3}', '"text"', "null", '{"artifact": "lib.so"}',
                                      '{"artifact": "lib.so", "sha256": 5}', "\xff\xfe not utf-8"],
                         ids=["list", "int-artifact", "string", "null", "no-sha", "int-sha", "binary"])
def test_manifest_of_the_wrong_shape_is_rebuilt(manifest: str, _private_cache: Path) -> None:
    build, calls = _build(b"good")
    art, _ = cache.get_or_build("km", build)
    (art.parent / cache.MANIFEST).write_bytes(manifest.encode("latin-1"))
    again, hit = cache.get_or_build("km", build)
    assert not hit and len(calls) == 2 and again.read_bytes() == b"good"


def test_manifest_pointing_outside_its_entry_is_not_followed(_private_cache: Path) -> None:
    """A manifest naming ``../x`` with x's true checksum must not make x the artifact."""
    outside = _private_cache / "outside.so"
    outside.write_bytes(b"someone else's library")
    build, calls = _build(b"good")
    art, _ = cache.get_or_build("kp", build)
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    for name in ("../outside.so", str(outside)):
        (art.parent / cache.MANIFEST).write_text(json.dumps({"artifact": name, "sha256": digest}))
        assert cache.lookup("kp") is None
        again, hit = cache.get_or_build("kp", build)
        assert not hit and again.read_bytes() == b"good"


@pytest.mark.parametrize("damage", ["file", "symlink-loop", "dangling-symlink", "symlink-to-entry"])
def test_entry_that_is_no_directory_is_rebuilt(damage: str, _private_cache: Path) -> None:
    build, calls = _build(b"good")
    entry = _private_cache / "kf"
    if damage == "file":
        entry.write_bytes(b"not a directory")
    elif damage == "symlink-loop":
        entry.symlink_to(entry)
    elif damage == "dangling-symlink":
        entry.symlink_to(_private_cache / "nowhere")
    else:
        other, _ = cache.get_or_build("other", build)
        entry.symlink_to(other.parent)
    for _ in range(2):  # and every later lookup works too
        art, _hit = cache.get_or_build("kf", build)
        assert art.read_bytes() == b"good"
    assert entry.is_dir() and not entry.is_symlink()


_KILLED = """
import os, signal, sys
from sol import cache

def build(tmp):
    (tmp / "half.o").write_bytes(b"x" * 1000)
    os.kill(os.getpid(), signal.SIGKILL)  # killed mid-compile

cache.get_or_build("killed", build)
"""


def test_temporaries_of_a_killed_build_are_counted_and_removed(_private_cache: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from sol import cli

    proc = subprocess.run([sys.executable, "-c", _KILLED], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9
    left = [p for p in _private_cache.iterdir() if p.name.startswith(".killed.")]
    assert len(left) == 1
    i = cache.info()
    assert (i["entries"], i["temporaries"], i["stale"]) == (0, 1, 1) and int(str(i["bytes"])) >= 1000
    assert cli.main(["cache", "info"]) == 0
    assert "1 temporaries (1 left by interrupted builds: 'sol cache clear' removes them)" in capsys.readouterr().out
    # the next build in this cache (a new process: a fresh sweep) removes it
    cache._swept.clear()
    build, _ = _build(b"ok")
    cache.get_or_build("next", build)
    assert not left[0].exists()


def test_clear_removes_stale_temporaries_and_keeps_a_running_build(_private_cache: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from sol import cli

    build, _ = _build(b"ok")
    cache.get_or_build("entry", build)
    dead = _private_cache / f".dead.tmp-{cache._host()}-{_dead_pid()}-abc12345"
    dead.mkdir()
    old_style = _private_cache / ".0123456789abcdef0123456789abcdef.a1b2c3d4"  # before temporaries named their pid
    old_style.mkdir()
    day_ago = time.time() - cache.STALE_SECONDS - 60
    os.utime(old_style, (day_ago, day_ago))
    running = _private_cache / f".running.tmp-{cache._host()}-{os.getpid()}-abc12345"
    running.mkdir()
    assert cli.main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 entries and 2 temporaries" in out and "1 builds in progress left alone" in out
    assert sorted(p.name for p in _private_cache.iterdir()) == [running.name]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_entries_respect_the_umask(_private_cache: Path) -> None:
    """A cache shared by a group (umask 002) gets group-writable entries, not mkdtemp's 0700."""
    old = os.umask(0o002)
    try:
        build, _ = _build(b"shared")
        art, _ = cache.get_or_build("ku", build)
        cache.write_file(_private_cache / "single", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(art.parent.stat().st_mode) == 0o775
    assert stat.S_IMODE((art.parent / cache.MANIFEST).stat().st_mode) == 0o664
    assert stat.S_IMODE((_private_cache / "single").stat().st_mode) == 0o664


def test_checked_file_detects_any_damage(_private_cache: Path) -> None:
    path = _private_cache / "data"
    cache.write_checked(path, b"payload" * 100)
    assert cache.read_checked(path) == b"payload" * 100
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 1
    path.write_bytes(bytes(blob))
    assert cache.read_checked(path) is None
    path.write_bytes(b"")
    assert cache.read_checked(path) is None
    assert cache.read_checked(_private_cache / "absent") is None


# A template cache entry whose code was replaced (damage that still unmarshals): before #14 the
# process ran it (here: exit 77; random damage segfaulted Python). Now it is a checksum miss.
_RENDER = """
import sys
from sol import codegen
text = codegen.render("sol_x86", "library.j2")
sys.stdout.write("rendered %d" % len(text))
"""
_EVIL_CODE = "import os\nos._exit(77)\n"


def _replace_template_code(folder: Path) -> int:
    """Replace the marshalled code in every compiled template under ``folder``, leaving what
    precedes it (jinja2's header and source checksum, and whatever sol puts before that)."""
    from jinja2.bccache import bc_magic

    done = 0
    for f in folder.iterdir():
        blob = f.read_bytes()
        at = blob.find(bc_magic)
        if at < 0:
            continue
        stream = io.BytesIO(blob[at + len(bc_magic):])
        pickle.load(stream)  # jinja2's checksum of the template source
        head = blob[:at + len(bc_magic) + stream.tell()]
        f.write_bytes(head + marshal.dumps(compile(_EVIL_CODE, "<evil>", "exec")))
        done += 1
    return done


def test_damaged_template_cache_is_never_run(_private_cache: Path) -> None:
    first = subprocess.run([sys.executable, "-c", _RENDER], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert _replace_template_code(_private_cache / cache.TEMPLATES) >= 1
    again = subprocess.run([sys.executable, "-c", _RENDER], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout == first.stdout, (again.returncode, again.stderr[-2000:])
    # and the damaged entries were replaced by good ones
    third = subprocess.run([sys.executable, "-c", _RENDER], capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and third.stdout == first.stdout


@pytest.mark.parametrize("junk", [b"", b"\x00" * 7, bytes(range(256)) * 4], ids=["empty", "short", "garbage"])
def test_garbage_template_cache_files_are_misses(junk: bytes, _private_cache: Path) -> None:
    first = subprocess.run([sys.executable, "-c", _RENDER], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0
    for f in (_private_cache / cache.TEMPLATES).iterdir():
        f.write_bytes(junk)
    again = subprocess.run([sys.executable, "-c", _RENDER], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout == first.stdout, again.stderr[-2000:]


# --- a cache that cannot be written (issue #14, item 7) -----------------------------------------


def test_explicit_unwritable_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sol.errors import CacheError

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SOL_CACHE_DIR", str(blocker / "cache"))
    build, calls = _build(b"x")
    with pytest.raises(CacheError, match=r"SOL_CACHE_DIR=.*a-file/cache is not writable.*point SOL_CACHE_DIR"):
        cache.get_or_build("kw", build)
    assert calls == []


def test_default_unwritable_cache_falls_back_with_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.delenv("SOL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(cache, "_fallback", None)
    build, _ = _build(b"x")
    with pytest.warns(UserWarning, match=r"a-file/sol is not writable.*set SOL_CACHE_DIR") as warned:
        art, _ = cache.get_or_build("kd", build)
        art2, hit = cache.get_or_build("kd", build)
        cache.get_or_build("ke", build)
    assert len(warned) == 1 and hit and art == art2 and art.read_bytes() == b"x"
    assert cache.cache_dir() == art.parent.parent != blocker / "sol"
    shutil.rmtree(cache.cache_dir())
