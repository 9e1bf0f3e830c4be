"""Optional packages a params choice needs, checked when a stage loads its params, before it creates anything
(no generation cache, no MLflow run): a missing one is one ParamsError naming the param and the pip command."""
import re
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from typing import Callable

import yaml

from .errors import ParamsError


def _uses_deepspeed(accelerate_config: str) -> bool:
    try:
        with open(accelerate_config, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return False  # the train stage reports a config it cannot read
    return isinstance(config, dict) and str(config.get("distributed_type", "")).upper() == "DEEPSPEED"


@dataclass(frozen=True)
class Requirement:
    param: str                       # dotted key in params.yaml
    needs: str | Callable[[object], bool]  # the value that needs the package, or a test of the value
    module: str                      # what must be importable
    distribution: str                # what pip installs (pinned as pyproject.toml's extras pin it)


REQUIREMENTS = (
    Requirement("simulate.backend", "vllm", "vllm", "vllm"),
    Requirement("judge.backend", "vllm", "vllm", "vllm"),
    Requirement("train.accelerate_config", _uses_deepspeed, "deepspeed", "deepspeed"),
)


def install_command(distribution: str) -> str:
    """`pip install "<distribution><pin>"`, pinned as this package's extras pin it (when installed)."""
    try:
        requires = metadata.requires("music-rm") or []
    except metadata.PackageNotFoundError:
        requires = []
    for requirement in requires:
        spec = requirement.split(";")[0].strip()
        if re.match(rf"{re.escape(distribution)}\b", spec, re.IGNORECASE):
            return f'pip install "{spec}"'
    return f"pip install {distribution}"


def _value(params, key: str):
    for part in key.split("."):
        params = getattr(params, part)
    return params


def check_packages(params, where: str, requirements=REQUIREMENTS) -> None:
    """Raise ParamsError for the first requirement whose param asks for a package that is not importable;
    `where`: the params file, as the message names it."""
    for r in requirements:
        value = _value(params, r.param)
        wanted = r.needs(value) if callable(r.needs) else value == r.needs
        if wanted and find_spec(r.module) is None:
            raise ParamsError(f"{where}: {r.param}: {value!r} needs the {r.module} package, which is not installed here: "
                              f"{install_command(r.distribution)}")
