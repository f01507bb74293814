"""A restricted unpickler for the datasets' pickled files.

The PKEF/COPF releases ship their data as pickles, and ``pickle.load`` runs whatever callable a
file names: a downloaded or hand-edited file could run ``os.system``. This loader resolves every
global a pickle asks for through a fixed table holding only what the real files need (numpy
arrays, dtypes and scalars, scipy sparse matrix classes, under the module paths that old and new
numpy/scipy versions write), and refuses anything else *before* it is called. Plain containers and
numbers (list, tuple, dict, int, float, str, bytes, None, bool) need no global and load as usual.

Names are mapped straight to the objects (not imported by name), so the deprecated spellings that
old files carry (``numpy.core.multiarray``, ``scipy.sparse.csr``) load without warnings.
Not admitted: ``_codecs.encode``, which numpy arrays pickled with protocol 2 need; re-save such files
with protocol 3 or later.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from bench.errors import DataError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


def _allowed_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = _multiarray._reconstruct
        table[(module, "scalar")] = _multiarray.scalar
    frombuffer = getattr(_numeric, "_frombuffer", None)
    if frombuffer is not None:
        for module in ("numpy.core.numeric", "numpy._core.numeric"):
            table[(module, "_frombuffer")] = frombuffer
    # scipy sparse classes: public namespace, the private modules of scipy >= 1.8 and the
    # deprecated public submodules older scipy wrote (``scipy.sparse.csr`` ...).
    for fmt in ("csr", "csc", "coo"):
        classes = {f"{fmt}_matrix": getattr(sp, f"{fmt}_matrix")}
        if hasattr(sp, f"{fmt}_array"):
            classes[f"{fmt}_array"] = getattr(sp, f"{fmt}_array")
        for module in ("scipy.sparse", f"scipy.sparse.{fmt}", f"scipy.sparse._{fmt}"):
            for cls_name, cls in classes.items():
                table[(module, cls_name)] = cls
    return table


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = _allowed_globals()


class _Refused(Exception):
    """Raised from ``find_class``: a global outside the table (never resolved, never called)."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualified = f"{module}.{name}"


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle hook
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(str(module), str(name)) from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("<persistent id>", repr(pid)[:60])


def loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with the restricted table; ``source`` names the origin in errors."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except _Refused as refused:
        raise DataError(
            f"{source}: refused to load: the pickle asks for the global '{refused.qualified}', "
            "which is not a numpy array, a scipy sparse matrix or a plain container; the file was "
            "not executed. Replace it with a trusted copy (e.g. `bench data fetch`)") from None
    except MemoryError:
        raise DataError(f"{source}: the pickle asks for more memory than is available; "
                        "the file is corrupted or not a dataset file") from None
    except Exception as exc:  # any parse failure of untrusted bytes: EOFError, UnpicklingError, ...
        raise DataError(f"{source}: cannot unpickle: truncated or not a pickle "
                        f"({type(exc).__name__}: {exc}); download the file again") from None


def load(path: str | Path) -> Any:
    """Load one pickled dataset file safely; errors name the file and what was refused."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise DataError(f"{path}: cannot unpickle: truncated or not a pickle (the file is empty)")
    return loads(data, source=str(path))
