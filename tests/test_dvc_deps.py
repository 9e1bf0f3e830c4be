"""Every stage declares exactly the library modules its script imports, directly or through each other."""
import ast
from pathlib import Path

import yaml

from tests.conftest import REPO


def imported_modules(path: Path) -> set[str]:
    """music_rm modules a file imports (absolute `music_rm.x` or relative `.x`), at any depth in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.module and node.module.startswith("music_rm."):
                found.add(node.module.split(".")[1])
            elif node.module == "music_rm" or (node.level == 1 and not node.module):
                found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("music_rm.")}
    return {m for m in found if (REPO / "music_rm" / f"{m}.py").is_file()}


def closure(script: Path) -> set[str]:
    seen, todo = set(), list(imported_modules(script))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += imported_modules(REPO / "music_rm" / f"{module}.py")
    return {f"music_rm/{m}.py" for m in seen}


def test_every_stage_declares_the_library_modules_it_imports():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    checked = 0
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        script = next(part for part in stage["cmd"].split() if part.startswith("stages/"))
        declared = {d for d in stage["deps"] if isinstance(d, str) and d.startswith("music_rm/") and d.endswith(".py")}
        assert script in stage["deps"], name
        assert declared == closure(REPO / script), f"{name}: missing {closure(REPO / script) - declared}, " \
                                                   f"extra {declared - closure(REPO / script)}"
        checked += 1
    assert checked == len(stages) >= 10
