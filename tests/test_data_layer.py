"""The data layer's seams: it does not import the options layer (the layouts' snippet lengths
are handed in), and the HDF5 writer's write-then-rename leaves either the whole file or
nothing."""
import os
import stat
import subprocess
import sys

import pytest

from dataset import layout_rate
from core.files import write_atomically
from opts import layout_snippet_seconds
from core.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_data_layer_does_not_import_the_options_layer():
    code = ("import sys, dataset, readers.features, readers.layouts, readers.hdf5_format; "
            "print(sorted(m for m in ('opts', 'run') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_each_layout_has_its_own_snippet_length():
    assert layout_snippet_seconds() == {"wtalc": 0.64, "folders": 0.64, "emmil": 1.25,
                                        "wtalc-unt": 0.4}


def test_layout_rate_asked_for_wins_over_the_layouts_own():
    rates = {"wtalc": 0.64, "emmil": 1.25}
    assert layout_rate("emmil", None, rates) == 1.25
    assert layout_rate("emmil", 0.5, rates) == 0.5
    assert layout_rate("folders", 2, None) == 2.0
    with pytest.raises(ValueError, match="no snippet length for the folders layout"):
        layout_rate("folders", None, rates)


def test_write_atomically_renames_the_finished_file(tmp_path):
    path = tmp_path / "sub" / "out.h5"

    def write(tmp):
        assert os.path.dirname(tmp) == str(tmp_path / "sub") and tmp.endswith(".h5")
        with open(tmp, "w") as f:
            f.write("whole")

    write_atomically(str(path), write)
    assert path.read_text() == "whole"
    assert os.listdir(tmp_path / "sub") == ["out.h5"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_write_atomically_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "out.h5"
    path.write_text("old")

    def fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise InputError("video v: bad")

    with pytest.raises(InputError, match="video v: bad"):
        write_atomically(str(path), fail)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.h5"]

    def disk_full(tmp):
        raise OSError(28, "No space left on device")

    with pytest.raises(InputError, match=r"out.h5: cannot write \(.*No space left"):
        write_atomically(str(path), disk_full)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.h5"]
