"""The causes of one cell rerun in an IPython shell: what `%%repro` and the check's diagnostic kernel run."""

from __future__ import annotations

import ast
import sys
import types
from typing import Any

from ..comparison.findings import Cause
from .hashorder import _hash_ordered, hash_order_candidates
from .tracer import result, trace
from .wording import _hash_order

# -- one cell in a shell (what `ipyrepro check` runs inside its diagnostic kernel) --------------------

KERNEL_MARKER = "ipyrepro-causes:"
_ABSENT = object()


def cell_causes(shell: Any, cell: str, *, hash_order: bool | None = None) -> list[Cause]:
    """Run `cell` once more in `shell` under the tracer and return its causes; afterwards the namespace,
    the RNG states and the determinism settings are as before. The run works on copies of the names the
    cell touches, so the user's own objects are not changed."""
    from IPython.utils.capture import capture_output

    from ..comparison.snapshot import Snapshot, cell_names
    from ..core.seeding import capture_rng, restore_rng
    from .diagnosis import deterministic_warn_only

    code = shell.transform_cell(cell)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    namespace = shell.user_ns
    names = cell_names(tree, namespace)
    snapshot = Snapshot.take(namespace, names)
    kept = {name: namespace.get(name, _ABSENT) for name in (*names.bound, *names.read)}
    existing = set(namespace)
    rng = capture_rng()
    snapshot.restore(namespace)
    try:
        with (
            deterministic_warn_only(),
            trace(code, cell_source=cell, hash_order=hash_order) as tracer,
            capture_output(),
        ):
            shell.run_cell(code, store_history=False, silent=True)
    finally:
        for name in set(namespace) - existing:
            namespace.pop(name, None)
        for name, value in kept.items():
            if value is _ABSENT:
                namespace.pop(name, None)
            else:
                namespace[name] = value
        restore_rng(rng)
    return result(tracer)


def hash_order_in(shell: Any, cell: str) -> list[Cause]:
    """The places in `cell` that iterate or show a set of strings, judged with the values the namespace
    holds now (after the cell ran); used where a differential run proved the cell depends on hash order."""
    code = shell.transform_cell(cell)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    import builtins

    frame = types.SimpleNamespace(f_locals=shell.user_ns, f_globals=shell.user_ns, f_builtins=vars(builtins))
    found: dict[int, Cause] = {}
    lines = code.splitlines()
    for node in hash_order_candidates(tree):
        what = _hash_ordered(node, frame)  # type: ignore[arg-type]
        if what and node.lineno not in found:
            detail, fix, kind = _hash_order(what)
            found[node.lineno] = Cause(kind, node.lineno, None, lines[node.lineno - 1].strip(), detail, fix)
    return [found[line] for line in sorted(found)]


def _seed_as_the_cell(cell: str) -> None:
    """Re-seed as the hook seeds `cell` itself: it seeded this helper, whose code differs (in `source`
    mode, and `cell` mode without a cell id). Nothing to do (nor any torch to import) without ipyrepro."""
    import sys

    state = getattr(sys.modules.get("ipyrepro.core.state"), "STATE", None)
    if state is not None and state.shell_hooks:
        last = state.last_cell
        state.before_cell(last.cell_id if last is not None else None, cell)


def _import_numpy_random_if_watched() -> None:
    """NumPy 2 imports `numpy.random` on first use, and its global RandomState reads OS entropy then: in the
    watched kernel (nothing seeds it) import it before the trace, so a first draw in the cell is named as a
    draw from the unseeded global RNG, not as that import's entropy read."""
    from .globalrng import GLOBAL_RNGS

    if GLOBAL_RNGS.armed and "numpy" in sys.modules and "numpy.random" not in sys.modules:
        import importlib

        importlib.import_module("numpy.random")


def print_for_kernel(kind: str, cell: str, hash_order: bool = False) -> None:
    """The kernel side of `ipyrepro check`'s diagnostic run: print one marked JSON line of causes."""
    import json

    from IPython import get_ipython

    shell = get_ipython()
    try:
        if kind == "trace":
            _seed_as_the_cell(cell)
            _import_numpy_random_if_watched()
        causes = cell_causes(shell, cell, hash_order=hash_order) if kind == "trace" else hash_order_in(shell, cell)
        payload: Any = [cause.to_dict() for cause in causes]
    except Exception as error:  # report, never break the notebook's run
        payload = {"error": f"{type(error).__name__}: {error}"}
    print(KERNEL_MARKER + json.dumps(payload))
