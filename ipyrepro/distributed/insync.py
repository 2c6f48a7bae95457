"""Ranks in sync: `check_in_sync` gathers per-tensor digests over `torch.distributed` and names what differs.

Its own module (`ipyrepro.distributed` imports it lazily) so that `%repro on`, which needs only the
child-process settings there, does not import the comparison and report machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..comparison.report import CompareReport, Entry
from ..comparison.values import DIFFERS, IDENTICAL, MISSING, NOT_COMPARABLE, Outcome, Tolerance


@dataclass(repr=False)
class SyncReport(CompareReport):
    """What `check_in_sync` found: one entry per tensor (or other leaf), identical on every rank or not.

    `differences[name]["ranks"]` lists the ranks that disagree with the majority
    (ties: with the group holding the lowest rank); `groups` lists every group of
    ranks that agree.
    """

    rank: int = 0
    world_size: int = 1
    groups: dict[str, list[list[int]]] = field(default_factory=dict)

    @property
    def differences(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, details in super().differences.items():
            groups = self.groups.get(name, [])
            details.pop("run", None)
            details["groups"] = groups
            details["ranks"] = sorted(rank for group in groups[1:] for rank in group)
            out[name] = details
        return out

    def headline(self) -> str:
        where = f"{self.world_size} rank{'s' if self.world_size != 1 else ''}"
        differing = len(self.differences)
        if differing:
            return f"OUT OF SYNC: {differing} of {len(self.entries)} differ across {where} (bitwise)"
        skipped = len(self.not_comparable)
        identical = len(self.entries) - skipped
        extra = f"; {skipped} not comparable" if skipped else ""
        return f"IN SYNC: {identical} of {len(self.entries)} identical on {where} (bitwise{extra})"

    def __str__(self) -> str:
        lines = super().__str__().split("\n")
        lines[0] = f"check_in_sync (rank {self.rank}): {self.headline()}"
        return "\n".join(lines)


def leaf_digests(obj: Any) -> list[tuple[str, str | None, str]]:
    """(name, digest or None, why not) per leaf: tensors digested in 64 MiB chunks, never copied whole."""
    from ..comparison.digests import leaf_record, leaves, tensor_digest

    out = []
    for path, leaf in leaves(obj, ""):
        name = _leaf_name(path)
        if isinstance(leaf, torch.Tensor):
            out.append((name, tensor_digest(leaf), ""))
        else:
            record = leaf_record(leaf)
            out.append((name, record.get("digest"), record.get("why", "")))
    return out


def _leaf_name(path: str) -> str:
    """`['fc.weight']` -> `fc.weight` (a state-dict key); the whole object -> `value`."""
    if not path:
        return "value"
    if path.startswith("['") and path.endswith("']") and path.count("[") == 1:
        return path[2:-2]
    return path


def check_in_sync(obj: Any, group: Any = None) -> SyncReport:
    """Whether `obj` (a module, optimizer, tensor or nested container) is bitwise the same on every rank.

    A collective: every rank of `group` (default: the whole world) must call it.
    Each rank digests its leaves (xxh3-128; GPU tensors in 64 MiB chunks), the
    digests are exchanged with `all_gather_object`, and every rank gets the same
    report. With NCCL, call `torch.cuda.set_device(local_rank)` first, as NCCL requires.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "check_in_sync needs an initialised torch.distributed process group. "
            "Fix: call torch.distributed.init_process_group() on every rank first."
        )
    mine = (dist.get_rank(), leaf_digests(obj))
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, mine, group=group)
    return _sync_report(gathered, rank=dist.get_rank())


def _sync_report(gathered: list[tuple[int, list[tuple[str, str | None, str]]]], rank: int) -> SyncReport:
    """Compare the digests every rank sent: one entry per name, in the order the lowest rank listed them."""
    from ..core.state import STATE

    gathered = sorted(gathered, key=lambda item: item[0])
    ranks = [item[0] for item in gathered]
    per_rank = [{name: (digest, why) for name, digest, why in digests} for _, digests in gathered]
    names: list[str] = []
    for _, digests in gathered:
        names += [name for name, _, _ in digests if name not in names]
    report = SyncReport(
        subject="check_in_sync",
        runs=len(ranks),
        seed=STATE.seed or 0,
        tolerance=Tolerance(),
        rank=rank,
        world_size=len(ranks),
    )
    for name in names:
        by_digest: dict[Any, list[int]] = {}
        why = ""
        for member, table in zip(ranks, per_rank):
            digest, reason = table.get(name, (MISSING, ""))
            by_digest.setdefault(digest, []).append(member)
            why = why or reason
        groups = sorted(by_digest.values(), key=lambda group: (-len(group), group[0]))
        if len(groups) == 1 and groups[0] and None in by_digest:
            outcome = Outcome(NOT_COMPARABLE, name, detail=why)
        elif len(groups) == 1:
            outcome = Outcome(IDENTICAL, name)
        else:
            report.groups[name] = groups
            missing = by_digest.get(MISSING, [])
            parts = [
                f"{_ranks(group)} {'differs' if len(group) == 1 else 'differ'} from {_ranks(groups[0])}"
                for group in groups[1:]
                if group is not missing
            ]
            if missing:
                parts.append(f"missing on {_ranks(missing)}")
            outcome = Outcome(DIFFERS, name, detail="; ".join(parts))
        report.entries.append(Entry(name, outcome))
    return report


def _ranks(group: list[int]) -> str:
    return f"rank {group[0]}" if len(group) == 1 else "ranks " + ", ".join(map(str, group))
