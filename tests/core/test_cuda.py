"""On a real GPU, what the rest of the suite simulates at the `fake_gpu` seam.

Every test here is marked `cuda`: without a GPU it skips (tests/conftest.py);
`scripts/gpu-check` runs them on a GPU machine. Claims about a process where
CUDA is not yet initialised run in fresh subprocesses, because this pytest
process may have initialised CUDA in an earlier test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import ipyrepro
from ipyrepro.core.seeding import derive_cell_seed, derive_source_seed
from ipyrepro.core.state import STATE
from ipyrepro.core.torchinfo import cublas_facts, cudnn_version, gpu_names, late_cublas_message

pytestmark = pytest.mark.cuda

REPO = Path(__file__).resolve().parents[2]


def run_fresh(code: str) -> Any:
    """Run `code` in a fresh Python with CUDA untouched and no cuBLAS variable; it prints JSON as its last line."""
    env = dict(os.environ)
    env.pop("CUBLAS_WORKSPACE_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180, env=env
    )
    assert done.returncode == 0, f"fresh process failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def cuda_draw() -> torch.Tensor:
    return torch.randn(1000, device="cuda")


# -- seeding reaches CUDA exactly as torch.manual_seed does --------------------------------


def test_seed_all_gives_the_cuda_draws_of_torch_manual_seed() -> None:
    for device in range(torch.cuda.device_count()):
        ipyrepro.seed_all(123)
        ours = torch.randn(1000, device=f"cuda:{device}")
        torch.manual_seed(123)
        reference = torch.randn(1000, device=f"cuda:{device}")
        assert torch.equal(ours, reference), f"cuda:{device}"


@pytest.mark.parametrize(
    "mode, cell_id", [("cell", "cell-a"), ("fixed", "cell-a"), ("cell", None), ("source", "cell-a")]
)
def test_reseed_before_a_cell_gives_the_cuda_draws_of_torch_manual_seed(mode: str, cell_id: str | None) -> None:
    cuda_draw()  # CUDA is initialised: the fast path seeds the CUDA generators directly
    STATE.seed_all(5)
    STATE.set_reseed(mode)
    STATE.before_cell(cell_id, "x = torch.randn(8)")
    ours = cuda_draw()
    if mode == "fixed":
        expected_seed = 5
    elif mode == "cell" and cell_id:
        expected_seed = derive_cell_seed(5, cell_id)
    else:  # source, and cell without a cell id
        expected_seed = derive_source_seed(5, "x = torch.randn(8)")
    torch.manual_seed(expected_seed)
    assert torch.equal(ours, cuda_draw())


LAZY_SCENARIOS = {
    "seed_all": ("ipyrepro.seed_all(11)", 11),
    "re-seed for a cell": (
        "ipyrepro.seed_all(5); ipyrepro.set_reseed('cell'); STATE.before_cell('cell-a')",
        derive_cell_seed(5, "cell-a"),
    ),
    "the latest of several re-seeds": (
        "ipyrepro.seed_all(5); ipyrepro.set_reseed('cell'); STATE.before_cell('cell-a'); STATE.before_cell('cell-b')",
        derive_cell_seed(5, "cell-b"),
    ),
}


@pytest.mark.parametrize("scenario", list(LAZY_SCENARIOS))
def test_seeding_before_cuda_init_reaches_cuda_when_it_starts(scenario: str) -> None:
    setup, seed = LAZY_SCENARIOS[scenario]
    ours = run_fresh(f"""
        import json, torch, ipyrepro
        from ipyrepro.core.state import STATE
        {setup}
        before = torch.cuda.is_initialized()
        draw = torch.randn(64, device="cuda").cpu().numpy().tobytes().hex()
        print(json.dumps({{"initialised before the draw": before, "draw": draw}}))
    """)
    torch.manual_seed(seed)  # here CUDA may be initialised already: the generator ends up in the same state
    assert ours["initialised before the draw"] is False
    assert ours["draw"] == torch.randn(64, device="cuda").cpu().numpy().tobytes().hex()


def test_repro_on_in_a_fresh_shell_seeds_the_first_cuda_cell_by_its_cell_id() -> None:
    ours = run_fresh("""
        import json, torch
        from IPython.testing.globalipapp import start_ipython
        ip = start_ipython()
        ip.run_line_magic("load_ext", "ipyrepro")
        ip.run_line_magic("repro", "on --seed 5")
        ip.run_cell("import torch", store_history=True, cell_id="imports")
        before = torch.cuda.is_initialized()
        ip.run_cell("x = torch.randn(64, device='cuda')", store_history=True, cell_id="first-cuda-cell")
        print(json.dumps({"before": before, "draw": ip.user_ns["x"].cpu().numpy().tobytes().hex()}))
    """)
    torch.manual_seed(derive_cell_seed(5, "first-cuda-cell"))
    assert ours["before"] is False
    assert ours["draw"] == torch.randn(64, device="cuda").cpu().numpy().tobytes().hex()


# -- `%repro on` makes racing CUDA ops reproducible ----------------------------------------


def test_repro_on_makes_index_add_with_colliding_indices_bitwise_reproducible(ip) -> None:
    ip.run_line_magic("repro", "on")  # error mode: index_add_ has a deterministic CUDA implementation
    gen = torch.Generator().manual_seed(0)
    source = torch.randn(200_000, 32, generator=gen).cuda()
    index = torch.randint(0, 16, (200_000,), generator=gen).cuda()
    results = [torch.zeros(16, 32, device="cuda").index_add_(0, index, source) for _ in range(5)]
    assert all(torch.equal(results[0], result) for result in results[1:])


def test_repro_on_makes_conv_backward_reproducible_after_benchmark_was_on(ip) -> None:
    torch.backends.cudnn.benchmark = True
    ip.run_line_magic("repro", "on")
    assert torch.backends.cudnn.benchmark is False
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(32, 8, 32, 32, generator=gen).cuda().requires_grad_()
    weight = torch.randn(16, 8, 3, 3, generator=gen).cuda().requires_grad_()
    upstream = torch.randn(32, 16, 32, 32, generator=gen).cuda()
    grads = []
    for _ in range(4):
        images.grad = weight.grad = None
        torch.nn.functional.conv2d(images, weight, padding=1).backward(upstream)
        grads.append((weight.grad.clone(), images.grad.clone()))
    for weight_grad, image_grad in grads[1:]:
        assert torch.equal(weight_grad, grads[0][0]) and torch.equal(image_grad, grads[0][1])


# -- looking never initialises CUDA -------------------------------------------------------


def test_status_magics_and_hooks_leave_cuda_uninitialised() -> None:
    seen = run_fresh("""
        import json, torch
        from IPython.testing.globalipapp import start_ipython
        from ipyrepro.core import torchinfo
        ip = start_ipython()
        ip.run_line_magic("load_ext", "ipyrepro")
        status = ip.run_line_magic("repro", "")
        str(status), status._repr_html_(), status.to_json()
        ip.run_line_magic("repro", "status --json")
        ip.run_line_magic("repro", "on --seed 3")
        ip.run_cell("y = 1", store_history=True, cell_id="c1")  # the pre/post cell hooks
        ip.run_line_magic("repro", "off")
        facts = {"gpu_names": torchinfo.gpu_names(), "cudnn": torchinfo.cudnn_version(),
                 "precision": sorted(torchinfo.precision_flags())}
        print(json.dumps({"initialised": torch.cuda.is_initialized(), "available": torch.cuda.is_available(),
                          **facts}))
    """)
    assert seen["available"] is True
    assert seen["initialised"] is False
    assert seen["gpu_names"] is None  # names are read only once CUDA is up


def test_gpu_facts_are_read_once_cuda_is_initialised() -> None:
    cuda_draw()
    assert gpu_names() == [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    assert cudnn_version() == torch.backends.cudnn.version()
    status = ipyrepro.status()
    assert status.cuda_initialized
    assert {label: value for label, value, _ in status.rows()}["CUDA"] == "initialised"


# -- the late-cuBLAS message, for the installed torch ---------------------------------------

CUBLAS_PROBE = """
    import json, torch, ipyrepro  # importing ipyrepro sees CUDA uninitialised and the variable unset
    def use_cublas():
        a = torch.randn(128, 128, device="cuda")
        (a @ a).sum().item()
    {first}
    {second}
    status = ipyrepro.status()
    print(json.dumps({{"warnings": status.warnings, "notes": status.notes}}))
"""


def test_setting_cublas_after_its_first_use_gives_the_message_for_this_torch_version() -> None:
    seen = run_fresh(CUBLAS_PROBE.format(first="use_cublas()", second="ipyrepro.enable()"))
    severity, text = late_cublas_message(":4096:8")
    assert severity == cublas_facts().severity
    where, elsewhere = ("warnings", "notes") if severity == "warning" else ("notes", "warnings")
    assert text in seen[where]
    assert not any("after CUDA was already initialised" in message for message in seen[elsewhere])


def test_setting_cublas_before_its_first_use_gives_no_late_message() -> None:
    seen = run_fresh(CUBLAS_PROBE.format(first="ipyrepro.enable()", second="use_cublas()"))
    messages = seen["warnings"] + seen["notes"]
    assert not any("after CUDA was already initialised" in message for message in messages)
