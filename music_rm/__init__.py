"""MUSIC (multi-step instruction contrast) reward models, as a DVC + MLflow experiment repo.

The functions a notebook needs, importable from here (each loads its module on first use, so that a stage
importing one sub-package does not import them all). Their defaults are a notebook's, not params.yaml's where
they differ: `load_reward_model` scores in float32 without the score cache, and `score` in batches of 8 without a
length limit; the stages pass every value from params.yaml.

    from music_rm import load_reward_model, score
    rewards = score("models/rm/music/seed-0", [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]])
"""
import importlib
from importlib import metadata

try:
    __version__ = metadata.version("music-rm")
except metadata.PackageNotFoundError:  # run from a checkout that is not installed
    __version__ = "0.2.0"

_API = {
    "load_reward_model": "music_rm.reward.model",   # a trained RM folder -> RewardModel (.score, .score_pairs, .margins)
    "RewardModel": "music_rm.reward.model",
    "score": "music_rm.reward.model",               # rewards of conversations with a model folder or a RewardModel
    "read_card": "music_rm.reward.model",           # a trained folder's reward_model.json (attention, reward stats)
    "RewardClient": "music_rm.reward.serve",        # rewards from a reward model that `music-rm serve` serves
    "train_reward_model": "music_rm.reward.train",
    "load_params": "music_rm.core.params",          # params.yaml (or a profile applied to it), checked
    "fetch": "music_rm.data.sources",               # preference data in any supported format -> train, test, summary
    "read_pairs": "music_rm.data.conversation",
    "read_prompts": "music_rm.data.prompts",
    "TreeBuilder": "music_rm.method.simulate",
    "pairs_from_trees": "music_rm.method.contrast",
    "score_models": "music_rm.evaluation.heldout",  # every (variant, seed) model's margins on held-out suites
    "evaluate": "music_rm.evaluation.heldout",      # their records, accuracies over seeds and differences
    "read_records": "music_rm.evaluation.records",  # a suite's records.csv -> Record rows
    "suite_result": "music_rm.evaluation.estimates",  # one suite's records -> accuracies and differences, intervals
    "seeded_bootstrap": "music_rm.evaluation.stats",
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'music_rm' has no attribute {name!r}")


def __dir__():
    return __all__
