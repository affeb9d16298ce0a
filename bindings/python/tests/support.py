"""Helpers shared by the tests. The package is imported from this checkout (pyproject.toml puts
bindings/python on sys.path); it loads target/release/librevledger.so unless
REVLEDGER_LIB says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import revledger

PKG_ROOT = Path(__file__).resolve().parents[1]  # bindings/python
REPO_ROOT = PKG_ROOT.parents[1]


def child_env(**extra: str) -> Dict[str, str]:
    """The environment for a child Python that imports this package and library."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PKG_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["REVLEDGER_LIB"] = revledger.LIBRARY_PATH
    env.update(extra)
    return env


def run_python(code: str, *args: str, env: Optional[Dict[str, str]] = None,
               cwd: Optional[Path] = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (not a fork of this one) and waits for it.
    The working directory (first on the child's sys.path) is `cwd`, or the repository
    root, where no `revledger` package sits."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=child_env() if env is None else env,
        cwd=REPO_ROOT if cwd is None else cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


