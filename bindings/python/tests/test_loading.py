"""Finding the shared library: REVLEDGER_LIB first, then the repository's
target/release, then the system; a clear ImportError when none loads."""

from __future__ import annotations

import ctypes.util
import os
import shutil
from pathlib import Path

import pytest

import revledger

from support import PKG_ROOT, REPO_ROOT, child_env, run_python

WHICH = "import revledger; print(revledger.LIBRARY_PATH); print(revledger.__version__)"


def test_the_repository_build_is_found_without_configuration():
    env = child_env()
    del env["REVLEDGER_LIB"]
    done = run_python(WHICH, env=env)
    assert done.returncode == 0, done.stderr
    lib, version = done.stdout.split()
    assert Path(lib) == REPO_ROOT / "target" / "release" / "librevledger.so"
    assert version == revledger.__version__


def test_revledger_lib_comes_first(tmp_path: Path):
    copy = tmp_path / "librevledger-copy.so"
    shutil.copy(revledger.LIBRARY_PATH, copy)
    done = run_python(WHICH, env=child_env(REVLEDGER_LIB=str(copy)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == str(copy)


def test_a_revledger_lib_that_does_not_load_is_a_clear_import_error(tmp_path: Path):
    missing = tmp_path / "nowhere" / "librevledger.so"
    done = run_python("import revledger", env=child_env(REVLEDGER_LIB=str(missing)))
    assert done.returncode != 0
    assert "ImportError: revledger: cannot load the library named by REVLEDGER_LIB" in done.stderr
    assert str(missing) in done.stderr


@pytest.mark.skipif(ctypes.util.find_library("revledger") is not None,
                    reason="a system-wide librevledger is installed")
def test_no_library_anywhere_says_how_to_build_it(tmp_path: Path):
    # The package away from the repository, no REVLEDGER_LIB, nothing on the system.
    shutil.copytree(PKG_ROOT / "revledger", tmp_path / "revledger")
    env = child_env()
    del env["REVLEDGER_LIB"]
    env["PYTHONPATH"] = str(tmp_path)
    done = run_python("import revledger", env=env, cwd=tmp_path)
    assert done.returncode != 0
    assert "ImportError: revledger: cannot find the shared library librevledger.so" in done.stderr
    assert "cargo build --release --lib" in done.stderr
    assert "REVLEDGER_LIB" in done.stderr
