"""Loading untrusted files without running code: JSON and text, plain .npy arrays, pickled
.npy object arrays through a restricted unpickler, and torch files with `weights_only`.

`load_npy` parses the .npy header itself; plain dtypes are read without pickle; object arrays
(the W-TALC bundle, pickled by Python 2) are unpickled by `ArrayUnpickler`, which can build
numpy arrays, dtypes and scalars (plus str, bytes, numbers, lists, tuples, which need no
global) and refuses every other global: loading a crafted file runs no code. It is the C
unpickler with only the lookup of globals replaced, so as fast as np.load.
"""
import json
import os
import pickle
import re

import numpy as np

from core.errors import InputError, first_line, one_line
from core.names import check_video_name


def read_text(path):
    """A UTF-8 text file; InputError when missing, unreadable or not UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from None


def read_json(path, what="", or_none=False):
    """The JSON content of a file. A missing, unreadable or malformed file is an InputError
    naming it (`what` says what it should have held), or None with or_none=True (for our own
    files, whose absence is a state, not an error)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        if or_none:
            return None
        raise InputError(f"{path}: unreadable{' ' + what if what else ''} "
                         f"({one_line(e)})") from None


def read_rows(path, n_fields, what):
    """[(line number, fields)] of the non-blank lines, each exactly `n_fields` fields."""
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != n_fields:
            raise InputError(f"{path}: line {number}: expected {n_fields} fields ({what}), got "
                             f"{len(fields)}: {one_line(repr(line.strip()), 80)}")
        rows.append((number, fields))
    return rows


def read_video_list(path):
    """The video names of a split file, one a line (blank lines skipped), each checked."""
    return [check_video_name(fields[0], f"{path}: line {n}")
            for n, fields in read_rows(path, 1, "one video name")]


def _latin1_encode(text, encoding="latin1"):
    """`_codecs.encode` as Python 3 pickles bytes for protocol 2 (latin-1 only)."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _empty_bytes(*args):
    """`bytes()` as Python 3 pickles b'' for protocol 2 (nothing else)."""
    if args:
        raise pickle.UnpicklingError("bytes() with arguments")
    return b""


_MULTIARRAY = np._core.multiarray
ALLOWED_GLOBALS = {
    # what the real W-TALC files (Python 2) and numpy 1.x / 2.x pickles of arrays ask for
    ("numpy.core.multiarray", "_reconstruct"): _MULTIARRAY._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _MULTIARRAY._reconstruct,
    ("numpy.core.multiarray", "scalar"): _MULTIARRAY.scalar,
    ("numpy._core.multiarray", "scalar"): _MULTIARRAY.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,      # bytes in a Python 3 protocol-2 pickle
    ("__builtin__", "bytes"): _empty_bytes,     # b'' in a Python 3 protocol-2 pickle
    ("builtins", "bytes"): _empty_bytes,
}


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module, name):
        super().__init__(f"{module}.{name}")
        self.what = f"{module}.{name}"


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays of plain values and nothing else (the C unpickler, so as fast
    as np.load; only the lookup of globals is ours)."""

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _read_header(f, path):
    """(shape, fortran_order, dtype) of an open .npy file, positioned after the header."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise InputError(f"{path}: .npy format version {version[0]}.{version[1]} is not supported "
                     f"(1.0 or 2.0)")


def load_npy(path):
    """A .npy file as an array. Plain dtypes are read without pickle; object arrays (the
    W-TALC bundle) with `ArrayUnpickler` (Python-2 strings kept as bytes). InputError when
    the file is missing, damaged, or asks to build anything but arrays of plain values."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype = _read_header(f, path)
            if not dtype.hasobject:
                f.seek(0)
                return np.lib.format.read_array(f, allow_pickle=False)
            array = ArrayUnpickler(f, encoding="bytes", fix_imports=True).load()
    except InputError:
        raise
    except RefusedGlobal as e:
        raise InputError(f"{path}: refused to load: it asks to build {e.what} (only numpy "
                         f"arrays, dtypes, str, bytes, numbers, lists and tuples are allowed)"
                         ) from None
    except MemoryError:
        raise InputError(f"{path}: cannot read (too large to allocate)") from None
    except Exception as e:          # numpy and pickle raise many kinds for a damaged file
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {one_line(e)})") from None
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise InputError(f"{path}: cannot read (the pickle does not hold the {tuple(shape)} "
                         f"array its header announces)")
    return array


def load_array(path):
    """np.load of a plain (non-pickled) array; InputError when missing, pickled (an object
    array: loading it could run code), truncated or too large to allocate."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError(f"{path}: cannot read: a pickled object array, not a plain array "
                             f"of numbers (pickles are never loaded)") from None
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {first_line(e)})") from None
    except Exception as e:  # numpy raises many kinds for a damaged file
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {first_line(e)})") from None
    if not isinstance(x, np.ndarray):           # an .npz archive under an .npy name
        x.close()
        raise InputError(f"{path}: cannot read: not a single .npy array")
    return x


def load_torch_plain(path, refused, unreadable):
    """torch.load of an untrusted file with weights_only=True (tensors and plain values only;
    no code runs), onto the CPU. InputError "PATH: file not found", "PATH: <refused> (what it
    asked to build)" for a pickled object, "PATH: <unreadable> (the error)" otherwise."""
    import torch             # here only: the rest of core/ is torch-free
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is several lines of advice; keep what it refused to build
        asked = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f"asks to build {asked.group(1)}" if asked else first_line(e, 120)
        raise InputError(f"{path}: {refused} ({what})") from None
    except Exception as e:
        raise InputError(f"{path}: {unreadable} ({type(e).__name__}: {first_line(e)})") \
            from None


def load_tensor_dict(path, refused, unreadable):
    """A state dict of tensors under str names from an untrusted file (load_torch_plain);
    anything else (not a dict, a value that is not a tensor) is refused in one line."""
    import torch
    state = load_torch_plain(path, refused, unreadable)
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a state dict but a {type(state).__name__}")
    for key, value in state.items():
        if not isinstance(key, str) or not torch.is_tensor(value):
            raise InputError(f"{path}: {str(key)[:60]!r} holds a {type(value).__name__}, "
                             f"not a tensor")
    return state
