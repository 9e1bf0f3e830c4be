"""No library function has a default that mirrors a params key: a value set in params.yaml is passed in, so that
params.yaml stays the one source of defaults (a default in code drifts from it: `cache=False` against eval.cache
true). The notebook API (music_rm/__init__.py) keeps defaults a notebook user expects, listed here with where
they are documented."""
import ast

from tests.conftest import REPO
from tests.test_params import sections

# (file, function, argument): the notebook API's documented defaults (music_rm/__init__.py's docstring and
# each function's own)
NOTEBOOK = {("music_rm/reward/model.py", f, a) for f, args in {
    "load_reward_model": ("cpu_dtype", "cache"), "score": ("batch_size", "max_length"),
    "score_pairs": ("batch_size", "max_length"), "margins": ("batch_size", "max_length")}.items() for a in args} | {
    ("music_rm/reward/serve.py", "__init__", a) for a in ("concurrency", "timeout_s")}  # RewardClient


def params_keys() -> set[str]:
    return {name for model in sections() for name in model.model_fields}


def keyword_defaults(path):
    """(function, argument, default) of every argument with a default in a file, None defaults left out: None
    means "absent" (an optional object such as a cache store), not a value a params key could hold for it."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            positional = a.posonlyargs + a.args
            pairs = list(zip(positional[len(positional) - len(a.defaults):], a.defaults))
            pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
            for arg, default in pairs:
                if not (isinstance(default, ast.Constant) and default.value is None):
                    yield node.name, arg.arg, ast.unparse(default)


def mirrored(root):
    keys = params_keys()
    return sorted(f"{path.relative_to(root).as_posix()}: {function}({arg}={default})"
                  for path in (root / "music_rm").rglob("*.py")
                  for function, arg, default in keyword_defaults(path)
                  if arg in keys and (path.relative_to(root).as_posix(), function, arg) not in NOTEBOOK)


def test_no_library_default_mirrors_a_params_key():
    assert mirrored(REPO) == []


def test_the_check_sees_a_mirrored_default(tmp_path):
    (tmp_path / "music_rm").mkdir()
    (tmp_path / "music_rm" / "m.py").write_text("def f(x, cache=False, desc='d', seed=None):\n    pass\n")
    assert mirrored(tmp_path) == ["music_rm/m.py: f(cache=False)"]
