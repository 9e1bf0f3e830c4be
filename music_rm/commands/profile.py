"""Apply a profile: the committed params.yaml is the embedded default; a profile file overrides part of it.

    music-rm profile profiles/paper.yaml             # rewrite params.yaml with the profile applied
    music-rm profile profiles/paper.yaml --out -     # print the result instead

The result is checked whole (every key, type and range, every cross-section rule) before anything is
written. `git checkout params.yaml` returns to the embedded default. In a profile's string values, `${REPO}`
is the repository's absolute path and `${NAME}` any environment variable: data outside the repository
(../shared/data) gets an absolute path, which queued experiments (run in temporary copies) need.
"""
import os
import string
import sys
from pathlib import Path

import click
import yaml

from ..core.cli import clean_errors
from ..core.io import write_text
from ..core.params import apply_profile, read_yaml


def expand(value, variables: dict):
    """`value` with ${NAME} in every string replaced by variables[NAME]; unknown names are left as they are."""
    if isinstance(value, dict):
        return {k: expand(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, variables) for v in value]
    if isinstance(value, str):
        return string.Template(value).safe_substitute(variables)
    return value


@click.command("profile")
@click.argument("profile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(path_type=Path),
              help="The params file the profile is applied to.")
@click.option("--out", default=None, help="Where to write (default: the --params file; '-': standard output).")
@clean_errors
def main(profile, params_path, out):
    """Apply PROFILE (a partial params file, e.g. profiles/paper.yaml) to params.yaml, checked whole."""
    overrides = expand(read_yaml(profile), {**os.environ, "REPO": str(Path.cwd().resolve())})
    result = apply_profile(read_yaml(params_path), overrides, f"{params_path} + {profile}")
    text = (f"# {params_path} with {profile} applied (music-rm profile {profile}).\n"
            f"# `git checkout {params_path}` returns to the embedded default.\n"
            + yaml.safe_dump(result, sort_keys=False, allow_unicode=True, width=120))
    if out == "-":
        sys.stdout.write(text)
    else:
        write_text(out or params_path, text)
        click.echo(f"{out or params_path}: {profile} applied")
