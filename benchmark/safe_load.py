"""Read the tensors out of a released checkpoint without running any of its pickled code.

Released checkpoints (PyTorch Lightning's above all) keep objects next to the
weights: ``hyper_parameters`` with an argparse Namespace, an OmegaConf config,
paths, numpy scalars, callbacks' states. ``torch.load(weights_only=True)``
refuses such files; ``weights_only=False`` would run whatever the pickle names
(``os.system``, ``builtins.exec``, a ``__reduce__`` of any class), and a
checkpoint is a file downloaded from the internet.

:func:`load_tensors` tries torch's weights-only loader first; when that refuses,
it reads the file again through :data:`INERT_PICKLE`, a pickle module whose
unpickler resolves only a tiny allow-list of globals (torch's tensor-rebuild
functions, storages, dtypes, ``torch.Size``, ``OrderedDict``, plain containers)
and turns every other global into an :class:`Inert` placeholder: calling it,
building it or filling it records nothing and runs nothing. The tensors come out
as tensors, everything else as placeholders that only say what they were.
"""

from __future__ import annotations

import builtins
import codecs
import collections
import pickle
import types
import warnings
from pathlib import Path
from typing import Any

import torch

#: (module, name) pairs resolved to the real object: tensors, storages and plain containers
_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch", "UntypedStorage"): torch.UntypedStorage,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): codecs.encode,  # how protocol 2 spells a bytes object (codecs re-exports _codecs')
    **{("builtins", n): getattr(builtins, n) for n in ("dict", "list", "tuple", "set", "frozenset", "complex")},
    **{("__builtin__", n): getattr(builtins, n) for n in ("dict", "list", "tuple", "set", "frozenset", "complex")},
}


class Inert:
    """Stands in for a global outside the allow-list: it takes any arguments, state
    and items and keeps none of them, so nothing the pickle names ever runs."""

    name = "?"  # the global it replaces, "module.name"

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:  # NEWOBJ passes the class's arguments here
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Inert:
        return type(self)()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:  # a dict subclass's items
        pass

    def append(self, item: Any) -> None:  # a list subclass's items
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:  # a set subclass's items
        pass

    def __repr__(self) -> str:
        return f"<not loaded: {self.name}>"


class InertUnpickler(pickle.Unpickler):
    """Resolves the allow-list; any other global becomes an :class:`Inert` subclass."""

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)  # dtypes are pickled as the global torch.<dtype>
        return type(name, (Inert,), {"name": f"{module}.{name}", "__module__": __name__})


def _load(file, **kwargs: Any) -> Any:
    """``pickle.load`` through :class:`InertUnpickler` (torch's legacy format reads its header with it)."""
    return InertUnpickler(file, **kwargs).load()


#: a pickle module for ``torch.load(pickle_module=...)``: torch subclasses its Unpickler
#: (storages, persistent ids) and its ``find_class`` ends in ours
INERT_PICKLE = types.ModuleType("inert_pickle")
INERT_PICKLE.Unpickler = InertUnpickler
INERT_PICKLE.load = _load
INERT_PICKLE.__version__ = "1"


def torch_load(path: Path, **kwargs: Any) -> Any:
    """``torch.load`` without torch's ``UserWarning`` about a file's pickle protocol (a raw or
    planted pickle triggers it before being refused): the caller reports such a file in one line."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pickle protocol.*", category=UserWarning)
        return torch.load(path, map_location="cpu", **kwargs)


def load_tensors(path: Path) -> Any:
    """The object in ``path`` with every tensor loaded and no pickled code run.

    torch's weights-only loader first (the fast, well-trodden path); a file it
    refuses is read again with :data:`INERT_PICKLE`. Raises what the reading
    raises (pickle.UnpicklingError, RuntimeError, EOFError, ...) for a file that
    is not a PyTorch checkpoint at all."""
    try:
        return torch_load(path, weights_only=True)
    except pickle.UnpicklingError:
        pass  # not only weights (or not a pickle at all: the second reading says which)
    return torch_load(path, weights_only=False, pickle_module=INERT_PICKLE)
