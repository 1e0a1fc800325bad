"""Command-line options made from config dataclass fields, so a knob is declared once: in its
dataclass, with its default and `metadata={"help": ...}`.

    @app.command()
    @config_options({TrainConfig: {"steps": Flag(min=1)}, MemoryConfig: {"lora_r": Flag(min=1)}})
    def train(data: Path = typer.Argument(...), *, configs: dict, json_out: JsonOption = False): ...

adds `--steps` and `--lora-r` where `configs` stands and calls `train` with
`configs={TrainConfig: {"steps": ...}, MemoryConfig: {"lora_r": ...}}`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any

import typer

from .output import flag_name


@dataclass(frozen=True)
class Flag:
    """How one field shows on the command line; what is left unset comes from the field."""

    help: str | None = None  # default: the field's metadata["help"]
    min: float | None = None
    max: float | None = None
    type: Any = None  # default: the field's type


def config_options(flags: dict[type, dict[str, Flag]]):
    """Decorator: the command's keyword-only `configs` parameter becomes one option per field
    named in `flags` (`--` + the name, or output.FLAG_NAMES; a bool gets `--x/--no-x`)."""

    def decorate(command):
        options = [_option(config, name, flag) for config, table in flags.items() for name, flag in table.items()]
        own = inspect.signature(command, eval_str=True).parameters
        at = list(own).index("configs")
        params = list(own.values())
        params[at:at + 1] = options

        @functools.wraps(command)
        def wrapper(**kwargs):
            configs = {config: {name: kwargs.pop(name) for name in table} for config, table in flags.items()}
            return command(**kwargs, configs=configs)

        wrapper.__signature__ = inspect.Signature(params)
        return wrapper

    return decorate


def _option(config: type, name: str, flag: Flag) -> inspect.Parameter:
    field = next(f for f in dataclasses.fields(config) if f.name == name)
    help_text = flag.help or _sentence(field.metadata["help"])
    declaration = flag_name(name)
    annotation = flag.type or typing.get_type_hints(config)[name]
    if annotation is bool:
        declaration += f"/--no-{declaration[2:]}"
    option = typer.Option(field.default, declaration, min=flag.min, max=flag.max, help=help_text)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def _sentence(text: str) -> str:
    """A field's help ("total optimizer steps") as the CLI writes help ("Total optimizer steps.")."""
    return text[0].upper() + text[1:].rstrip(".") + "."
