"""The project's import graph, module to module (every import, lazy ones included), and the
same graph with each folder taken as one node: its figures (modules, arrows, layers, the
longest chain) and its faults (circles, imports upwards). `python scripts/import_graph.py`
prints them; tests/test_layers.py asserts there are no faults."""
import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRODUCTION_DIRS = ("core", "readers", "training", "pipeline", "evaluation", "analysis",
                   "sweeps", "extraction")


def production_modules(root=ROOT):
    """{module name: file path} of the production code: the root's .py files and the
    packages (not tests/, bench/, scripts/)."""
    found = {}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.endswith(".py"):
            found[name[:-3]] = path
        elif name in PRODUCTION_DIRS:
            for file in sorted(os.listdir(path)):
                if file.endswith(".py") and file != "__init__.py":
                    found[f"{name}.{file[:-3]}"] = os.path.join(path, file)
    return found


def imports_of(path, modules):
    """The project modules that the file at `path` imports, anywhere in it."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n in modules}


def graph(root=ROOT):
    """{module: set of the modules it imports} (a module importing itself is left out)."""
    modules = production_modules(root)
    return {m: imports_of(p, modules) - {m} for m, p in modules.items()}


def folder_of(module):
    """A package's modules are one node; each root module is its own."""
    return module.split(".")[0] if "." in module else module


def folders(edges):
    """The graph with each folder taken as one node (arrows inside a folder dropped)."""
    out = {}
    for m, targets in edges.items():
        out.setdefault(folder_of(m), set()).update(
            folder_of(t) for t in targets if folder_of(t) != folder_of(m))
    return out


def circle(edges):
    """One circle of the graph as a list of nodes, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None
    for node in sorted(edges):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def longest_chain(edges):
    """The longest import chain (a list of nodes) of an acyclic graph."""
    memo = {}

    def chain(node):
        if node not in memo:
            best = max((chain(n) for n in edges.get(node, ())), key=len, default=[])
            memo[node] = [node] + best
        return memo[node]
    return max((chain(n) for n in sorted(edges)), key=len, default=[])


def figures(edges):
    return {"modules": len(edges), "arrows": sum(len(t) for t in edges.values()),
            "layers": len(longest_chain(edges)), "longest chain": longest_chain(edges)}


def main():
    edges = graph()
    for title, g in (("modules", edges), ("folders", folders(edges))):
        loop = circle(g)
        print(f"{title}: {len(g)} nodes, {sum(len(t) for t in g.values())} arrows, "
              + (f"circle: {' -> '.join(loop)}" if loop else
                 f"{len(longest_chain(g))} layers; longest chain: "
                 f"{' -> '.join(longest_chain(g))}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
