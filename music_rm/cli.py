"""What every stage script shares: clean one-line errors instead of tracebacks for bad input, bad params,
or a service that gave up."""
import functools

import click

from .io import InputError
from .params import ParamsError


class StageFailure(RuntimeError):
    """A failure outside the code (an API that kept failing), reported in one line."""


def clean_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InputError, ParamsError, StageFailure) as e:
            raise click.ClickException(str(e)) from None

    return wrapper
