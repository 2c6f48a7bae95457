"""The seed each cell starts from, as one cached record per cell: the re-seed hook's lookup before every cell.

Deriving a seed (BLAKE2b) and building its record cost a few microseconds; a notebook reruns the same
cells, so each (mode, cell id[, code]) keeps its record for the current base seed, and a cell costs
one dict lookup. A new base seed starts afresh.
"""

from __future__ import annotations

from typing import TypeVar

from .records import Record
from .seeding import derive_cell_seed, derive_source_seed


class CellSeed(Record):
    """The seed the last cell started from, the cell id sent with it (None: none), and how the seed was derived.

    `derivation` is "cell" (from the cell id), "source" (from the cell's code),
    "fixed" (the base seed) or "given" (`%%repro --seed`, or the seed of a `--check` file).
    """

    seed: int
    cell_id: str | None
    derivation: str = "fixed"


class CellSeeds:
    """The `CellSeed` of a cell by re-seed mode, cached per base seed (each cache bounded)."""

    LIMIT = 4096  # cells (or cell sources) remembered per mode: a notebook's worth many times over

    def __init__(self) -> None:
        self._base = 0
        self._fixed: dict[str | None, CellSeed] = {}
        self._by_id: dict[str, CellSeed] = {}
        self._by_source: dict[tuple[str | None, str], CellSeed] = {}
        self._source_seeds: dict[str, int] = {}

    def lookup(self, mode: str, base: int, cell_id: str | None, code: str) -> CellSeed:
        """The record for this cell in `mode` ("fixed", "cell" or "source"; `cell` without an id derives
        from the code, as `source` does)."""
        if base != self._base:
            self._forget(base)
        if mode == "cell" and cell_id:
            cell = self._by_id.get(cell_id)
            if cell is None:
                cell = _remember(self._by_id, cell_id, CellSeed(derive_cell_seed(base, cell_id), cell_id, "cell"))
            return cell
        if mode == "fixed":
            cell = self._fixed.get(cell_id)
            if cell is None:
                cell = _remember(self._fixed, cell_id, CellSeed(base, cell_id, "fixed"))
            return cell
        key = (cell_id, code)
        cell = self._by_source.get(key)
        if cell is None:
            cell = _remember(self._by_source, key, CellSeed(self.source_seed(base, code), cell_id, "source"))
        return cell

    def source_seed(self, base: int, code: str) -> int:
        """The seed `source` re-seeding gives a cell with this code (derived once per base seed)."""
        if base != self._base:
            self._forget(base)
        seed = self._source_seeds.get(code)
        if seed is None:
            seed = _remember(self._source_seeds, code, derive_source_seed(base, code))
        return seed

    def _forget(self, base: int) -> None:
        self._base = base
        for cache in (self._fixed, self._by_id, self._by_source, self._source_seeds):
            cache.clear()


_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    if len(cache) >= CellSeeds.LIMIT:
        cache.clear()
    cache[key] = value
    return value
