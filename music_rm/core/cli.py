"""What every stage script and command shares: one-line errors instead of tracebacks for bad input, bad params,
a service that gave up or a full disk; logging with timestamps and a verbosity flag; the --params option. Every
line that leaves through these (a log line, the error line, a traceback) has its secrets redacted (core/secrets.py)."""
import functools
import logging
import sys
import time
import traceback
from pathlib import Path

import click

from . import paths
from .disk import disk_space
from .errors import InputError, ParamsError, StageFailure
from .outputs import restore_removed_outputs
from .secrets import RedactingFormatter, redact


def _redacted_traceback(kind, value, tb):
    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


def clean_errors(fn):
    """Bad input, bad params, a service that gave up or a full disk as one line and exit 1; and, run by DVC, a stage
    that fails in any way puts back the earlier outputs DVC removed before running it (core/outputs.py)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        sys.excepthook = _redacted_traceback  # a bug's traceback, too, shows no secret
        try:
            with disk_space(Path.cwd(), "free space there and rerun"):  # a full disk no writer named (the MLflow store)
                return fn(*args, **kwargs)
        except (InputError, ParamsError, StageFailure) as e:
            restore_removed_outputs()
            raise click.ClickException(str(e)) from None  # redacted as it was made (core/errors.py)
        except BaseException:
            restore_removed_outputs()
            raise

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
        console = logging.StreamHandler()
        console.setFormatter(RedactingFormatter())
        logging.basicConfig(level=level, handlers=[console], force=True)
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
