"""Small helpers shared by the other modules: seeding, devices, safe writes, logging."""
import os
import random
import sys

import numpy as np
import torch

from readers.safe_io import InputError, write_atomically


def set_seed(seed):
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name):
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    return torch.device(name)


def atomic_torch_save(obj, path):
    """torch.save through safe_io.write_atomically (a temporary file renamed over `path`).
    Saved through a file object, so the archive's inner folder is always named 'archive':
    given a path, torch names it after the (random) temporary file, and the same weights
    would give different bytes in every run."""
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


class Logger:
    """Prints to the console and writes the same lines to a log file. Lines said before the
    file is opened are kept and written first when it is."""

    def __init__(self, quiet=False):
        self.quiet = quiet
        self.file = None
        self.pending = []

    def fresh(self):
        """A new Logger with the same setting and the lines this one has kept (not reprinted)."""
        new = Logger(self.quiet)
        new.pending = list(self.pending)
        return new

    def open(self, path, append=False):
        """Start the log file (append=True continues it, as on --resume). Never through a
        symbolic link: one is replaced, or refused when appending."""
        self.file = open_no_follow(path, append)
        for line in self.pending:
            self.file.write(line + "\n")
        self.pending = []
        self.file.flush()

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        if not self.quiet:
            print(line, flush=True)
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()
        else:
            self.pending.append(line)

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


def warn(message):
    """A warning on stderr, one line."""
    print(f"warning: {message}", file=sys.stderr, flush=True)

