"""Names of a package imported on first use (PEP 562 module ``__getattr__``).

A package lists ``name -> defining module`` and gets the ``__getattr__`` and
``__dir__`` that import the module when the name is first looked up, so that
importing the package costs nothing it does not use.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, List, Mapping, Sequence, Tuple

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, names: Mapping[str, str], public: Sequence[str]
) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
      package: the package's ``__name__``.
      names: public name -> the module that defines it.
      public: the package's ``__all__`` (``dir()`` lists it).
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__
