"""Child-process settings (`on` exports, `off` restores, `enable`/`seed_rank` in a child); check_in_sync."""

from __future__ import annotations

import os

import pytest
import torch

import ipyrepro
from ipyrepro.core.processes import CHILD_VARS, derive_rank_seed
from ipyrepro.core.seeding import RESEED_MODES
from ipyrepro.core.state import STATE
from ipyrepro.distributed.ranks import current_rank


def exported() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in CHILD_VARS}


def test_on_exports_seed_reseed_mode_and_deterministic_setting_and_off_removes_them() -> None:
    for name in CHILD_VARS:
        os.environ.pop(name, None)
    ipyrepro.enable(42, warn_only=True, reseed="fixed")
    assert exported() == {"IPYREPRO_SEED": "42", "IPYREPRO_RESEED": "fixed", "IPYREPRO_DETERMINISTIC": "warn"}
    ipyrepro.disable()
    assert exported() == dict.fromkeys(CHILD_VARS)


def test_off_restores_values_that_were_there_before_the_first_on() -> None:
    os.environ["IPYREPRO_SEED"] = "3"
    os.environ["IPYREPRO_RESEED"] = "off"
    os.environ.pop("IPYREPRO_DETERMINISTIC", None)
    ipyrepro.enable(7, warn_only=False, reseed="cell")
    ipyrepro.enable(8, warn_only=False, reseed="cell")
    assert exported()["IPYREPRO_SEED"] == "8"
    ipyrepro.disable()
    assert exported() == {"IPYREPRO_SEED": "3", "IPYREPRO_RESEED": "off", "IPYREPRO_DETERMINISTIC": None}


def test_the_exported_values_follow_seed_reseed_and_configure_while_on() -> None:
    ipyrepro.enable(1)
    ipyrepro.seed_all(9)
    ipyrepro.set_reseed("off")
    ipyrepro.configure(deterministic_algorithms="warn")
    assert exported() == {"IPYREPRO_SEED": "9", "IPYREPRO_RESEED": "off", "IPYREPRO_DETERMINISTIC": "warn"}


def test_seeding_while_off_exports_nothing() -> None:
    for name in CHILD_VARS:
        os.environ.pop(name, None)
    ipyrepro.seed_all(4)
    ipyrepro.set_reseed("fixed")
    assert exported() == dict.fromkeys(CHILD_VARS)


def test_enable_in_a_child_takes_the_exported_settings() -> None:
    os.environ.update({"IPYREPRO_SEED": "123", "IPYREPRO_RESEED": "fixed", "IPYREPRO_DETERMINISTIC": "warn"})
    status = ipyrepro.enable()
    assert (status.seed, status.reseed, status.deterministic_algorithms) == (123, "fixed", "warn")
    first = torch.rand(3)
    ipyrepro.seed_all(123)
    assert torch.equal(torch.rand(3), first)


def test_explicit_arguments_win_over_the_exported_settings() -> None:
    os.environ.update({"IPYREPRO_SEED": "123", "IPYREPRO_RESEED": "fixed", "IPYREPRO_DETERMINISTIC": "warn"})
    status = ipyrepro.enable(5, warn_only=False, reseed="cell")
    assert (status.seed, status.reseed, status.deterministic_algorithms) == (5, "cell", "error")


def test_without_exported_settings_enable_uses_seed_0_cell_and_error() -> None:
    for name in CHILD_VARS:
        os.environ.pop(name, None)
    status = ipyrepro.enable()
    assert (status.seed, status.reseed, status.deterministic_algorithms) == (0, "cell", "error")


