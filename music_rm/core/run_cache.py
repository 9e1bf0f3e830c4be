"""DVC's run cache on a shared remote, whole. `dvc push --run-cache` sends the run records and the cached outputs,
but not the `cache: false` ones (metrics, summaries, curves: fetch, contrast and train have some), which DVC's run
cache keeps in the local cache too (dvc/stage/cache.py, StageCache.save): another machine's `dvc repro --pull` then
finds a record whose output it cannot get, and runs the stage again. `push_run_cache` sends those too."""
import yaml

from .errors import StageFailure


def push_run_cache(remote: str | None = None) -> tuple[int, int]:
    """`dvc push --run-cache` to `remote` (the default one when None), then every file output of the local run cache's
    records that the remote lacks; returns (files DVC pushed, `cache: false` outputs pushed after)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc_data.hashfile.hash_info import HashInfo

    with Repo(".") as repo:
        try:
            pushed = repo.push(remote=remote, run_cache=True)
        except DvcException as e:
            raise StageFailure(f"dvc push --run-cache: {e}") from None
        runs = repo.cache.legacy.fs.join(repo.cache.legacy.path, "runs")
        objs = set()
        for path in (repo.cache.legacy.fs.find(runs) if repo.cache.legacy.fs.exists(runs) else []):
            for out in (yaml.safe_load(repo.cache.legacy.fs.read_text(path)) or {}).get("outs", []):
                if out.get("md5") and not out["md5"].endswith(".dir"):  # folders: cached, DVC pushed them
                    objs.add(HashInfo("md5", out["md5"]))
        local = repo.cache.local
        present = {h for h in objs if local.exists(h.value)}
        return pushed, len(repo.cloud.push(present, remote=remote).transferred)
