"""Reading untrusted files and writing files safely: the one InputError, a restricted loader
for pickled .npy files, the checks of names and text read from data files, and the one
write-then-rename writer; the command-line frame every command shares (`OneLineParser`, `cli`).
Torch-free.

`load_npy` parses the .npy header itself; plain dtypes are read without pickle; object arrays
(the W-TALC bundle, pickled by Python 2) are unpickled by `ArrayUnpickler`, which can build
numpy arrays, dtypes and scalars (plus str, bytes, numbers, lists, tuples, which need no
global) and refuses every other global: loading a crafted file runs no code. It is the C
unpickler with only the lookup of globals replaced, so as fast as np.load.

A video name is data (`check_video_name`): it becomes part of file paths and of output lines,
so a name with a path separator, '.'/'..', whitespace or a control character is refused.

Every file the project writes goes through `write_atomically`: a temporary file in the same
folder, renamed over the target only when complete, so a crash never leaves a truncated
file and a link at the target is replaced, never written through.
"""
import argparse
import fcntl
import hashlib
import json
import os
import pickle
import sys
import tempfile
import unicodedata

import numpy as np


class InputError(ValueError):
    """Bad user input (a file, an option): reported as one line, exit code 2."""


def one_line(text, limit=200):
    """text on one line (whitespace runs collapsed), cut to `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def first_line(error, limit=200):
    """The first line of an exception's text (library messages can span many lines, e.g.
    torch's advice after a refused load), cut to `limit` characters."""
    lines = str(error).strip().splitlines()
    return one_line(lines[0] if lines else type(error).__name__, limit)


# ---------------------------------------------------------------------------
# The command-line frame of every command: one parser class, one error line, exit 2
# ---------------------------------------------------------------------------
ERROR_LIMIT = 400       # characters of an error line


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is reported as one line (no usage block), exit 2."""

    def error(self, message):
        print(f"error: {one_line(message, ERROR_LIMIT)}", file=sys.stderr)
        sys.exit(2)


def cli(main, argv=None):
    """Run a command's main(argv). Bad input (InputError, or a file that cannot be read or
    written) is one line `error: ...` on stderr and exit code 2; no traceback."""
    try:
        return main(argv)
    except InputError as e:
        message = str(e)
    except OSError as e:
        message = f"{e.filename or ''}: {e.strerror or e}"
    print(f"error: {one_line(message, ERROR_LIMIT)}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------
# .npy files: pickled object arrays through a restricted unpickler
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Names and strings
# ---------------------------------------------------------------------------

def as_text(x, where, what="a string"):
    """A str from a str or UTF-8 bytes (numpy's too); InputError otherwise."""
    if isinstance(x, (bytes, np.bytes_)):
        try:
            return bytes(x).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{where}: {what} {one_line(repr(bytes(x)), 60)} is not UTF-8"
                             ) from None
    if isinstance(x, (str, np.str_)):
        return str(x)
    raise InputError(f"{where}: expected {what}, found {type(x).__name__}")


def _name_problem(name):
    if name == "":
        return "empty"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if name in (".", ".."):
        return "is a relative folder name"
    for c in name:
        if c.isspace():
            return "contains whitespace"
        if unicodedata.category(c).startswith("C"):
            return "contains a control character"
    return None


def check_video_name(name, where):
    """The video name as a str, if it is a plain name (it becomes part of file paths and of
    output lines); InputError naming `where` and the video otherwise."""
    name = as_text(name, where, "video name")
    problem = _name_problem(name)
    if problem:
        raise InputError(f"{where}: video {one_line(repr(name), 80)}: the name {problem}; a "
                         f"video name must be a plain file name without whitespace")
    return name


def check_label(label, where, video):
    """A class label: a non-empty string (bytes decoded)."""
    if label is None or isinstance(label, (bool, int, float, list, dict)):
        raise InputError(f"{where}: video {video}: label {label!r} is not a class name")
    label = as_text(label, f"{where}: video {video}", "label")
    if not label.strip():
        raise InputError(f"{where}: video {video}: empty label")
    return label


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


def file_sha256(path):
    """The sha256 of a file's bytes (hex), read a megabyte at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


# ---------------------------------------------------------------------------
# Writing: a temporary file in the same folder, renamed when complete
# ---------------------------------------------------------------------------

def hold_lock(folder, name, busy):
    """An exclusive lock on FOLDER/NAME, held until the file descriptor returned is closed
    (or the process ends), the file opened without following a link: two commands never
    write into one folder at once. busy: what the refusal says is running there."""
    path = os.path.join(folder, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        raise InputError(f"{path}: cannot be used ({e.strerror}; a link is never followed)") \
            from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InputError(f"{folder}: {busy}") from None
    return fd


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path, write):
    """Create `path` by calling `write(tmp)`, which writes the whole file at the path `tmp`
    (a temporary file in the same folder), then rename `tmp` over `path`: a crash never
    leaves a truncated file, and a link at `path` is replaced, never followed. The folder is
    created if missing; the file gets the permissions the umask gives a new file. An OSError
    (no space, no permission, a folder at `path`) becomes InputError "PATH: cannot write"."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
        os.close(fd)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())          # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.lexists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
        raise


def _write_synced(tmp, data):
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())                   # on disk before the rename makes it visible


def atomic_write_text(path, text):
    """`text` as a UTF-8 file at `path`, through write_atomically (synced before the rename)."""
    data = text.encode("utf-8")
    write_atomically(path, lambda tmp: _write_synced(tmp, data))


def atomic_write_json(path, obj):
    """`obj` as indented JSON (one trailing newline) at `path`, through write_atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
