"""MLflow: one parent run per pipeline run, one nested run per stage execution.

A pipeline run is identified by the DVC experiment name (`workspace` for a plain `dvc repro`), the git
commit it started from and the hash of params.yaml: the stages of one `dvc exp run` (queued or not) or
one `dvc repro` find the same parent and nest under it. Stage runs are tagged with the git commit, the
DVC experiment name and baseline rev, and the content hash of every input (as dvc.lock has it); inputs
are also logged as MLflow datasets, by reference. A stage's headline metrics (each stage or suite declares
its own, `log_results`) are copied onto the parent as `<stage>.<metric>`, so parents of different experiments
compare side by side in the UI; the saved view of the runs table is written once per pipeline run and by `make ui`.
"""
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import warnings
from pathlib import Path

import yaml

from .disk import disk_space
from .environment import environment
from .io import file_digest, flatten, write_json
from .outputs import PREFIX, process_alive
from .params import Params
from .paths import repo_root
from .secrets import RedactingFormatter

EXPERIMENT = "music"
PIPELINE_KEY_TAG = "music.pipeline_key"
# The process that runs a stage: a later stage ends the run as KILLED when that process is gone.
HOST_TAG, PID_TAG = "music.host", "music.pid"
# The experiment's kind, as MLflow's API records it. MLflow 3.17's UI does not read it: it opens every
# experiment on its GenAI traces view unless the page's URL asks for the model-training view (ui_url).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# MLflow's limits (mlflow.utils.validation): longer keys or values are refused, and the run would fail.
MAX_PARAM_KEY, MAX_PARAM_VALUE = 250, 6000
# A parent's params that differ from its baseline commit's params.yaml (comma-separated keys)
CHANGED_TAG = "music.changed_params"
# The runs table's saved view (MLflow 3.17 UI: an experiment tag `mlflow.sharedViewState.<key>`, opened by the
# address `?viewStateShareKey=<key>`, as its "Share" button makes): the changed params and the held-out accuracies
# as columns. ui_url gives its address.
VIEW_KEY = "music-what-changed"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
# A pipeline run's metrics that a stage asked to see as columns of that view (log_results), comma-separated
VIEW_METRICS_TAG = "music.view_metrics"
# Each stage's log, beside its outputs (next to environment.json) and on its MLflow run. Not a DVC output and
# ignored by git and DVC (.gitignore, .dvcignore), so it hashes into nothing and DVC's run-cache stays on.
LOG_FILE = "stage.log"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def ui_url(port: int = 5000) -> str:
    """The MLflow UI's page of this repo's runs, as `mlflow ui --port <port>` serves it, or the tracking server
    MLFLOW_TRACKING_URI names (make tracking-server) serves it (make ui prints it)."""
    import mlflow

    uri = tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{port}"
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT))
    if not exp:
        return f"{base}/#/experiments?workflowType=machine_learning"
    if pipeline_runs(client, exp.experiment_id):
        update_view(client, exp.experiment_id)
        exp = client.get_experiment(exp.experiment_id)
    # the runs tab itself: the UI's redirect from the experiment's page to it drops the view's key
    view = f"&viewStateShareKey={VIEW_KEY}" if VIEW_TAG in exp.tags else ""
    return f"{base}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning{view}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dvc_experiment() -> str:
    return os.environ.get("DVC_EXP_NAME") or "workspace"


