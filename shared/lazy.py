"""Packages whose names import their submodule on first use.

`shared.encoders` re-exports CLIP (open_clip, transformers) beside the official feature readers, and
`shared.metrics` the torchmetrics Metrics beside a Lightning-based one; importing every submodule for any
one name would make `avgen prepare` (and every other command) pay seconds of imports it never uses.
"""

from __future__ import annotations

import importlib
import sys
import types


class LazyPackage(types.ModuleType):
    """A package module whose exported names (`_lazy_owner`: name -> submodule) load on first use."""

    _lazy_owner: dict[str, str]

    def __getattr__(self, name: str):
        owner = self._lazy_owner.get(name)
        if owner is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(owner), name)
        setattr(self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        # importing a submodule binds its name in the package; where the package exports something of the
        # same name (`shared.metrics.inception_score`, the function), that keeps the name, as an eager
        # `from .inception_score import inception_score` in the package would have made it
        if isinstance(value, types.ModuleType) and self._lazy_owner.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._lazy_owner})


def lazy_package(package: str, exports: dict[str, list[str]]) -> None:
    """Make `package` (its `__name__`) export `exports` ({submodule: [names]}) on first use, in `__all__`."""
    module = sys.modules[package]
    module._lazy_owner = {name: owner for owner, names in exports.items() for name in names}
    module.__all__ = sorted(module._lazy_owner)
    module.__class__ = LazyPackage
