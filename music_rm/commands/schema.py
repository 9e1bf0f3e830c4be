"""The JSON Schema of params.yaml, or of a profile (the same with every key optional), for editors and CI; or
the key reference of docs/params.md, generated from the params model's descriptions (`make docs`)."""
import json
import types
import typing
from pathlib import Path

import annotated_types
import click
from pydantic import BaseModel

from ..core.params import Params, json_schema

MARKER = "<!-- Generated from music_rm/core/params.py by `make docs` (music-rm schema --markdown); edit there. -->"
_BOUNDS = {annotated_types.Ge: ("≥", "ge"), annotated_types.Gt: (">", "gt"), annotated_types.Le: ("≤", "le"),
           annotated_types.Lt: ("<", "lt")}


def _bounds(metadata) -> str:
    parts = []
    for item in metadata:
        for kind, (sign, attribute) in _BOUNDS.items():
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attribute)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            parts.append(f"length ≥ {item.min_length}")
        if isinstance(item, annotated_types.MaxLen):
            parts.append(f"length ≤ {item.max_length}")
        parts += [_bounds(item.metadata)] if hasattr(item, "metadata") and item.metadata else []
    return ", ".join(p for p in parts if p)


def type_name(annotation, metadata=()) -> str:
    """A field's type as a reader of params.yaml sees it: `int ≥ 1 | null`, `a | b`, `list of str`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0], [*args[1:], *metadata])
    bounds = _bounds(metadata)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}" + (f" ({bounds})" if bounds else "")
    if origin is dict:
        return f"{{name: {type_name(args[1])}}}" + (f" ({bounds})" if bounds else "")
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        kind = annotation.model_fields.get("kind")
        return f"{typing.get_args(kind.annotation)[0]} section" if kind else "section"
    name = {int: "int", float: "float", str: "str", bool: "bool"}.get(annotation, str(annotation))
    return f"{name} {bounds}" if bounds else name


def _models(annotation) -> list[type]:
    """The models a type is: one, or each of a union of models (told apart by `kind`); [] for any other type."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    return list(members) if members and all(_models(m) for m in members) else []


def _sections_in(annotation) -> list[tuple[str, type]]:
    """The params sections a field holds: itself (a model) or the values of a {name: model} mapping, a union of
    models giving one each."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _sections_in(args[0])
    if origin is dict:
        return [(".<name>", model) for model in _models(args[1])]
    return [("", model) for model in _models(annotation)]


def rows(model: type[BaseModel], prefix: str = "", tag: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, type, description) of every key of a section, nested sections flattened after their key; the
    keys of one kind of a union's section say which (`tag`)."""
    out = []
    for name, field in model.model_fields.items():
        out.append((prefix + name, type_name(field.annotation, field.metadata), tag + (field.description or "")))
        sections = _sections_in(field.annotation)
        for suffix, section in sections:
            kind = f"kind {typing.get_args(section.model_fields['kind'].annotation)[0]}: " if len(sections) > 1 else ""
            out += rows(section, f"{prefix}{name}{suffix}.", kind)
    return out


def _cell(text: str) -> str:
    """Text as a markdown table cell shows it: `|` escaped, and `<name>` not taken for an HTML tag."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def markdown() -> str:
    """The key reference: one table per section of params.yaml."""
    parts = [MARKER, "", "## Every key", ""]
    for name, field in Params.model_fields.items():
        parts += [f"### `{name}`", "", _cell(field.description) + ".", "", "| key | type | meaning |", "|---|---|---|"]
        parts += [f"| `{key}` | {_cell(kind)} | {_cell(text)} |" for key, kind, text in rows(field.annotation)]
        parts.append("")
    return "\n".join(parts)


def update(path: Path) -> None:
    """Replace everything after MARKER in `path` with the generated reference."""
    text = path.read_text(encoding="utf-8")
    head = text.split(MARKER)[0] if MARKER in text else text.rstrip("\n") + "\n\n"
    path.write_text(head + markdown(), encoding="utf-8")


@click.command("schema")
@click.option("--profile", is_flag=True, help="The schema of a profile: every key optional.")
@click.option("--markdown", "as_markdown", is_flag=True, help="The key reference of docs/params.md instead.")
@click.option("--update", "update_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --markdown: rewrite this file's generated part (what `make docs` does to docs/params.md).")
def main(profile, as_markdown, update_path):
    """Print the JSON Schema of params.yaml (or, with --profile, of a profile), every key with its description."""
    if update_path:
        update(update_path)
    elif as_markdown:
        click.echo(markdown(), nl=False)
    else:
        click.echo(json.dumps(json_schema(profile), indent=2, sort_keys=True))
