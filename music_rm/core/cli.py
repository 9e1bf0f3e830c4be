"""What every stage script and command shares: one-line errors instead of tracebacks for bad input, bad params,
or a service that gave up, and the --params option."""
import functools
from pathlib import Path

import click

from .errors import InputError, ParamsError, StageFailure


def clean_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InputError, ParamsError, StageFailure) as e:
            raise click.ClickException(str(e)) from None

    return wrapper


params_option = click.option("--params", "params_path", default="params.yaml", show_default=True,
                             help="The params file (every stage reads it whole and checks every key).")
models_option = click.option("--models", default="models/rm", show_default=True, type=click.Path(path_type=Path),
                             help="Parent folder of the trained reward models (one folder per variant).")
