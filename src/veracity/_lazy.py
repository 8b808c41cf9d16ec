"""Lazy package namespaces (PEP 562): a package's `__init__` names what it exports and from which submodule, and a
name's submodule is imported on first use. `from veracity.steer import ResidualSteer` works as before, while a
command that needs only light modules (`veracity report`, `runs list`) never pays for torch and transformers (seconds
each) because some package `__init__` imported everything."""

from __future__ import annotations

import functools
import importlib
import sys
import types
from typing import Callable


class _Package(types.ModuleType):
    """A lazy package whose exported names win over same-named submodules: importing `veracity.steer.apply` (the
    module) must not replace `veracity.steer.apply` (the function it exports), as the eager `__init__` never did."""

    def __setattr__(self, name: str, value: object) -> None:
        if (isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}"
                and name in self.__dict__.get("_EXPORTS", {}) and self._EXPORTS[name] == name):
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The `(__getattr__, __dir__)` of `package`, whose public names are `exports` (name -> submodule, relative to
    the package: `"apply"`, or `".base"` for the parent's). An exported name is imported from its submodule on first access and then kept on the package."""
    module = sys.modules[package]
    if any(name == sub for name, sub in exports.items()):
        module.__class__ = _Package

    def __getattr__(name: str) -> object:
        sub = exports.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module("." + sub, package), name)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(exports))

    return __getattr__, __dir__


def torch_mode(mode: str = "no_grad") -> Callable[[Callable], Callable]:
    """`@torch.no_grad()` (or `"inference_mode"`) for a plain function, importing torch when the function is called,
    not when its module is imported: so a light command (`veracity report`) can import a study module for its
    Config and Result types without torch."""
    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            import torch

            with getattr(torch, mode)():
                return fn(*args, **kwargs)
        return wrapper
    return decorate