def test_an_exported_deterministic_off_is_applied_in_the_child() -> None:
    os.environ["IPYREPRO_DETERMINISTIC"] = "off"
    assert ipyrepro.enable().deterministic_algorithms == "off"
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("mode", RESEED_MODES)
def test_every_reseed_mode_travels(mode: str) -> None:
    ipyrepro.enable(0, reseed=mode, warn_only=False)
    assert os.environ["IPYREPRO_RESEED"] == mode
    ipyrepro.disable()
    os.environ["IPYREPRO_RESEED"] = mode
    assert ipyrepro.enable().reseed == mode


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IPYREPRO_SEED", "-1"),
        ("IPYREPRO_SEED", "ten"),
        ("IPYREPRO_RESEED", "sometimes"),
        ("IPYREPRO_DETERMINISTIC", "1"),
    ],
)
def test_a_bad_exported_value_is_a_clear_error_that_changes_nothing(name: str, value: str) -> None:
    os.environ[name] = value
    before = ipyrepro.status().to_dict()
    with pytest.raises(ValueError, match=name):
        ipyrepro.enable()
    assert ipyrepro.status().to_dict() == before
    assert not STATE.enabled


def test_seed_rank_uses_the_documented_formula_and_keeps_the_base_seed() -> None:
    ipyrepro.enable(11)
    seed = ipyrepro.seed_rank(3)
    assert seed == derive_rank_seed(11, 3) != derive_rank_seed(11, 2)
    assert torch.equal(torch.rand(4), (torch.manual_seed(seed), torch.rand(4))[1])
    assert ipyrepro.status().seed == 11
    assert f"rank 3, seeded with {seed}" in " ".join(ipyrepro.status().notes)
    assert ipyrepro.seed_rank(3) == seed  # again from the base, not from the rank seed


def test_derive_rank_seed_is_blake2b_of_base_and_rank() -> None:
    import hashlib

    digest = hashlib.blake2b(b"11:rank:3", digest_size=4, person=b"ipyrepro").digest()
    assert derive_rank_seed(11, 3) == int.from_bytes(digest, "big")
    assert derive_rank_seed(0, 1) != derive_rank_seed(1, 0)


def test_enable_with_rank_seeds_the_rank() -> None:
    ipyrepro.enable(11, rank=2)
    draw = torch.rand(4)
    torch.manual_seed(derive_rank_seed(11, 2))
    assert torch.equal(draw, torch.rand(4))
    assert (STATE.rank, STATE.rank_seed) == (2, derive_rank_seed(11, 2))


def test_seed_rank_without_enable_takes_the_exported_seed() -> None:
    os.environ["IPYREPRO_SEED"] = "77"
    assert ipyrepro.seed_rank(1) == derive_rank_seed(77, 1)


def test_the_rank_comes_from_rank_then_local_rank() -> None:
    os.environ.pop("RANK", None)
    os.environ["LOCAL_RANK"] = "1"
    assert current_rank() == 1
    os.environ["RANK"] = "3"
    assert current_rank() == 3
    assert ipyrepro.seed_rank() == derive_rank_seed(0, 3)


def test_no_rank_anywhere_is_a_clear_error() -> None:
    os.environ.pop("RANK", None)
    os.environ.pop("LOCAL_RANK", None)
    with pytest.raises(RuntimeError, match="RANK"):
        ipyrepro.seed_rank()


@pytest.mark.parametrize("rank", [-1, 1.5, True, "1"])
def test_a_bad_rank_is_rejected_before_anything_changes(rank: object) -> None:
    with pytest.raises(ValueError, match="rank"):
        ipyrepro.enable(0, rank=rank)
    assert not STATE.enabled


def test_a_bad_rank_variable_names_the_variable() -> None:
    os.environ["RANK"] = "first"
    with pytest.raises(ValueError, match="RANK"):
        current_rank()


# -- check_in_sync in this process: a real one-rank gloo group, and the report built from gathered digests


@pytest.fixture
def one_rank_group() -> object:
    import socket

    import torch.distributed as dist

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield dist
    dist.destroy_process_group()
    assert not dist.is_initialized()


def test_check_in_sync_without_a_process_group_says_how_to_start_one() -> None:
    from ipyrepro.distributed import check_in_sync

    with pytest.raises(RuntimeError, match="init_process_group"):
        check_in_sync(torch.zeros(2))


