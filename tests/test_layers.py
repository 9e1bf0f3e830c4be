"""The library's layers: a sub-package imports only from its own layer and the layers below; no import cycle."""
from music_rm.commands.deps import PACKAGE, imports, module_name

# lowest first; `commands` (the console script) sits on top of everything
LAYERS = ["core", "data", "generation", "method", "reward", "evaluation", "commands"]


def layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports(path) for path in PACKAGE.rglob("*.py")}


def test_every_module_belongs_to_a_layer():
    outside = sorted(m for m in graph() if layer(m) is None and m not in ("music_rm", "music_rm.__main__"))
    assert outside == []


def test_no_module_imports_from_a_layer_above_its_own():
    upward = sorted(f"{m} -> {dep}" for m, deps in graph().items() if layer(m) is not None
                    for dep in deps if layer(dep) is not None and layer(dep) > layer(m))
    assert upward == []


def test_the_import_graph_has_no_cycle():
    edges = graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_layer_test_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself: a core module that imported evaluation would be reported."""
    import music_rm.commands.deps as imp

    fake = tmp_path / "music_rm" / "core"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from ..evaluation.stats import cell\n")
    monkeypatch.setattr(imp, "REPO", tmp_path)
    monkeypatch.setattr(imp, "PACKAGE", tmp_path / "music_rm")
    deps = imp.imports(fake / "bad.py")
    assert deps == set()  # the target does not exist under tmp_path, so only real modules count
    (tmp_path / "music_rm" / "evaluation").mkdir()
    (tmp_path / "music_rm" / "evaluation" / "stats.py").write_text("")
    assert imp.imports(fake / "bad.py") == {"music_rm.evaluation.stats"}
    assert layer("music_rm.evaluation.stats") > layer("music_rm.core.bad")
