"""Profiles: the committed params.yaml is the embedded default; a profile file overrides part of it.

    python -m music_rm.profile profiles/paper.yaml             # rewrite params.yaml with the profile applied
    python -m music_rm.profile profiles/paper.yaml --out -     # print the result instead

Every section of the result is checked by the stages' own typed params before anything is written.
`git checkout params.yaml` returns to the embedded default.
"""
import copy
import sys
from pathlib import Path

import click
import yaml

from .cli import clean_errors
from .io import write_text
from .params import SECTIONS, ParamsError, build_section


def merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` applied: mappings merge key by key, any other value replaces."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_profile(params: dict, profile: dict, where: str) -> dict:
    unknown = sorted(profile.keys() - SECTIONS.keys())
    if unknown:
        raise ParamsError(f"{where}: unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    result = merge(params, profile)
    for name in SECTIONS:
        build_section(name, result, where)
    return result


@click.command()
@click.argument("profile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default=None, help="Where to write (default: the --params file; '-': stdout).")
@clean_errors
def main(profile, params_path, out):
    params = yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}
    overrides = yaml.safe_load(profile.read_text(encoding="utf-8")) or {}
    result = apply_profile(params, overrides, f"{params_path} + {profile}")
    text = (f"# {params_path} with {profile} applied (python -m music_rm.profile {profile}).\n"
            f"# `git checkout {params_path}` returns to the embedded default.\n"
            + yaml.safe_dump(result, sort_keys=False, allow_unicode=True, width=120))
    if out == "-":
        sys.stdout.write(text)
    else:
        write_text(out or params_path, text)
        click.echo(f"{out or params_path}: {profile} applied")


if __name__ == "__main__":
    main()
