"""rng_state / set_rng_state: every RNG back exactly; a state from elsewhere restores what it can and says
what it could not; bad input changes nothing."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

import ipyrepro


def _draws(*generators) -> list:
    drawn = [random.random(), float(np.random.rand()), torch.rand(2).tolist()]
    for generator in generators:
        if isinstance(generator, torch.Generator):
            drawn.append(torch.rand(2, generator=generator).tolist())
        else:
            drawn.append(generator.random(2).tolist())
    return drawn


def test_every_rng_and_the_given_generators_come_back_exactly_after_a_weights_only_round_trip():
    torch_generator = torch.Generator().manual_seed(1)
    numpy_generator = np.random.default_rng(2)
    legacy = np.random.RandomState(3)
    torch.rand(5), random.random(), np.random.rand(), numpy_generator.random(), legacy.rand()
    buffer = io.BytesIO()
    torch.save(ipyrepro.rng_state(torch_generator, numpy_generator, legacy), buffer)
    expected = _draws(torch_generator, numpy_generator, legacy)
    _draws(torch_generator, numpy_generator, legacy)  # move every RNG on
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    report = ipyrepro.set_rng_state(state, torch_generator, numpy_generator, legacy)
    assert _draws(torch_generator, numpy_generator, legacy) == expected
    assert report.not_restored == []
    assert {"random", "NumPy global", "torch CPU", "generator #1", "generator #3"} <= set(report.restored)


def test_it_records_ipyrepros_re_seed_state():
    ipyrepro.enable(7, reseed="source")
    state = ipyrepro.rng_state()
    assert state["ipyrepro"] | {"cell": None} == {
        "enabled": True,
        "seed": 7,
        "reseed": "source",
        "rank": None,
        "rank_seed": None,
        "cell": None,
    }
    assert state["cuda"] is None  # CUDA is not initialised: its states are not read (that would initialise it)


def test_a_state_from_another_torch_restores_the_rest_and_says_what_it_could_not():
    state = ipyrepro.rng_state()
    expected = _draws()
    state["torch_cpu"] = torch.zeros(16, dtype=torch.uint8)  # another generator's layout
    state["versions"]["torch"] = "1.0.0"
    torch.rand(3)
    with pytest.warns(ipyrepro.ReproWarning, match="torch CPU: the state saved by torch 1.0.0 does not fit"):
        report = ipyrepro.set_rng_state(state)
    assert "torch CPU" not in report.restored
    drawn = _draws()
    assert drawn[:2] == expected[:2]  # random and NumPy were restored
    assert drawn[2] != expected[2]


def test_cuda_states_from_a_machine_with_gpus_are_named_when_this_one_cannot_take_them(monkeypatch):
    state = ipyrepro.rng_state()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the one CUDA seam (CPU CI has none anyway)
    with pytest.warns(ipyrepro.ReproWarning, match=r"CUDA: the states of 2 device\(s\) were saved; CUDA is not"):
        report = ipyrepro.set_rng_state(state)
    assert "torch CPU" in report.restored


def test_not_a_state_raises_and_changes_nothing():
    before = (random.getstate(), torch.get_rng_state())
    with pytest.raises(ValueError, match=r"not an RNG state from ipyrepro.rng_state.*Fix"):
        ipyrepro.set_rng_state({"python": random.getstate()})
    assert before[0] == random.getstate() and torch.equal(before[1], torch.get_rng_state())


def test_a_generator_of_another_kind_raises_and_changes_nothing():
    state = ipyrepro.rng_state(torch.Generator().manual_seed(3))
    random.random()
    torch.rand(1)
    before = (random.getstate(), torch.get_rng_state())
    numpy_generator = np.random.default_rng(0)
    numpy_before = numpy_generator.bit_generator.state
    with pytest.raises(ValueError, match="generator #1 is a numpy.Generator generator.*holds a torch generator"):
        ipyrepro.set_rng_state(state, numpy_generator)
    assert before[0] == random.getstate() and torch.equal(before[1], torch.get_rng_state())
    assert numpy_generator.bit_generator.state == numpy_before


def test_more_generators_than_saved_raise_and_fewer_are_named():
    state = ipyrepro.rng_state(torch.Generator(), torch.Generator())
    with pytest.raises(ValueError, match="3 generator"):
        ipyrepro.set_rng_state(state, torch.Generator(), torch.Generator(), torch.Generator())
    with pytest.warns(ipyrepro.ReproWarning, match=r"generator #2 \(torch\): saved but not given"):
        ipyrepro.set_rng_state(state, torch.Generator())


def test_anything_else_passed_as_a_generator_is_a_type_error():
    with pytest.raises(TypeError, match="generator #1 is a int, not a torch.Generator"):
        ipyrepro.rng_state(5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_states_are_captured_once_initialised_and_restored():
    import subprocess
    import sys

    script = (
        "import torch, ipyrepro\n"
        "ipyrepro.rng_state()\n"
        "assert not torch.cuda.is_initialized(), 'capturing initialised CUDA'\n"
        "torch.cuda.init()\n"
        "torch.rand(3, device='cuda')\n"
        "state = ipyrepro.rng_state()\n"
        "assert len(state['cuda']) == torch.cuda.device_count()\n"
        "expected = torch.rand(5, device='cuda').tolist()\n"
        "torch.rand(7, device='cuda')\n"
        "ipyrepro.set_rng_state(state)\n"
        "assert torch.rand(5, device='cuda').tolist() == expected\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_capturing_and_restoring_never_initialise_cuda(fake_gpu):
    """With a GPU available but not initialised, nothing has drawn from CUDA: its states are not read
    (reading them would initialise it), and a state holding some is restored without initialising it."""
    state = ipyrepro.rng_state()
    assert state["cuda"] is None
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 2
    with pytest.warns(ipyrepro.ReproWarning, match=r"saved with 2 devices, this process sees"):
        ipyrepro.set_rng_state(state)
    assert fake_gpu.lazy_init_calls == []
