"""The import graph of the music_rm package, read from the source (AST), imports inside functions included."""
import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "music_rm"


def module_file(name: str) -> Path | None:
    """The file of a dotted music_rm module or package, or None when there is none."""
    path = REPO.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Dotted names of the music_rm modules `path` imports, directly (packages it passes through excluded)."""
    name = module_name(path) if path.is_relative_to(PACKAGE) else ""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("music_rm"):
                continue
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if module_file(f"{target}.{alias.name}") else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("music_rm")}
    return {m for m in found if module_file(m)}


def with_packages(name: str) -> set[str]:
    """A module and every package above it (importing a.b.c runs a/__init__.py and a/b/__init__.py)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def closure(path: Path) -> set[str]:
    """Every music_rm module (and package) that importing or running `path` loads."""
    seen, todo = set(), [m for name in imports(path) for m in with_packages(name)]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [m for dep in imports(module_file(name)) for m in with_packages(dep)]
    return seen


def files(names: set[str]) -> set[str]:
    return {module_file(n).relative_to(REPO).as_posix() for n in names}
