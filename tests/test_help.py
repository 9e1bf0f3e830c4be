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
    for flag in ("--help", "-h"):
        result = CliRunner().invoke(command, [flag]) if command is music_rm or name.startswith("stages/") else \
            CliRunner().invoke(music_rm, [name.split()[1], flag])  # a command gets -h from the group, as it is run
        assert result.exit_code == 0 and command.help.split()[0] in result.output, (flag, result.output)


def test_the_version_is_the_installed_package_s():
    from music_rm import __version__

    result = CliRunner().invoke(music_rm, ["--version"])
    assert result.exit_code == 0 and result.output == f"music-rm, version {__version__}\n"


def test_the_console_script_lists_its_subcommands():
    assert {"profile", "plan", "score", "export", "compare", "schema", "exps"} <= set(music_rm.commands)
    assert len(STAGES) == 12
