"""Small helpers of the method's layers: seeding, devices, the log."""
import random

import numpy as np
import torch

from core.errors import InputError
from core.files import open_no_follow


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

