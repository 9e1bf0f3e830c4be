"""The pairs manifests that stand for each variant's training pairs in the pipeline (stages/pairs.py writes them).

Why: DVC expands train@<variant>-<seed> from a `matrix:` over train.variants and train.seeds, where
`${item.variant}` is only the variant's name, so the train stage cannot name its variant's pairs file as a dep
(`${train.variants.${item.variant}.pairs}` does not parse). The stage pairs@<variant>, a foreach over
train.variants, can: it writes one small manifest per training seed, data/train/<variant>/pairs/seed-<seed>.json,
naming the pairs file that seed trains on and its sha256. Each train stage depends on its own manifest, which
changes exactly when its pairs do, and trains on the file it names after checking the hash. So a new seed trains
only its own models, a changed pairs file retrains only its variant, and a volume-matched draw that changes
retrains only its seed.
"""
from pathlib import Path

from ..core.errors import InputError, ParamsError
from ..core.io import file_digest, read_json, write_json
from ..core.outputs import committed_outputs
from ..core.params import Params
from ..core.paths import PAIRS_MANIFESTS, seed_name


def seed_pairs(pairs: str, seed: int) -> Path:
    """The pairs file `seed` trains on: the variant's `pairs` file, or <pairs>/seed-<seed>.jsonl when it is a
    folder of per-seed files."""
    path = Path(pairs)
    return path / f"{seed_name(seed)}.jsonl" if path.is_dir() else path


def pairs_manifests(params: Params, variant: str) -> dict[str, dict]:
    """{seed-<seed>.json: {"pairs": the file, "sha256": its hash}} for each of train.seeds."""
    pairs = params.train.variant(variant).pairs
    manifests = {}
    for seed in params.train.seeds:
        path = seed_pairs(pairs, seed)
        if not path.is_file():
            raise ParamsError(f"train.variants.{variant}.pairs: {path} does not exist"
                              + (f" (the folder {pairs} needs one file per seed of train.seeds)"
                                 if Path(pairs).is_dir() else ""))
        manifests[f"{seed_name(seed)}.json"] = {"pairs": path.as_posix(), "sha256": file_digest(path)}
    return manifests


def write_pairs_manifests(params: Params, variant: str, reports: Path) -> dict[str, dict]:
    """The manifests of `variant`, replacing `reports`/<variant>/pairs whole, atomically."""
    manifests = pairs_manifests(params, variant)
    with committed_outputs(reports / variant) as staged:
        for name, manifest in manifests.items():
            write_json(staged / PAIRS_MANIFESTS / name, manifest)
    return manifests


def manifest_pairs(reports: Path, variant: str, seed: int) -> str:
    """The pairs file (variant, seed) trains on, as its manifest names it, checked against the manifest's hash."""
    path = reports / variant / PAIRS_MANIFESTS / f"{seed_name(seed)}.json"
    if not path.is_file():
        raise InputError(path, None, None, f"missing; run `dvc repro pairs@{variant}` (it writes one per seed of "
                                           "train.seeds)")
    manifest = read_json(path)
    if not Path(manifest["pairs"]).is_file() or file_digest(manifest["pairs"]) != manifest["sha256"]:
        raise InputError(path, None, None, f"{manifest['pairs']} changed since the manifest was written; run "
                                           f"`dvc repro pairs@{variant}`")
    return manifest["pairs"]