def numeric(metrics: dict) -> dict:
    """The numbers of a nested metrics dict, flattened, under names MLflow accepts."""
    return {mlflow_key(k): float(v) for k, v in flatten(metrics).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _clip(text: str, limit: int) -> str:
    """`text` if it fits, else a prefix that ends in a hash of the whole, so distinct values stay distinct."""
    if len(text) <= limit:
        return text
    digest = "...sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return text[: limit - len(digest)] + digest


def mlflow_key(name: str) -> str:
    """A param or metric name MLflow accepts: its allowed characters only, within its length limit."""
    return _clip(re.sub(r"[^\w\-. :/]", "_", name), MAX_PARAM_KEY)


def mlflow_params(params: dict) -> dict:
    """Flattened params within MLflow's key and value limits (the full set also goes in as params.json)."""
    return {mlflow_key(k): _clip(str(v), MAX_PARAM_VALUE) for k, v in flatten(params).items()}


def input_hashes(paths) -> dict:
    """{path: content hash} of a stage's inputs: a file's md5 (as DVC computes it), or for a folder the
    hashes dvc.lock records for the stage outputs in it (models/rm holds one per variant and training seed)."""
    lock = Path("dvc.lock")
    outs = {}
    if lock.is_file():
        for stage in (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {}).values():
            outs.update({o["path"]: o["md5"] for o in stage.get("outs", [])})
    hashes = {}
    for path in map(Path, paths):
        if path.is_file():
            hashes[path.as_posix()] = file_digest(path, "md5")
        else:
            prefix = path.as_posix().rstrip("/") + "/"
            hashes.update({p: md5 for p, md5 in outs.items() if p == path.as_posix() or p.startswith(prefix)})
    return dict(sorted(hashes.items()))


def changed_params(params: dict, baseline_rev: str) -> dict:
    """{key: (value at the commit, value now)} of the flattened params that differ from params.yaml at
    `baseline_rev` (none outside git)."""
    try:
        shown = subprocess.run(["git", "show", f"{baseline_rev}:params.yaml"], capture_output=True, text=True)
    except OSError:  # no git on PATH
        return {}
    if shown.returncode:
        return {}
    baseline = flatten(yaml.safe_load(shown.stdout) or {})
    return {k: (baseline[k], v) for k, v in flatten(params).items() if k in baseline and baseline[k] != v}


def parent_name(experiment: str, changed: dict) -> str:
    """`<experiment>: key=value …`, what a parent run's experiment changed (its name, plain, if nothing)."""
    described = " ".join(f"{k}={now}" for k, (_, now) in changed.items())
    return _clip(f"{experiment}: {described}" if changed else experiment, 250)


def _pipeline_parent(client, experiment_id: str, tags: dict, params: dict) -> str:
    params_sha = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    key = hashlib.sha256(f"{tags['dvc_exp_name']}\n{tags['git_commit']}\n{params_sha}".encode()).hexdigest()[:16]
    found = client.search_runs([experiment_id], f"tags.`{PIPELINE_KEY_TAG}` = '{key}'", max_results=1)
    if found:
        return found[0].info.run_id
    changed = changed_params(params, tags["dvc_baseline_rev"])
    note = (", ".join(f"{k}: {was} → {now}" for k, (was, now) in changed.items()) or "no param changed") + \
        f" (from commit {tags['dvc_baseline_rev'][:7]})"
    update_view(client, experiment_id)  # once per pipeline run: the columns of the runs before this one
    parent = client.create_run(experiment_id, run_name=parent_name(tags["dvc_exp_name"], changed),
                               tags={**tags, PIPELINE_KEY_TAG: key, "params_sha256": params_sha,
                                     CHANGED_TAG: _clip(",".join(changed), MAX_PARAM_VALUE),
                                     "mlflow.note.content": _clip(note, MAX_PARAM_VALUE)})
    run_id = parent.info.run_id
    for name, value in mlflow_params(params).items():
        client.log_param(run_id, name, value)
    client.log_dict(run_id, params, "params.json")
    return run_id  # it starts with its first stage; each stage's end moves its end (see stage_run)


def pipeline_runs(client, experiment_id: str) -> list:
    """Every pipeline (parent) run of the experiment, page by page."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], f"tags.`{PIPELINE_KEY_TAG}` != ''", max_results=1000,
                                  page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def update_view(client, experiment_id: str) -> None:
    """The saved view of the runs table: Description, the params that differ between pipeline runs (or that one
    changed from its commit) and the metrics stages asked to show (log_results), newest runs first."""
    import time

    parents = pipeline_runs(client, experiment_id)
    changed = {k for r in parents for k in r.data.tags.get(CHANGED_TAG, "").split(",") if k}
    keys = {k for r in parents for k in r.data.params}
    changed |= {k for k in keys if len({r.data.params.get(k) for r in parents}) > 1}
    shown = sorted({m for r in parents for m in r.data.tags.get(VIEW_METRICS_TAG, "").split(",")
                    if m in r.data.metrics})
    metrics = [f"metrics.`{m}`" for m in shown]
    columns = ["attributes.`Description`", *(f"params.`{k}`" for k in sorted(changed)[:40]), *metrics]
    # columnOrder puts the params before the metrics (MLflow's order is the other way); the widths show each
    # metric's whole name (eval.volume_matched.music_k3.accuracy)
    state = json.dumps({"selectedColumns": columns, "columnOrder": columns,
                        "columnWidths": {m: 250 for m in metrics}, "orderByKey": "attributes.start_time",
                        "orderByAsc": False})
    now = int(time.time() * 1000)
    client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(
        {"name": "What changed, what it did", "createdAt": now, "updatedAt": now, "state": state}))


def log_results(metrics: dict, headline: dict, view: bool = False) -> None:
    """A stage's numbers: every number of `metrics` on its active MLflow run (flattened), and `headline` ({name:
    value}, what the stage or suite declares its pipeline run carries) on the pipeline run as `<stage>.<name>`,
    as columns of the runs table's saved view when `view`."""
    import mlflow

    run = mlflow.active_run()
    mlflow.log_metrics(numeric(metrics))
    client = mlflow.MlflowClient()
    tags = client.get_run(run.info.run_id).data.tags
    parent, stage = tags["mlflow.parentRunId"], tags["stage"]
    carried = {mlflow_key(f"{stage}.{name}"): float(value) for name, value in headline.items() if value is not None}
    for name, value in carried.items():
        client.log_metric(parent, name, value)
    if view and carried:
        shown = [m for m in client.get_run(parent).data.tags.get(VIEW_METRICS_TAG, "").split(",") if m]
        client.set_tag(parent, VIEW_METRICS_TAG, _clip(",".join(sorted({*shown, *carried})), MAX_PARAM_VALUE))


