"""MLflow: one run per stage execution, tagged with the git commit and the DVC experiment name."""
import contextlib
import os
import subprocess
from pathlib import Path

EXPERIMENT = "music"


def repo_root() -> Path:
    """The main repository, also when DVC runs a queued experiment in a temporary copy."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dvc_experiment() -> str:
    return os.environ.get("DVC_EXP_NAME") or "workspace"


def flatten(obj, prefix: str = "") -> dict:
    out = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
    else:
        out[prefix.rstrip(".")] = obj
    return out


def numeric(metrics: dict) -> dict:
    return {k: float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@contextlib.contextmanager
def stage_run(stage: str, params: dict):
    """An MLflow run for one stage; yields the mlflow module with the run active."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT))
    experiment = dvc_experiment()
    tags = {"stage": stage, "git_commit": git_commit(), "dvc_exp_name": experiment,
            "dvc_stage": os.environ.get("DVC_STAGE", stage)}
    with mlflow.start_run(run_name=f"{experiment}/{stage}", tags=tags):
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(params).items()})
        yield mlflow


def trainer_callback(mlflow):
    """A transformers TrainerCallback that sends each logged training step to the active MLflow run."""
    from transformers import TrainerCallback

    class MLflowStepLogger(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                mlflow.log_metrics({f"train/{k}": float(v) for k, v in logs.items()
                                    if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=state.global_step)

    return MLflowStepLogger()
