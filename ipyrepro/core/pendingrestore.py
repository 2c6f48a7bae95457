"""A checkpoint's RNG states waiting for the cell that was running at the save (the per-cell restore rule).

Its own module so that the state object names it only as a type: a notebook that never resumes never imports it.
"""

from __future__ import annotations

from collections.abc import Callable

from .records import Record


class PendingRestore(Record, mutable=True):
    """RNG states a checkpoint restored, waiting for the cell that was running when it was saved.

    That cell's next run continues from them instead of being re-seeded (docs/resume.md). `apply` puts
    the checkpoint's process-wide states back: cells that run in between re-seed as usual. `head` is the
    first line of that cell's code, to name it; `warned`: another cell ran and was told so, once.
    """

    seed: int
    cell_id: str | None
    derivation: str
    apply: Callable[[], None]
    head: str = ""
    warned: bool = False

    def matches(self, seed: int, cell_id: str | None, derivation: str) -> bool:
        """The same cell: the same seed, derived the same way (by its code in `source` mode; when both
        runs sent cell ids, the same id)."""
        if seed != self.seed or derivation != self.derivation:
            return False
        return derivation == "source" or not (cell_id and self.cell_id) or cell_id == self.cell_id

    def cell_name(self) -> str:
        """The cell the restore waits for, as a user recognises it: its id, else its first line."""
        head = f"`{self.head}`" if self.head else ""
        if self.cell_id and self.derivation == "cell":
            return f"the cell with id {self.cell_id!r}" + (f" (which begins {head})" if head else "")
        return f"the cell that begins {head}" if head else f"the cell with seed {self.seed}"

    def elsewhere_text(self) -> str:
        """What a cell that is not the awaited one is told (once): it was re-seeded, the restore still waits."""
        edited = (
            " In `source` re-seeding a cell is known by its code: an edit, even a comment, makes it another cell."
            if self.derivation == "source"
            else ""
        )
        return (
            f"ipyrepro: this cell was re-seeded as usual; the checkpoint's RNG states still wait for "
            f"{self.cell_name()}, which was running when the checkpoint was saved.{edited} "
            "Fix: to resume exactly, run that cell next, as it was saved. (If the checkpoint was saved by a cell "
            "that does not run again, nothing is wrong.)"
        )
