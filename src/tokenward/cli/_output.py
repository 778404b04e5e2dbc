"""List output of the CLI: a table at its natural width (ids are never cut, whatever the
terminal or pipe width) or JSON (``--json`` / ``--output json``) for scripts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

__all__ = ["JsonOpt", "Output", "OutputOpt", "emit"]


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOpt = Annotated[
    Output,
    typer.Option("--output", "-o", help="table (for people) or json (for scripts)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Same as --output json.")]

#: wide enough that a table is printed at its natural width: nothing is folded or cut
_WIDE = 10_000


def emit(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    output: Output,
    json: bool,
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
    show: Mapping[str, Any] | None = None,
) -> None:
    """Print ``rows`` as JSON (every field, raw values) or as a table of ``columns``
    (``labels`` renames headers; ``show[col](value)`` formats a cell)."""
    if json or output is Output.json:
        typer.echo(orjson.dumps(list(rows), option=orjson.OPT_INDENT_2).decode())
        return
    labels = labels or {}
    show = show or {}
    table = Table(title=title)
    for col in columns:
        table.add_column(labels.get(col, col), no_wrap=True)
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col)
            fmt = show.get(col)
            text = fmt(value) if fmt is not None else ("" if value is None else str(value))
            cells.append(text)
        table.add_row(*cells)
    Console(highlight=False, width=_WIDE, soft_wrap=True).print(table)
