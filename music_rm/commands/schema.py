"""The JSON Schema of params.yaml, or of a profile (the same with every key optional), for editors and CI."""
import json

import click

from ..core.params import json_schema


@click.command("schema")
@click.option("--profile", is_flag=True, help="The schema of a profile: every key optional.")
def main(profile):
    """Print the JSON Schema of params.yaml (or, with --profile, of a profile)."""
    click.echo(json.dumps(json_schema(profile), indent=2, sort_keys=True))
