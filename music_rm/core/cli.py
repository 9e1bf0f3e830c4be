"""What every stage script and command shares: one-line errors instead of tracebacks for bad input, bad params,
a service that gave up or a full disk; logging with timestamps and a verbosity flag; the --params option."""
import functools
import logging
import time
from pathlib import Path

import click

from . import paths
from .disk import disk_space
from .errors import InputError, ParamsError, StageFailure


def clean_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with disk_space(Path.cwd(), "free space there and rerun"):  # a full disk no writer named (the MLflow store)
                return fn(*args, **kwargs)
        except (InputError, ParamsError, StageFailure) as e:
            raise click.ClickException(str(e)) from None

    return wrapper


# -h as well as --help, for every stage script (the music-rm group passes it on to its commands)
HELP = {"help_option_names": ["-h", "--help"]}
params_option = click.option("--params", "params_path", default="params.yaml", show_default=True,
                             help="The params file (every stage reads it whole and checks every key).")
models_option = click.option("--models", default=paths.REWARD_MODELS, show_default=True,
                             type=click.Path(path_type=Path), help="Parent folder of the trained reward models (<variant>/seed-<seed>).")


def logged(fn):
    """-v/--verbose and -q/--quiet, and logging through `logging` with timestamps: INFO by default (what a stage
    is doing), DEBUG with -v, warnings only with -q. The stage's one-line summary is printed either way."""
    @click.option("-v", "--verbose", is_flag=True, help="Log debug messages too.")
    @click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
    @functools.wraps(fn)
    def wrapper(*args, verbose=False, quiet=False, **kwargs):
        level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%Y-%m-%d %H:%M:%S", force=True)
        for noisy in ("mlflow", "httpx", "urllib3", "filelock", "alembic"):
            logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
        # logs each database error with its traceback before raising it; the stage says it once, in one line
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        log = logging.getLogger(fn.__module__ if fn.__module__ != "__main__" else "music_rm.stage")
        start = time.perf_counter()
        log.debug("started")
        result = fn(*args, **kwargs)
        log.info("done in %.1f s", time.perf_counter() - start)
        return result

    return wrapper
