"""nbformat's own JSON schema for v4 notebooks, checked a cell and an output at a time.

The schema says a cell is oneOf(raw_cell, markdown_cell, code_cell), and an output oneOf its
four kinds; each branch fixes the type field (cell_type, output_type) to one value, so exactly
one branch can match: the one its type field names. nbformat's validator (fastjsonschema) tries
every branch, and a failed branch raises, which made the check of one notebook about a
millisecond: the most expensive step of reading an upload. Here the same definitions are compiled
once per type and each cell and output is checked by the one its type names: the same verdict
(tests/test_grader_units.py compares both on valid and broken notebooks), without the tries.
"""
from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from pathlib import Path

import fastjsonschema
import nbformat

# the definitions of the schema's two oneOf's, keyed by what their type field says
CELLS = {"raw": "raw_cell", "markdown": "markdown_cell", "code": "code_cell"}
OUTPUTS = {"execute_result": "execute_result", "display_data": "display_data", "stream": "stream", "error": "error"}


class Invalid(ValueError):
    """Not a notebook of the schema (the message says where)."""


@functools.cache
def _schema(minor: int) -> dict:
    schema = json.loads((Path(nbformat.v4.__file__).parent / nbformat.v4.nbformat_schema[(4, minor)]).read_text())
    for union, branches, field in (("cell", CELLS, "cell_type"), ("output", OUTPUTS, "output_type")):
        refs = [b["$ref"].rsplit("/", 1)[1] for b in schema["definitions"][union]["oneOf"]]
        typed = {schema["definitions"][r]["properties"][field]["enum"][0]: r for r in refs}
        if typed != branches:  # a schema this module does not know how to split
            raise RuntimeError(f"nbformat 4.{minor}'s {union} is not oneOf {sorted(branches.values())}")
    return schema


@functools.cache
def _validator(minor: int, definition: str | None) -> Callable[[object], object]:
    """One definition (None: the whole notebook), with every cell and output in it only required
    to be an object: each is checked by its own type's validator."""
    schema = copy.deepcopy(_schema(minor))
    schema["definitions"]["cell"] = schema["definitions"]["output"] = {"type": "object"}
    root = schema if definition is None else {"$ref": f"#/definitions/{definition}",
                                               "definitions": schema["definitions"]}
    return fastjsonschema.compile(root)


def _check(minor: int, definition: str | None, node: object, where: str) -> None:
    try:
        _validator(minor, definition)(node)
    except fastjsonschema.JsonSchemaException as err:
        raise Invalid(f"{where}: {err}") from None


def check_output(output: object, minor: int = 5, where: str = "output") -> None:
    kind = output.get("output_type") if isinstance(output, dict) else None
    if kind not in OUTPUTS:
        raise Invalid(f"{where}: unknown output_type {kind!r}")
    _check(minor, OUTPUTS[kind], output, where)


def check_cell(cell: object, minor: int = 5, where: str = "cell") -> None:
    kind = cell.get("cell_type") if isinstance(cell, dict) else None
    if kind not in CELLS:
        raise Invalid(f"{where}: unknown cell_type {kind!r}")
    _check(minor, CELLS[kind], cell, where)
    for i, output in enumerate(cell["outputs"] if kind == "code" else []):
        check_output(output, minor, f"{where}, output {i}")


def known(nb: object) -> bool:
    """Is nb a v4 notebook of a minor version this module has the schema of?"""
    return (isinstance(nb, dict) and nb.get("nbformat") == 4 and type(nb.get("nbformat_minor")) is int
            and (4, nb["nbformat_minor"]) in nbformat.v4.nbformat_schema)


def check_notebook(nb: object) -> None:
    """Raise Invalid unless nb (JSON data) is a valid notebook of a known() version."""
    if not known(nb):
        raise Invalid("not a notebook of format 4.0 to 4.5")
    minor = nb["nbformat_minor"]
    _check(minor, None, nb, "notebook")
    for i, cell in enumerate(nb["cells"]):
        check_cell(cell, minor, f"cell {i}")
