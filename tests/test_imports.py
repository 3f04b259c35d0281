"""Every module imports: catches a name used but never imported, in code no other test reaches."""

import importlib
import pkgutil

import tunebench


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(tunebench.__path__, "tunebench.")]
    assert "tunebench.cli.main" in names
    for name in names:
        importlib.import_module(name)
