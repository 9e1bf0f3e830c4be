"""Every stage script and every music-rm command says what it does, and every option has help."""
import importlib.util

import click
import pytest
from click.testing import CliRunner

from music_rm.commands import main as music_rm
from tests.conftest import REPO

STAGES = sorted((REPO / "stages").glob("*.py"))


def stage_command(path) -> click.Command:
    spec = importlib.util.spec_from_file_location(f"stage_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def commands():
    yield "music-rm", music_rm
    for name, command in music_rm.commands.items():
        yield f"music-rm {name}", command
    for path in STAGES:
        yield f"stages/{path.name}", stage_command(path)


@pytest.mark.parametrize("name, command", list(commands()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_command_and_option_has_help(name, command):
    assert (command.help or "").strip(), f"{name} has no description"
    bare = [o.name for o in command.params if isinstance(o, click.Option) and not (o.help or "").strip()]
    assert bare == [], f"{name}: options without help: {bare}"
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0 and command.help.split()[0] in result.output


def test_the_console_script_lists_its_subcommands():
    assert {"profile", "plan", "score", "export", "compare", "schema"} <= set(music_rm.commands)
    assert len(STAGES) == 10
