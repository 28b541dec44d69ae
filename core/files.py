"""Writing files and guarding folders: every file the project writes goes through
`write_atomically` (a temporary file in the same folder, renamed over the target only when
complete: a crash never leaves a truncated file, and a link at the target is replaced, never
written through); logs are opened without following a link (`open_no_follow`); one command
at a time holds a folder (`hold_lock`); `file_sha256`."""
import fcntl
import hashlib
import json
import os
import tempfile

from core.errors import InputError

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the repository


def file_sha256(path):
    """The sha256 of a file's bytes (hex), read a megabyte at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def atomic_write_bytes(path, data):
    """`data` (bytes) as a file at `path`, through write_atomically (synced before the
    rename)."""
    write_atomically(path, lambda tmp: _write_synced(tmp, data))


def atomic_write_text(path, text):
    """`text` as a UTF-8 file at `path` (atomic_write_bytes)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    """`obj` as indented JSON (one trailing newline) at `path`, through write_atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def to_cpu(obj):
    """obj with every tensor in it (in dicts, lists and tuples) copied to the CPU."""
    import torch
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        out = type(obj)((k, to_cpu(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):                 # a state dict's module versions
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def atomic_torch_save(obj, path):
    """torch.save through write_atomically (a temporary file renamed over `path`), every
    tensor as a CPU tensor: weights and checkpoints load on any machine with a plain
    torch.load, and the same weights give the same bytes whichever device trained them.
    Saved through a file object, so the archive's inner folder is always named 'archive':
    given a path, torch names it after the (random) temporary file, and the same weights
    would give different bytes in every run."""
    import torch                 # here only: the rest of core/ is torch-free
    obj = to_cpu(obj)

    def write(tmp):
        with open(tmp, "wb") as f:
            torch.save(obj, f)
    write_atomically(path, write)


def open_no_follow(path, append=False):
    """A text file opened for writing that is never a link's target. append=False: whatever
    is at `path` (a symbolic or hard link included) is removed and a new file created;
    append=True: a symbolic link, or a file with other hard links, is refused (InputError)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_EXCL)
    try:
        if not append and os.path.lexists(path):
            os.remove(path)
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if os.path.islink(path):
            raise InputError(f"{path}: is a symbolic link; it is never written through") from None
        raise InputError(f"{path}: cannot be written ({e.strerror})") from None
    if os.fstat(fd).st_nlink > 1:
        os.close(fd)
        raise InputError(f"{path}: has other hard links; it is never written through")
    return os.fdopen(fd, "a" if append else "w", encoding="utf-8")
