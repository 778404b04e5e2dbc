"""Help that reads cleanly whatever the typer release.

typer 0.29 prints every option's Python type (``--public <bool>``, ``--store <str>``) and
required arguments in braces (``{client_id}``). :func:`clean_help` makes ``--help`` print
what click always did: no type after a flag, ``TEXT``/``INTEGER``/``PATH``/``[a|b]`` after an
option that takes a value, ``CLIENT_ID`` for an argument. On typer releases without those
methods it changes nothing."""

from __future__ import annotations

from typing import Any

__all__ = ["clean_help"]

_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "bool": "BOOLEAN"}


def _clean(label: str | None) -> str | None:
    if label is None:
        return None
    bare = label.strip("<>")
    if "|" in bare:
        return f"[{bare}]"
    return _NAMES.get(bare, bare.upper())


def clean_help() -> None:
    try:
        from typer import core
    except ImportError:  # pragma: no cover
        return
    option = getattr(core, "TyperOption", None)
    argument = getattr(core, "TyperArgument", None)
    if option is not None and hasattr(option, "display_type_rich"):
        original_option = option.display_type_rich

        def option_type(self: Any, ctx: Any) -> str | None:
            if self.metavar is not None:
                return str(self.metavar)
            if getattr(self, "is_flag", False):
                return None
            return _clean(original_option(self, ctx))

        option.display_type_rich = option_type
    if argument is not None and hasattr(argument, "display_type_rich"):

        def argument_type(self: Any, ctx: Any) -> str | None:
            return None  # the argument's NAME says it

        argument.display_type_rich = argument_type
    if argument is not None and hasattr(argument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = str(self.metavar or self.name).upper()
            if not self.required:
                name = f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        argument._usage_display_name = usage_name
    if argument is not None and hasattr(argument, "_rich_display_name"):

        def rich_name(self: Any) -> str:
            return str(self.metavar or self.name).upper() + ("..." if self.nargs != 1 else "")

        argument._rich_display_name = rich_name
