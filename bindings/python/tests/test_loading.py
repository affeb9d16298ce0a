"""The installed package: it imports from any directory with no environment variable,
carries the compiled library (no ctypes, no separately built .so to find), has the
library's version, and ships type stubs that match the compiled module."""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.metadata
import inspect
import os
from pathlib import Path

import revledger
from revledger import Ledger

from support import REPO_ROOT, SOURCE, child_env, run_python

USE = """
import sys, revledger
from revledger import Ledger, Scope
with Ledger.open_writer(sys.argv[1]) as w, Ledger.open_reader(sys.argv[1]) as r:
    w.revoke(Scope.ROLE, "acme", "super_admin", 2000)
    print(r.check("acme", "john", ["super_admin"], issued_at=1999).revoked)
print(revledger.__file__)
print(revledger.LIBRARY_PATH)
print("ctypes" in sys.modules)
"""


def test_the_installed_package_works_from_any_directory_without_configuration(tmp_path: Path):
    env = child_env()
    assert "PYTHONPATH" not in env and "REVLEDGER_LIB" not in env
    done = run_python(USE, str(tmp_path / "acme.ledger"), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    revoked, init, library, uses_ctypes = done.stdout.split("\n")[:4]
    assert revoked == "True"
    # The compiled module is part of the package, beside its __init__.py.
    assert Path(library).parent == Path(init).parent
    assert Path(library).name.startswith("_revledger.")
    assert any(library.endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES)
    assert uses_ctypes == "False"


def test_the_distribution_has_the_library_version():
    assert importlib.metadata.version("revledger") == revledger.__version__
    assert revledger.__version__ == revledger._revledger.version()


def test_the_package_ships_type_stubs_and_the_typed_marker():
    installed = Path(revledger.__file__).parent
    assert (installed / "py.typed").is_file()
    assert (installed / "_revledger.pyi").is_file()
    assert (installed / "_revledger.pyi").read_text() == (SOURCE / "_revledger.pyi").read_text()


def stub_methods():
    """name -> parameter names, for every method of Ledger in _revledger.pyi."""
    tree = ast.parse((SOURCE / "_revledger.pyi").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Ledger")
    out = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
            props = [d for d in node.decorator_list if isinstance(d, ast.Name) and d.id == "property"]
            out[node.name] = None if props else names
    return out


def test_the_stubs_match_the_compiled_module():
    stubs = stub_methods()
    public = {n for n in dir(Ledger) if not n.startswith("_")}
    assert public == {n for n in stubs if not n.startswith("_")}
    for name, params in stubs.items():
        attr = inspect.getattr_static(Ledger, name)
        if params is None:
            assert not callable(attr), f"{name} is a property in the stub"
            continue
        if name in ("__new__", "__exit__"):
            continue  # variadic in both
        sig = inspect.signature(getattr(Ledger, name))
        runtime = [p for p in sig.parameters]
        expected = [p for p in params if p not in ("self", "cls")]
        if runtime and runtime[0] in ("self", "$self"):
            runtime = runtime[1:]
        assert runtime == expected, f"Ledger.{name}: runtime {runtime}, stub {expected}"
    module_stub = ast.parse((SOURCE / "_revledger.pyi").read_text())
    names = {n.name for n in module_stub.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    names |= {t.target.id for t in module_stub.body if isinstance(t, ast.AnnAssign)}
    assert {"Ledger", "version", "MAX_KEY_LEN", "MAX_ROLES"} <= names
    for name in names - {"PathLike"}:
        assert hasattr(revledger._revledger, name), name


def test_a_ledger_is_a_class_of_the_compiled_module():
    assert Ledger is revledger._revledger.Ledger
    assert Ledger.__module__ == "revledger"
    assert os.path.samefile(revledger.LIBRARY_PATH, revledger._revledger.__file__)
    assert REPO_ROOT.is_dir()
