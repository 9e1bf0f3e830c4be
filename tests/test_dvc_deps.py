"""Every stage declares exactly the library modules its script imports, directly or through each other."""
import ast

import yaml

from tests.conftest import REPO
from tests.imports import closure, files, module_file


def has_code(name: str) -> bool:
    """Whether a module holds more than a docstring (a docstring-only __init__.py changes no behaviour)."""
    body = ast.parse(module_file(name).read_text(encoding="utf-8")).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def test_every_stage_declares_the_library_modules_it_imports():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    checked = 0
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        script = next(part for part in stage["cmd"].split() if part.startswith("stages/"))
        declared = {d for d in stage["deps"] if isinstance(d, str) and d.startswith("music_rm/") and d.endswith(".py")}
        needed = files({m for m in closure(REPO / script) if has_code(m)})
        assert script in stage["deps"], name
        assert declared == needed, f"{name}: missing {needed - declared}, extra {declared - needed}"
        checked += 1
    assert checked == len(stages) >= 10
