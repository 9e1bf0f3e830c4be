"""dvc.yaml's code deps, generated: every stage lists exactly the music_rm files its script loads (the import
closure, read from the source with `ast`, imports inside functions included), so that editing a module reruns
exactly the stages that use it. `make deps` (`music-rm deps`) rewrites them in place; `music-rm deps --check`
and tests/test_dvc_deps.py fail when they are stale."""
import ast
import re
import sys
from pathlib import Path

import click
import yaml

REPO = Path(__file__).resolve().parents[2]
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


def has_code(name: str) -> bool:
    """Whether a module holds more than a docstring (a docstring-only __init__.py changes no behaviour)."""
    body = ast.parse(module_file(name).read_text(encoding="utf-8")).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def code_deps(script: str) -> list[str]:
    """The music_rm files a stage script loads, sorted: what its dvc.yaml deps list."""
    return sorted(files({m for m in closure(REPO / script) if has_code(m)}))


def stage_scripts(dvc_yaml: str) -> dict[str, str]:
    """{stage name: its script under stages/}."""
    stages = yaml.safe_load(dvc_yaml)["stages"]
    return {name: next(part for part in stage.get("do", stage)["cmd"].split() if part.startswith("stages/"))
            for name, stage in stages.items()}


def rewrite(dvc_yaml: str) -> str:
    """dvc.yaml's text with each stage's music_rm/**.py deps replaced by its script's import closure, listed
    right after the script; every other line (comments, data deps, templates) kept as it is."""
    scripts, out, stage = stage_scripts(dvc_yaml), [], None
    for line in dvc_yaml.splitlines(keepends=True):
        if match := re.match(r"^  ([\w-]+):\s*$", line):
            stage = match.group(1)
        if re.match(r"^\s+- music_rm/\S+\.py\s*$", line):
            continue
        out.append(line)
        if stage and (match := re.match(r"^(\s+)- (stages/\S+\.py)\s*$", line)) and match.group(2) == scripts[stage]:
            out += [f"{match.group(1)}- {path}\n" for path in code_deps(scripts[stage])]
    return "".join(out)


@click.command("deps")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 when dvc.yaml's code deps are stale.")
@click.option("--dvc-yaml", "path", default="dvc.yaml", show_default=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The pipeline file.")
def main(check, path):
    """Rewrite each dvc.yaml stage's music_rm deps from its script's import closure (`make deps`)."""
    text = path.read_text(encoding="utf-8")
    new = rewrite(text)
    if check:
        if new != text:
            click.echo(f"{path}: code deps are stale; run `make deps`", err=True)
            sys.exit(1)
        return
    if new != text:
        path.write_text(new, encoding="utf-8")
    click.echo(f"{path}: code deps of {len(stage_scripts(new))} stages " + ("rewritten" if new != text else "up to date"))
