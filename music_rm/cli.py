"""What every stage script shares: clean one-line errors instead of tracebacks for bad input or params."""
import functools

import click

from .io import InputError
from .params import ParamsError


def clean_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InputError, ParamsError) as e:  # bad data or params (contrast.turns out of range included)
            raise click.ClickException(str(e)) from None

    return wrapper
