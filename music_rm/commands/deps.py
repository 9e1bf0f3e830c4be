"""dvc.yaml's generated parts: each stage's code deps and its params, so that editing a module reruns exactly the
stages that load it and changing a param exactly the stages that read it. Code deps: the music_rm files the
stage's script loads (the import closure, read from the source with `ast`, imports inside functions included),
a package's folder instead of its files where the stage loads every file in it. Params: the keys the script's
PARAMS declares, which are also all the stage can read (Params.for_stage). `make deps` (`music-rm deps`)
rewrites both in place; `music-rm deps --check` and tests/test_dvc_deps.py fail when they are stale."""
import ast
import re
import sys
import textwrap
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


def package_files(package: Path) -> set[str]:
    """Every file in a package's folder, its own folders included (__pycache__ aside: .dvcignore has it)."""
    return {f.relative_to(REPO).as_posix() for f in package.rglob("*")
            if f.is_file() and "__pycache__" not in f.relative_to(package).parts}


def code_deps(script: str) -> list[str]:
    """The music_rm deps of a stage script, sorted: the folder of each package whose every file it loads (a
    folder dep reruns the stage when any file in it changes: exact only then), the files it loads elsewhere."""
    modules = closure(REPO / script)
    whole = {package.parent.relative_to(REPO).as_posix() for package in PACKAGE.glob("*/__init__.py")
             if package_files(package.parent) <= files(modules)}
    kept = {f for f in files({m for m in modules if has_code(m)})
            if not any(f.startswith(folder + "/") for folder in whole)}
    return sorted(kept | whole)


