"""docs/layout.md lists every production file (each .py and .sh outside tests/ and data/,
__init__.py aside) with its line count, within 10 % or 10 lines, and no file that is gone."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_PRODUCTION = {"tests", "data", "runs", "__pycache__", "venv", ".venv"}
ROW = re.compile(r"^\| `([^`]+)` \| (\d+) \|", re.M)


def production_files():
    """{path relative to the repository: its line count}."""
    found = {}
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = sorted(d for d in subfolders
                               if not d.startswith(".") and d not in NOT_PRODUCTION)
        for name in files:
            if name.endswith((".py", ".sh")) and name != "__init__.py":
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    found[os.path.relpath(path, ROOT)] = sum(1 for _ in f)
    return found


def listed():
    with open(os.path.join(ROOT, "docs", "layout.md"), encoding="utf-8") as f:
        rows = ROW.findall(f.read())
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "a file listed twice"
    return {name: int(lines) for name, lines in rows}


def test_layout_lists_every_production_file_with_its_size():
    files, rows = production_files(), listed()
    assert sorted(set(files) - set(rows)) == [], "files docs/layout.md does not list"
    assert sorted(set(rows) - set(files)) == [], "rows of files that are gone"
    off = {name: (rows[name], n) for name, n in files.items()
           if abs(rows[name] - n) > max(10, 0.1 * n)}
    assert off == {}, "line counts off by more than 10 % and 10 lines: (listed, real)"


def test_the_row_pattern_reads_a_row():
    assert ROW.findall("| `run.py` | 281 | command |\n| not | 1 |") == [("run.py", "281")]