def end_killed_runs(client, experiment_id: str) -> list[str]:
    """End as KILLED the RUNNING stage runs whose process is gone (killed: it could not end its run), and their
    pipeline runs; returns the stage runs ended."""
    ended = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        host, pid = run.data.tags.get(HOST_TAG), run.data.tags.get(PID_TAG)
        if host is None or pid is None or process_alive(host, int(pid)):
            continue
        client.set_terminated(run.info.run_id, "KILLED")
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent and client.get_run(parent).info.status == "RUNNING":
            client.set_terminated(parent, "KILLED")
        ended.append(run.info.run_id)
    return ended


def reap_killed_runs() -> list[str]:
    """End as KILLED the runs of stages killed outright (end_killed_runs) before the runs are listed (`make exps`,
    `make ui`), so no dead run shows as RUNNING; returns one line per stage run ended. Nothing is created when
    there is no store yet."""
    import mlflow

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return []
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT))
    if exp is None:
        return []
    lines = []
    for run_id in end_killed_runs(client, exp.experiment_id):
        run = client.get_run(run_id)
        lines.append(f"MLflow: {run.info.run_name} ended as KILLED: its process {run.data.tags[PID_TAG]} on "
                     f"{run.data.tags[HOST_TAG]} is gone")
    return lines


def store_disk_space(run):
    """`run`'s context, in which SQLite's "database or disk is full" not said by an inner store is the MLflow
    store's: one line naming its folder (core/disk.py)."""
    @functools.wraps(run)
    @contextlib.contextmanager
    def wrapper(*args, **kwargs):
        uri = tracking_uri()
        folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else None
        with (disk_space(folder, "free space there or move the MLflow store (MLFLOW_TRACKING_URI), and rerun",
                         kind="database") if folder else contextlib.nullcontext()), run(*args, **kwargs) as mlflow:
            yield mlflow

    return wrapper