def declared_params(script: str) -> tuple[str, ...]:
    """The PARAMS a stage script declares (a module-level tuple of dotted keys), read without importing it."""
    for node in ast.parse((REPO / script).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["PARAMS"]:
            return tuple(ast.literal_eval(node.value))
    raise click.ClickException(f"{script}: no PARAMS (the params keys the stage reads)")


def dvc_params(script: str, cmd: str) -> list[str]:
    """The stage's params as dvc.yaml lists them: its PARAMS, each `{option}` replaced by what the stage's command
    passes to --option (`${key}` in a foreach, `${item.variant}` in a matrix)."""
    words = cmd.split()
    passed = {w[2:].replace("-", "_"): words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
    out = []
    for key in declared_params(script):
        for option in re.findall(r"{(\w+)}", key):
            if option not in passed:
                raise click.ClickException(f"{script}: PARAMS has {key}, but the stage's command passes no --{option}")
            key = key.replace(f"{{{option}}}", passed[option])
        out.append(key)
    return out


def flow_item(item: str) -> str:
    """An item as a YAML flow list needs it: quoted when it holds what flow syntax would read (`${...}`, `,`, …)."""
    return f'"{item}"' if re.search(r"[${}\[\],:#\s]", item) else item


def flow_lines(indent: str, key: str, groups: list[list[str]], fresh: tuple[int, ...] = (),
               width: int = 120) -> list[str]:
    """`key: [a, b, ...]`, wrapped at `width`: a group's items on one line where they fit (else item by item), a
    group in `fresh` (by index) starting a line of its own."""
    head = f"{indent}{key}: ["
    room = width - len(head) - 2  # the closing "]," or "]"
    lines = [""]
    for number, group in enumerate(groups):
        items = [flow_item(item) for item in group]
        if not items:
            continue
        text = ", ".join(items)
        if lines[-1] and (number in fresh or len(lines[-1]) + 2 + len(text) > room):
            lines.append("")
        for item in items:
            if lines[-1] and len(lines[-1]) + 2 + len(item) > room:
                lines.append("")
            lines[-1] += (", " if lines[-1] else "") + item
    pad = " " * len(head)
    return [(head if i == 0 else pad) + line + ("]" if i == len(lines) - 1 else ",") + "\n"
            for i, line in enumerate(lines)]


def params_lines(indent: str, keys: list[str]) -> list[str]:
    """`params: [a, b, ...]`, a params section's keys together."""
    groups: list[list[str]] = []
    for key in keys:
        if groups and groups[-1][0].split(".")[0] == key.split(".")[0]:
            groups[-1].append(key)
        else:
            groups.append([key])
    return flow_lines(indent, "params", groups)


def deps_lines(indent: str, listed: list[str], script: str) -> list[str]:
    """`deps: [...]`: the deps written by hand (data, models, templates; the script among them) in their order, then
    the script's code deps from a line of their own."""
    by_hand = [d for d in listed if not (d.startswith("music_rm/") and generated_code_dep(d))]
    return flow_lines(indent, "deps", [by_hand, code_deps(script)], fresh=(1,))


def stage_commands(dvc_yaml: str) -> dict[str, tuple[str, str]]:
    """{stage name: (its script under stages/, its command)}."""
    stages = yaml.safe_load(dvc_yaml)["stages"]
    out = {}
    for name, stage in stages.items():
        cmd = stage.get("do", stage)["cmd"]
        out[name] = (next(part for part in cmd.split() if part.startswith("stages/")), cmd)
    return out


def generated_code_dep(path: str) -> bool:
    """Whether a music_rm dep is one `make deps` writes: a .py file or package folder (not a template or data file)."""
    return path.endswith(".py") or (REPO / path / "__init__.py").is_file()


def region(lines: list[str], i: int) -> int:
    """The index after the YAML value that starts on lines[i] (`key: [` … `]` or `key:` and its deeper lines)."""
    indent = len(lines[i]) - len(lines[i].lstrip())
    if "[" in lines[i]:
        depth, j = 0, i
        while True:
            depth += lines[j].count("[") - lines[j].count("]")
            j += 1
            if depth <= 0 or j == len(lines):
                return j
    j = i + 1
    while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
        j += 1
    while j > i + 1 and not lines[j - 1].strip():  # blank lines after the value belong to what follows
        j -= 1
    return j


def rewrite(dvc_yaml: str) -> str:
    """dvc.yaml's text with each stage's deps written as deps_lines gives them (its hand-written deps kept, its
    music_rm code deps its script's) and its params as its script's PARAMS; every other line kept."""
    commands, lines, out, stage, i = stage_commands(dvc_yaml), dvc_yaml.splitlines(keepends=True), [], None, 0
    while i < len(lines):
        line = lines[i]
        if line.strip() and len(line) - len(line.lstrip()) == 0:
            stage = None
        if match := re.match(r"^  ([\w-]+):\s*$", line):
            stage = match.group(1) if match.group(1) in commands else None
        match = re.match(r"^(\s+)(deps|params):", line)
        if stage is None or not match:
            out.append(line)
            i += 1
            continue
        script, cmd = commands[stage]
        end = region(lines, i)
        if match.group(2) == "params":
            out += params_lines(match.group(1), dvc_params(script, cmd))
        else:
            listed = yaml.safe_load(textwrap.dedent("".join(lines[i:end])))["deps"]
            out += deps_lines(match.group(1), listed, script)
        i = end
    return "".join(out)


@click.command("deps")
@click.option("--check", is_flag=True,
              help="Change nothing; exit 1 when dvc.yaml's code deps or params are stale.")
@click.option("--dvc-yaml", "path", default="dvc.yaml", show_default=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The pipeline file.")
def main(check, path):
    """Rewrite each dvc.yaml stage's music_rm deps and params from its script (`make deps`)."""
    text = path.read_text(encoding="utf-8")
    new = rewrite(text)
    if check:
        if new != text:
            click.echo(f"{path}: code deps or params are stale; run `make deps`", err=True)
            sys.exit(1)
        return
    if new != text:
        path.write_text(new, encoding="utf-8")
    click.echo(f"{path}: code deps and params of {len(stage_commands(new))} stages "
               + ("rewritten" if new != text else "up to date"))
