"""Small helpers of the method's layers: seeding, devices, the log."""
import platform
import random
import re

import numpy as np
import torch

from core.errors import InputError
from core.files import open_no_follow


def set_seed(seed):
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cuda_available():
    return torch.cuda.is_available()


def resolve_device(name):
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    return torch.device(name)


def device_here(given, saved, say, what="the run"):
    """Where a saved run executes on this machine: --device when given (refused when it is
    not here); else the run's saved device when this machine has it; else the CPU, said in
    one line. `device` says where a run executes, never what it computes."""
    if given is not None:
        return resolve_device(given)
    if saved == "cuda" and not torch.cuda.is_available():
        say(f"{what} was saved with --device cuda and this machine has no CUDA device: "
            f"it runs on the CPU (the last digits may differ)")
        return torch.device("cpu")
    return resolve_device(saved)


def blas():
    """The BLAS torch was built with ('mkl', 'open', ...; None when it does not say)."""
    found = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    return found.group(1) if found else None


def device_record(device):
    """What a run's or a video's records say of the device that made them: its type, name
    and the torch version; on a CPU also what moves the last digits (the ATen CPU kernels'
    instruction set and the BLAS); on CUDA whether TF32 products and convolutions were on."""
    device = torch.device(device)
    out = {"device": device.type, "torch": str(torch.__version__)}
    if device.type == "cuda":
        out.update(name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                   tf32_conv=torch.backends.cudnn.allow_tf32)
    else:
        out.update(name=platform.processor() or platform.machine(),
                   cpu_capability=torch.backends.cpu.get_cpu_capability(), blas=blas())
    return out


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

