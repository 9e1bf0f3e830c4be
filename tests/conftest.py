import shutil
from pathlib import Path

import pytest

from fixtures.tiny_model import make_tiny_model
from tests.slurm_cluster import slurm  # noqa: F401 (a real two-node SLURM cluster: tests/test_slurm.py)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gemma2(tmp_path_factory) -> Path:
    """A random-init 2-layer Gemma-2 with Gemma-2-9b-it's chat template, which raises on a system message."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-gemma2"), arch="gemma2", hidden=32, heads=2)


@pytest.fixture(scope="session")
def tiny_reward_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with a random-init score head, saved as a reward-model folder."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-rm")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def repo_params(**sections) -> dict:
    """The repository's params.yaml as data, with `sections` merged in (mappings merge key by key)."""
    import yaml

    from music_rm.core.params import merge

    return merge(yaml.safe_load((REPO / "params.yaml").read_text()), sections)


def params_section(name: str, **overrides):
    """One typed section of the repository's params.yaml, with `overrides` merged in."""
    from music_rm.core.params import Params

    return Params.model_fields[name].annotation.model_validate(repo_params(**{name: overrides})[name])


_REPORTS: list[str] = []


@pytest.fixture
def report():
    """Append a text block to the summary printed at the end of the test run."""
    return _REPORTS.append


def pytest_terminal_summary(terminalreporter):
    if _REPORTS:
        terminalreporter.section("reports")
        for text in _REPORTS:
            terminalreporter.write_line(text + "\n")


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"{SHARED}/data is not present")
    return SHARED / "data"


def run_stage(script: str, *args: str, tmp_path: Path, params: dict):
    """stages/<script> run from the repo root, with `params` written to tmp_path and an MLflow store there."""
    import os
    import subprocess
    import sys

    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run([sys.executable, f"stages/{script}", "--params", str(tmp_path / "params.yaml"), *args],
                          cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})


def models_folder(tmp_path: Path, reward_model: Path, variants, seeds=(0,)) -> Path:
    """A models/rm-like folder in which every variant's model of every seed (<variant>/seed-<seed>) is
    `reward_model`."""
    folder = tmp_path / "models"
    folder.mkdir()
    for variant in variants:
        (folder / variant).mkdir()
        for seed in seeds:
            (folder / variant / f"seed-{seed}").symlink_to(reward_model)
    return folder


def write_manifests(params_file, reports, variants=("baseline",)) -> None:
    """What the pairs@<variant> stages write before a train stage runs: each seed's pairs manifest."""
    from music_rm.core.params import load_params
    from music_rm.reward.pairs import write_pairs_manifests

    for variant in variants:
        write_pairs_manifests(load_params(params_file, packages=False), variant, Path(reports))


@pytest.fixture
def repo(built, tmp_path):
    """A fresh copy of the module's `built` repo for each test (DVC's cache inside it; the state it keeps is per
    copy). A module without `built` defines its own `repo`."""
    root = tmp_path / "repo"
    shutil.copytree(built, root, symlinks=True)
    return root