def test_check_in_sync_digests_modules_optimizers_and_containers_on_a_real_group(one_rank_group) -> None:
    from ipyrepro.distributed import SyncReport, check_in_sync

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    report = check_in_sync({"model": model, "optimizer": optimizer, "extra": [torch.ones(2), 3]})
    assert isinstance(report, ipyrepro.CompareReport) and isinstance(report, SyncReport)
    assert report.ok and report.differences == {}
    names = [entry.name for entry in report.entries]
    assert "['model']['weight']" in names and "['extra'][1]" in names
    assert any("exp_avg" in name for name in names)
    assert str(report).startswith("check_in_sync (rank 0): IN SYNC:")
    assert "IN SYNC" in report._repr_html_()
    assert [entry.name for entry in check_in_sync(model).entries] == ["weight", "bias"]
    assert [entry.name for entry in check_in_sync(torch.ones(1)).entries] == ["value"]


def digests(**tensors: torch.Tensor) -> list[tuple[str, str | None, str]]:
    from ipyrepro.comparison.digests import tensor_digest

    return [(name, tensor_digest(tensor), "") for name, tensor in tensors.items()]


def test_the_sync_report_names_the_minority_ranks_and_what_is_missing() -> None:
    from ipyrepro.distributed.insync import _sync_report

    a, b = torch.zeros(3), torch.ones(3)
    gathered = [
        (2, digests(w=a, v=a)),
        (0, digests(w=a, v=a)),
        (1, digests(w=b, v=a)),
        (3, digests(w=b)),
    ]
    report = _sync_report(gathered, rank=3)
    assert not report.ok
    assert report.differences["w"]["groups"] == [[0, 2], [1, 3]] and report.differences["w"]["ranks"] == [1, 3]
    assert report.differences["w"]["detail"] == "ranks 1, 3 differ from ranks 0, 2"
    assert report.differences["v"]["detail"] == "missing on rank 3"
    assert report.differences["v"]["ranks"] == [3]
    assert "OUT OF SYNC: 2 of 2 differ across 4 ranks" in str(report)


def test_values_without_bytes_are_not_comparable_and_do_not_fail_the_check() -> None:
    from ipyrepro.distributed.insync import _sync_report, leaf_digests

    mine = leaf_digests({"f": object(), "t": torch.ones(1)})
    report = _sync_report([(0, mine), (1, mine)], rank=0)
    assert report.ok and "f" in report.not_comparable
    assert "IN SYNC: 1 of 2 identical on 2 ranks (bitwise; 1 not comparable)" in str(report)


# -- persistent DataLoader workers, in this process


class Numbers(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(1) + index


def test_a_live_persistent_worker_iterator_is_a_status_warning_until_it_is_gone() -> None:
    import gc

    from torch.utils.data import DataLoader
    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

    from ipyrepro.core.processes import PERSISTENT_WORKERS_WARNING

    ipyrepro.enable(0)
    ipyrepro.enable(0)
    wrapped = _MultiProcessingDataLoaderIter.__init__
    assert wrapped.__ipyrepro_watch__ and not getattr(wrapped.__wrapped__, "__ipyrepro_watch__", False)  # once
    plain = DataLoader(Numbers(), num_workers=1, multiprocessing_context="fork")
    assert len(list(plain)) == 4
    assert PERSISTENT_WORKERS_WARNING not in ipyrepro.status().warnings
    loader = DataLoader(Numbers(), num_workers=1, persistent_workers=True, multiprocessing_context="fork")
    assert len(list(loader)) == 4
    assert PERSISTENT_WORKERS_WARNING in ipyrepro.status().warnings
    ipyrepro.set_reseed("off")  # nothing is re-seeded per cell, so nothing is defeated
    assert PERSISTENT_WORKERS_WARNING not in ipyrepro.status().warnings
    ipyrepro.set_reseed("cell")
    del loader
    gc.collect()
    assert PERSISTENT_WORKERS_WARNING not in ipyrepro.status().warnings
