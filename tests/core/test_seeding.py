"""Seeding leaves exactly the RNG states the libraries' own seed calls would."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from ipyrepro.core import seeding
from ipyrepro.core.seeding import Reseeder, derive_cell_seed, derive_source_seed, seed_all, validate_seed


def draws() -> tuple:
    return random.random(), np.random.rand(), torch.rand(3).tolist(), torch.randn(2).tolist()


def reference_draws(seed: int) -> tuple:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return draws()


@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 - 1])
def test_seed_all_matches_the_libraries_own_seeding(seed: int) -> None:
    expected = reference_draws(seed)
    seed_all(seed)
    assert draws() == expected


@pytest.mark.parametrize("seed", [0, 7, 123456789, 2**32 - 1])
def test_reseeder_leaves_the_same_states_as_seed_all(seed: int) -> None:
    reseeder = Reseeder()
    random.random(), np.random.rand(), torch.rand(5)  # move every generator away first
    reseeder.reseed(seed)
    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    seed_all(seed)
    assert random.getstate() == python_state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state()[1:2], numpy_state[1:2]))
    assert np.random.get_state()[2:] == numpy_state[2:]
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_reseeding_with_the_same_seed_repeats_every_generators_draws() -> None:
    reseeder = Reseeder()
    reseeder.reseed(5)
    first = draws()
    reseeder.reseed(5)
    assert draws() == first


def _states() -> tuple:
    numpy_state = np.random.get_state()
    return (
        random.getstate(),
        (numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]),
        torch.get_rng_state().tolist(),
        torch.initial_seed(),
    )


@pytest.mark.parametrize("seeds", [[5, 5, 5, 5], [5, 6, 5, 6, 5], [9, 9, 3, 9, 9, 9]])
def test_a_seed_that_comes_again_leaves_the_states_the_libraries_own_seeding_leaves(seeds: list[int]) -> None:
    """A seed given twice in a row restores Python's state from the first time, and torch's CPU state
    is copied from the first time a seed came (`fixed` mode, cells rerun): still exactly the states of
    `random.seed`, `np.random.seed` and `torch.manual_seed`, cached normals and `initial_seed` included."""
    reseeder = Reseeder()
    for seed in seeds:
        random.gauss(0, 1), np.random.standard_normal(), torch.randn(3)  # leave cached normals behind
        reseeder.reseed(seed)
        after_reseed = _states()
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
        assert after_reseed == _states(), seed


def test_reseeder_queues_lazy_cuda_seeding_like_manual_seed_all() -> None:
    tracker = torch.cuda._lazy_seed_tracker
    Reseeder().reseed(11)
    queued = tracker.manual_seed_all_cb
    assert queued is not None and tracker.call_order[-1] is queued
    seeded = []

    class Generator:
        def manual_seed(self, value: int) -> None:
            seeded.append(value)

    original = torch.cuda.default_generators, torch.cuda.device_count
    try:
        torch.cuda.default_generators = (Generator(), Generator())
        torch.cuda.device_count = lambda: 2
        queued[0]()  # what CUDA's lazy init will run
    finally:
        torch.cuda.default_generators, torch.cuda.device_count = original
    assert seeded == [11, 11]


def test_cuda_seeding_queued_before_cuda_starts_applies_the_latest_cells_seed(monkeypatch) -> None:
    tracker = torch.cuda._lazy_seed_tracker
    reseeder = Reseeder()
    seeded: list[int] = []

    class Generator:
        def manual_seed(self, value: int) -> None:
            seeded.append(value)

    def seed_at_cuda_start() -> int:
        seeded.clear()
        with monkeypatch.context() as gpu:  # one GPU, for what CUDA's lazy init runs (in this order)
            gpu.setattr(torch.cuda, "default_generators", (Generator(),))
            gpu.setattr(torch.cuda, "device_count", lambda: 1)
            gpu.setattr(torch.cuda.random, "device_count", lambda: 1)
            for queued in tracker.call_order:
                if queued is not None:
                    queued[0]()
        return seeded[-1]

    reseeder.reseed(11)
    reseeder.reseed(12)
    assert seed_at_cuda_start() == 12
    torch.cuda.manual_seed_all(5)  # the user's own seeding, queued after the hook's
    assert seed_at_cuda_start() == 5
    reseeder.reseed(13)  # the next cell's re-seed comes last again
    assert seed_at_cuda_start() == 13


def test_reseeder_seeds_initialised_cuda_generators_directly(fake_gpu, monkeypatch) -> None:
    fake_gpu.initialized = True
    seeded = []

    class Generator:
        def manual_seed(self, value: int) -> None:
            seeded.append(value)

    monkeypatch.setattr(torch.cuda, "default_generators", (Generator(),))
    Reseeder().reseed(3)
    assert seeded == [3]
    assert fake_gpu.lazy_init_calls == []


def test_registered_seeders_are_called_with_the_seed() -> None:
    seen: list[int] = []
    Reseeder([seen.append]).reseed(9)
    seed_all(10, [seen.append])
    assert seen == [9, 10]


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "3", True, None])
def test_invalid_seeds_are_rejected_with_the_valid_range(bad: object) -> None:
    with pytest.raises(ValueError, match="0 <= seed < 2\\*\\*32"):
        validate_seed(bad)


def test_cell_seed_is_stable_across_processes() -> None:
    code = "from ipyrepro.core.seeding import derive_cell_seed; print(derive_cell_seed(42, 'cell-a'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == derive_cell_seed(42, "cell-a")


def test_cell_seed_differs_by_cell_and_by_base_seed_and_is_in_range() -> None:
    seeds = {derive_cell_seed(base, cell) for base in (0, 1) for cell in ("a", "b", "c")}
    assert len(seeds) == 6
    assert all(0 <= seed < seeding.SEED_LIMIT for seed in seeds)


def test_seeders_registered_as_entry_points_are_found_like_importlib_finds_them(tmp_path, monkeypatch) -> None:
    from importlib.metadata import entry_points

    for folder, project, target in (
        (tmp_path / "a", "fake_seeder", "first"),
        (tmp_path / "b", "Fake_Seeder", "second"),
    ):
        info = folder / f"{project}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[ipyrepro.seeders]\nfake = fake_seeder_{target}:seed\n")
        (folder / f"fake_seeder_{target}.py").write_text(
            f"SEEN = []\ndef seed(value):\n    SEEN.append(('{target}', value))\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    monkeypatch.syspath_prepend(str(tmp_path / "a"))  # first on the path: its copy of the project wins
    seeders = seeding.load_seeders()
    expected = [entry.load() for entry in entry_points(group=seeding.SEEDER_GROUP)]
    assert [seeder.seeder for seeder in seeders] == expected and len(seeders) == 1
    seeders[0](5)
    assert sys.modules["fake_seeder_first"].SEEN == [("first", 5)]


def test_source_seed_is_the_documented_hash_of_base_and_code() -> None:
    code = "x = torch.rand(3)\nprint(x)"
    digest = hashlib.blake2b(f"7:{code}".encode(), digest_size=4, person=b"ipyrepro-source").digest()
    assert derive_source_seed(7, code) == int.from_bytes(digest, "big")
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from ipyrepro.core.seeding import derive_source_seed; print(derive_source_seed(7, {code!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(other.stdout) == derive_source_seed(7, code)


def test_source_seed_ignores_only_line_endings_and_trailing_whitespace() -> None:
    code = "for i in range(3):\n    x = torch.rand(i)"
    same = [code + "\n", code + "\n\n", code + "  \n", code.replace("\n", "\r\n") + "\r\n"]
    assert {derive_source_seed(0, variant) for variant in same} == {derive_source_seed(0, code)}
    different = ["\n" + code, code.replace("    ", "  "), code.replace("3", "4"), code + "  # comment"]
    seeds = {derive_source_seed(0, variant) for variant in [code, *different]}
    assert len(seeds) == 5
    assert derive_source_seed(1, code) != derive_source_seed(0, code)
    assert derive_source_seed(0, code) != derive_cell_seed(0, code)
    assert all(0 <= seed < seeding.SEED_LIMIT for seed in seeds)
