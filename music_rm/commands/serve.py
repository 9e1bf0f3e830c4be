"""Serve a trained reward model with vLLM's pooling runner, for PPO/GRPO loops that ask for rewards over HTTP.

    music-rm serve models/rm/music/seed-0 --python .venv-vllm/bin/python --port 8000 [-- more vLLM options]

Runs vLLM's OpenAI-compatible server (the command printed first) in place of this process. POST /pooling
{"model": "models/rm/music/seed-0", "messages": [...]} then answers the raw reward `music-rm score` gives, at the same
dtype (music_rm/reward/serve.py says how). Options after `--` go to vLLM (e.g. --data-parallel-size 8).
"""
import os
import sys

import click

from ..core.cli import clean_errors


@click.command("serve", context_settings={"ignore_unknown_options": True})
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("vllm_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--python", "python", default=sys.executable, envvar="MUSIC_VLLM_PYTHON", show_envvar=True,
              help="The Python of the environment vLLM is installed in (default: this one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, help="The port to listen on.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default=None,
              help="Default: the dtype `music-rm score` uses here (bf16 on GPUs, fp32 on the CPU).")
@click.option("--dry-run", is_flag=True, help="Print the command and exit.")
@clean_errors
def main(model_dir, vllm_args, python, host, port, dtype, dry_run):
    """Serve the reward model in MODEL_DIR with vLLM; POST /pooling answers its raw rewards."""
    from ..reward.serve import printable, scoring_dtype, serve_command

    command = serve_command(model_dir, python, host, port, dtype or scoring_dtype(), vllm_args)
    click.echo(printable(command))
    if not dry_run:
        sys.stdout.flush()
        os.execv(command[0], command)
