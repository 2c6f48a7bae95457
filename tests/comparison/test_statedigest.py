"""The state digest in this process: what a namespace digests to, what is skipped, tolerance data, and no CUDA
initialised by looking."""

from __future__ import annotations

import random

import numpy as np
import torch

from ipyrepro.comparison.statedigest import StateDigester
from ipyrepro.notebooks.statecheck import same_record


def test_digests_never_initialise_cuda(fake_gpu) -> None:
    found = StateDigester().digest({"w": torch.ones(3), "g": torch.Generator().manual_seed(1)}, {}, None)
    assert fake_gpu.lazy_init_calls == []
    assert {"<random>", "<torch>"} <= set(found["rngs"]) and not any("cuda" in name for name in found["rngs"])


def test_tolerance_data_tells_within_from_beyond() -> None:
    digester = StateDigester()
    digester.configure(True, [])
    base = {"w": torch.linspace(0, 1, 1000, dtype=torch.float64), "losses": [0.5] * 50, "steps": 3}
    near = {**base, "w": base["w"] + 1e-12, "losses": [0.5 + 1e-12] * 50}
    far = {**base, "w": base["w"] + 1e-3}
    other_steps = {**near, "steps": 4}
    a, b, c, d = (digester.digest(ns, {}, None)["names"] for ns in (base, near, far, other_steps))
    assert a["w"]["digest"] != b["w"]["digest"]
    assert same_record(a["w"], b["w"], 1e-9, 0) and same_record(a["losses"], b["losses"], 1e-9, 0)
    assert not same_record(a["w"], b["w"], 0, 0)  # bitwise without a tolerance
    assert not same_record(a["w"], c["w"], 1e-9, 0)
    assert not same_record(a["steps"], d["steps"], 1, 1)  # ints never within a tolerance


def test_long_number_lists_and_rng_states_are_one_leaf_each() -> None:
    found = StateDigester().digest(
        {"history": [float(i) for i in range(10_000)], "r": random.Random(1), "g": np.random.default_rng(2)}, {}, None
    )
    assert found["names"]["history"]["leaves"] == 1
    assert found["names"]["r"]["leaves"] == 3  # version, the packed 625 words, gauss
    assert {"<random>", "<numpy.random>", "<torch>"} <= set(found["rngs"])


def test_the_state_digest_is_built_from_the_leaves_repro_save_writes(ip, tmp_path) -> None:
    """One digest implementation: the state digest of a name is the hash of the very leaf digests that
    `%%repro --save` writes for it."""
    import json

    from ipyrepro.comparison import digests

    ip.run_cell("import torch\ntorch.manual_seed(0)")
    saved = tmp_path / "values.json"
    report = ip.run_cell_magic(
        "repro", f"--save {saved}", "model = torch.nn.Linear(3, 2)\nhistory = {'loss': [0.5, 0.25], 'tag': 'v1'}"
    )
    assert report.ok, report
    records = json.loads(saved.read_text())["values"]
    state = StateDigester().digest({"model": ip.user_ns["model"], "history": ip.user_ns["history"]}, {}, None)
    for name in ("model", "history"):
        parts = [f"{path[len(name) :]}={record['digest']}" for path, record in records.items() if path.startswith(name)]
        hasher = digests._hasher("state")
        for part in parts:
            hasher.update(part.encode() + b"\0")
        assert state["names"][name]["digest"] == f"xxh3_128:{hasher.hexdigest()}"
