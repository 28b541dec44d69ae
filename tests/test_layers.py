"""The import graph of the production code (scripts/import_graph.py): no circle between
modules, none between folders (each package one node), and core/ at the bottom, importing
nothing of the project's."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))
import import_graph  # noqa: E402


def test_no_circle_between_modules():
    assert import_graph.circle(import_graph.graph()) is None


def test_no_circle_between_folders():
    edges = import_graph.graph()
    assert import_graph.circle(import_graph.folders(edges)) is None


def test_core_imports_nothing_of_ours():
    edges = import_graph.graph()
    core = {m: t for m, t in edges.items() if m.startswith("core.")}
    assert set(core) >= {"core.errors", "core.cli", "core.files", "core.names", "core.safe_load"}
    for module, targets in core.items():
        assert all(t.startswith("core.") for t in targets), (module, targets)


def test_the_graph_sees_lazy_imports(tmp_path):
    """A circle made only by an import inside a function is still found."""
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    edges = import_graph.graph(str(tmp_path))
    assert edges == {"a": {"b"}, "b": {"a"}}
    assert import_graph.circle(edges) == ["a", "b", "a"]


def test_readers_hold_only_data_formats():
    """What every layer uses lives in core/, not in readers/ or utils.py."""
    edges = import_graph.graph()
    assert "readers.safe_io" not in edges
    assert not any(t == "utils" for m, t_ in edges.items() if m.startswith("readers.")
                   for t in t_)
