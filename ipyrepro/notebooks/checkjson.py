"""The check's `--json` report: objects a script can act on, in the shape of check-report.schema.json.

Every cell is named by the same reference (`index` and `code_index` from 0, `position` and
`code_position` from 1, `id`, the saved `execution_count`, and the label the text report prints).
The schema file ships with the package; `validate` checks a report against it (tests, and scripts
that want to know the shape they read).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from .reportmodel import CellOutcome, build_model
from .statecheck import first_divergence_json, inherits_json, state_json

SCHEMA_VERSION = 1
SCHEMA_FILE = "check-report.schema.json"


def report_dict(report: Any) -> dict[str, Any]:
    """A CheckReport as JSON-ready data."""
    causes = report.causes.by_cell if report.causes is not None else {}
    hash_order = report.causes.hash_order_cells if report.causes is not None else []
    status = report.causes.status if report.causes is not None else ""
    ids = {cell.index: cell.saved_id for cell in report.cells}  # as every cell ref: null when saved without one
    model = build_model(report)
    prints = {outcome.index: outcome.prints for outcome in model.cells}
    return {
        "schema": SCHEMA_VERSION,
        "notebook": report.notebook,
        "kernel": report.kernel,
        "kernel_note": report.kernel_note,
        "mode": report.mode,
        "seed": report.seed,
        "reseed": report.reseed,
        "against_saved": report.against_saved,
        "stop_on_error": report.stop_on_error,
        "runs": len(report.runs),
        "ok": report.ok,
        "exit_code": report.exit_code,
        "cells": [_cell(outcome) for outcome in model.cells],
        "errors": [error.to_dict() for error in report.run_errors()],
        "differences": [
            {
                **d.to_dict(),
                "causes": [c.to_dict() for c in report.cell_causes(d.cell.index)],
                "inherits": inherits_json(report.state.inherits(d.cell.index), ids),
            }
            for d in report.differences
        ],
        "first_divergence": first_divergence_json(report.state, ids, prints),
        "divergence_causes": [c.to_dict() for c in report.divergence_causes()],
        "state": state_json(report.state, ids),
        "reproduced_errors": [error.to_dict() for error in report.reproduced],
        "not_saved": [cell.ref() for cell in report.not_saved],
        "causes": [
            {
                "cell": cell.ref(),
                "hash_order_only": cell.index in hash_order,
                "causes": [c.to_dict() for c in causes[cell.index]],
            }
            for cell in report.cells
            if cell.index in causes
        ],
        "causes_run": status or None,
        "hidden_state": {
            "saved_out_of_order": bool(report.out_of_order),
            "out_of_order": report.out_of_order,
            "findings": [finding.to_dict(lambda cell: cell.ref()) for finding in report.hidden_state],
        },
        "machines": report.machines.to_dict() if report.machines is not None else None,
    }


def _cell(outcome: CellOutcome) -> dict[str, Any]:
    return {**outcome.cell.ref(), "tags": list(outcome.cell.tags), "outcome": outcome.status, "raised": outcome.raised}


def outcome(report: Any, cell: Any) -> str:
    """matched, differs, reproduced-error, not-compared, ignored, not-saved or empty (see the schema)."""
    found = build_model(report).cell(cell.index)
    return found.status if found is not None else "not-compared"


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of the report, as shipped with the package."""
    from importlib.resources import files

    return json.loads(files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


def validate(data: dict[str, Any]) -> None:
    """Raise jsonschema's ValidationError when `data` does not have the report's shape (needs jsonschema)."""
    import jsonschema

    jsonschema.validate(data, schema())


__all__ = ["SCHEMA_VERSION", "outcome", "report_dict", "schema", "validate"]
