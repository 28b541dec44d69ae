"""The size rules of the developers' guide, over the production code: no file over 450 lines,
no function over 60 lines (bench/'s scripts: the function rule too). A failure names every
file or function over its limit, with its length."""
import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("core", "readers", "training", "pipeline", "evaluation", "analysis", "sweeps",
            "extraction")
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 60


def python_files(folder):
    """Paths relative to ROOT of the .py files in folder (and below it)."""
    found = []
    for top, dirs, files in os.walk(os.path.join(ROOT, folder)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        found += [os.path.relpath(os.path.join(top, f), ROOT) for f in sorted(files)
                  if f.endswith(".py")]
    return found


def production_files():
    root = sorted(f for f in os.listdir(ROOT) if f.endswith(".py"))
    return root + [f for package in PACKAGES for f in python_files(package)]


def line_count(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return len(f.read().splitlines())


def function_lengths(path):
    """{"path: name": lines} of every function and method (decorators included; a nested
    function also counts inside the one that holds it)."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    lengths = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    lengths[f"{path}: {name}"] = child.end_lineno - first + 1
                name += "."
            visit(child, name)

    visit(tree, "")
    return lengths


def over(lengths, limit):
    """'name: N lines (limit L)' for every entry over the limit."""
    return [f"{name}: {n} lines (limit {limit})" for name, n in sorted(lengths.items())
            if n > limit]


def test_the_counters_on_a_hand_made_file(tmp_path, monkeypatch):
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "m.py").write_text("import os\n\n\n@staticmethod\ndef f(x):\n    def g():\n"
                                 "        return 1\n    return g\n\n\nclass C:\n"
                                 "    def h(self):\n        pass\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    assert python_files("pkg") == [os.path.join("pkg", "m.py")]
    assert line_count(os.path.join("pkg", "m.py")) == 13
    path = os.path.join("pkg", "m.py")
    assert function_lengths(path) == {f"{path}: f": 5, f"{path}: f.g": 2, f"{path}: C.h": 2}
    assert over({f"{path}: f": 5, "x: y": 3}, 4) == [f"{path}: f: 5 lines (limit 4)"]


def test_no_production_file_over_450_lines():
    files = production_files()
    assert "run.py" in files and os.path.join("core", "errors.py") in files
    too_long = over({f: line_count(f) for f in files}, MAX_FILE_LINES)
    assert not too_long, "files over the limit: " + "; ".join(too_long)


def test_no_function_over_60_lines():
    lengths = {}
    for f in production_files() + python_files("bench"):
        lengths.update(function_lengths(f))
    assert "run.py: main" in lengths
    too_long = over(lengths, MAX_FUNCTION_LINES)
    assert not too_long, "functions over the limit: " + "; ".join(too_long)