@store_disk_space
@contextlib.contextmanager
def stage_run(stage: str, params: Params, inputs=(), environment_file=None):
    """An MLflow run for one stage, nested under its pipeline run; yields the mlflow module with it active.
    `params`: the stage's view (Params.for_stage): the run logs the keys it declares, the pipeline run every key.
    The machine and software it runs on go to the run (tags `env.*`, artifact environment.json) and to
    `environment_file`, next to the stage's outputs."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines (a new store's tables) are no news
    mlflow.set_tracking_uri(tracking_uri())
    experiment_id = mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)).experiment_id
    client = mlflow.MlflowClient()
    for tag, value in EXPERIMENT_KIND.items():
        client.set_experiment_tag(experiment_id, tag, value)
    end_killed_runs(client, experiment_id)
    commit = git_commit()
    pipeline_tags = {"git_commit": commit, "dvc_exp_name": dvc_experiment(),
                     "dvc_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV") or commit}
    sections = params.declared()
    parent_id = _pipeline_parent(client, experiment_id, pipeline_tags, params.whole.model_dump(mode="json"))
    client.update_run(parent_id, status="RUNNING")  # until this stage ends: a pipeline between stages is not done
    hashes = input_hashes(inputs)
    tags = {**pipeline_tags, "stage": stage, "dvc_stage": os.environ.get("DVC_STAGE", stage),
            "mlflow.parentRunId": parent_id, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            **{f"data.{p}": h for p, h in hashes.items()}}
    status = "FAILED"
    log_file = log_path(environment_file) if environment_file else None
    try:
        with mlflow.start_run(run_name=f"{pipeline_tags['dvc_exp_name']}/{stage}", tags=tags), \
                _logging_to(log_file, stage):
            mlflow.log_params(mlflow_params(sections))
            mlflow.log_dict(sections, "params.json")
            env = environment()
            mlflow.log_dict(env, "environment.json")
            mlflow.set_tags({mlflow_key(f"env.{k}"): _clip(str(v), MAX_PARAM_VALUE) for k, v in flatten(env).items()})
            for path, digest in hashes.items():
                with warnings.catch_warnings():
                    # a local path also matches other registered sources; MLflow warns, then picks the local one
                    warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
                    source = resolve_dataset_source(str(Path(path).resolve()))
                mlflow.log_input(MetaDataset(source, name=path, digest=digest[:36]))
            yield mlflow
            if environment_file:  # with the outputs, once the stage has succeeded
                write_json(environment_file, env)
            status = "FINISHED"
    finally:
        # the parent spans its stages: it ends when its latest stage ends, failed if that one failed
        client.set_terminated(parent_id, status)


def log_path(environment_file) -> Path:
    """The stage's log beside its outputs: next to `environment_file`, but outside the staging folder it is
    written in (core/outputs.py), so the log of a failed stage stays."""
    parts = Path(environment_file).with_name(LOG_FILE).parts
    return Path(*[p for p in parts if not p.startswith(PREFIX)])


@contextlib.contextmanager
def _logging_to(log_file, stage: str):
    """The stage's log records also go to `log_file` (rewritten each run), which goes to the active run as an
    artifact when the stage ends, failed or not; it opens with the run and ends with how the stage ended."""
    if log_file is None:
        yield
        return
    import mlflow

    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, mode="w", encoding="utf-8")
    handler.setFormatter(RedactingFormatter())  # the file, and so its MLflow artifact, shows no secret
    root, log = logging.getLogger(), logging.getLogger(__name__)
    root.addHandler(handler)  # at the console's level: -v and -q apply to the file too
    run = mlflow.active_run()

    def to_file(level, message, *args):  # the file's own lines: the console shows a failure once, as its one line
        handler.handle(log.makeRecord(log.name, level, __file__, 0, message, args, None))

    to_file(logging.INFO, "%s: MLflow run %s (%s), experiment %s", stage, run.info.run_name, run.info.run_id,
            dvc_experiment())
    try:
        yield
        to_file(logging.INFO, "%s: finished", stage)
    except BaseException as e:
        to_file(logging.ERROR, "%s: failed: %s: %s", stage, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        raise
    finally:
        root.removeHandler(handler)
        handler.close()
        mlflow.log_artifact(str(log_file))


def log_model_reference(mlflow, name: str, path: str, sha256: str) -> str:
    """A trained model, by reference: an MLflow "external" logged model (no copy in the store) named `name`,
    tagged with its folder and weights hash, as an output of the active run; returns its model id. MLflow's UI
    shows a run with a model output as a training run (its GenAI view otherwise calls a run an evaluation)."""
    from mlflow.entities import LoggedModelOutput

    run = mlflow.active_run()
    model = mlflow.create_external_model(name=name, source_run_id=run.info.run_id, model_type="reward-model",
                                         experiment_id=run.info.experiment_id,
                                         tags={"model.path": path, "model.sha256": sha256})
    mlflow.MlflowClient().log_outputs(run.info.run_id, [LoggedModelOutput(model.model_id, 0)])
    return model.model_id


def trainer_callback(mlflow):
    """A transformers TrainerCallback that sends each logged training step to the active MLflow run."""
    from transformers import TrainerCallback

    class MLflowStepLogger(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                mlflow.log_metrics({f"train/{k}": float(v) for k, v in logs.items()
                                    if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=state.global_step)

    return MLflowStepLogger()
