"""The one write-then-rename writer (core.files.write_atomically) and the writers built on it;
evaluate.py and the options layer stay importable without torch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import evaluate
from core.cli import cli
from core.errors import InputError
from core.files import atomic_write_json, atomic_write_text, write_atomically

ROOT = Path(__file__).resolve().parents[1]


def leftovers(folder):
    return [n for n in os.listdir(folder) if n.startswith(".tmp-")]


def test_writes_through_a_temporary_file_with_umask_permissions(tmp_path):
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert os.path.dirname(tmp) == str(tmp_path / "new")      # same folder, created
        assert not (tmp_path / "new" / "a.bin").exists()           # not there before the rename
        Path(tmp).write_bytes(b"\x00ours")

    old = os.umask(0o027)
    try:
        write_atomically(str(tmp_path / "new" / "a.bin"), write)
    finally:
        os.umask(old)
    assert (tmp_path / "new" / "a.bin").read_bytes() == b"\x00ours"
    assert os.path.basename(seen[0]).startswith(".tmp-")
    assert os.stat(tmp_path / "new" / "a.bin").st_mode & 0o777 == 0o640
    assert leftovers(tmp_path / "new") == []


def test_a_link_at_the_target_is_replaced_never_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("theirs")
    for name, write in [("a.txt", lambda p: atomic_write_text(p, "ours\n")),
                        ("b.json", lambda p: atomic_write_json(p, {"x": [1, 2]}))]:
        (tmp_path / name).symlink_to(outside)
        write(str(tmp_path / name))
        assert not (tmp_path / name).is_symlink()
    assert outside.read_text() == "theirs"
    assert (tmp_path / "a.txt").read_text() == "ours\n"
    assert (tmp_path / "b.json").read_text() == '{\n  "x": [\n    1,\n    2\n  ]\n}\n'


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")

    def fail(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        write_atomically(str(target), fail)
    assert target.read_text() == "old" and leftovers(tmp_path) == []


def test_an_os_error_is_one_line(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match=r"folder: cannot write \(Is a directory\)"):
        atomic_write_text(str(tmp_path / "folder"), "x")
    assert leftovers(tmp_path) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match=r"file/m.json: cannot write \("):
        atomic_write_text(str(tmp_path / "file" / "m.json"), "x")


def test_evaluate_json_goes_through_it(tmp_path, capsys):
    outside = tmp_path / "outside.json"
    outside.write_text("theirs")
    out = tmp_path / "m.json"
    out.symlink_to(outside)
    gt = ROOT / "data" / "thumos14" / "official_annotation"
    code = cli(evaluate.main, [str(ROOT / "data" / "predictions" / "stpn_thumos14_test.txt"), "--gt",
                          str(gt), "--protocol", "thumos14", "--json", str(out)])
    assert code == 0 and outside.read_text() == "theirs" and not out.is_symlink()
    metrics = json.loads(out.read_text())
    assert out.read_text() == json.dumps(metrics, indent=2) + "\n"
    assert metrics["tiou"] == list(evaluate.THUMOS_TIOUS)
    (tmp_path / "dir.json").mkdir()
    code = cli(evaluate.main, [str(ROOT / "data" / "predictions" / "stpn_thumos14_test.txt"), "--gt",
                          str(gt), "--json", str(tmp_path / "dir.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().endswith("dir.json: cannot write (Is a directory)")


def test_tiou_presets_are_evaluate_s():
    import opts
    assert opts.PRESETS["thumos14"]["tiou"] is evaluate.THUMOS_TIOUS
    assert opts.PRESETS["activitynet12"]["averages"] is evaluate.ANET_AVERAGES
    assert evaluate.ANET_TIOUS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_evaluate_and_opts_import_without_torch():
    code = ("import sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ImportError('torch hidden')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "import evaluate, opts, core.errors, core.cli, core.files, core.names, core.safe_load, readers.annotation_reader\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
