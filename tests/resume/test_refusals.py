"""A checkpoint that torch's safe loader refuses says why: the file and the global it would import or call,
never torch's advice to load it with weights_only=False. Each wording torch has used since 2.1 is
recognised by its structure; the installed torch's is driven through a real pickle that would run os.system."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import ipyrepro
from ipyrepro.resume import CheckpointError
from ipyrepro.resume.refusal import parse_refusal, refusal_message

ADVICE_2_6 = (
    "(1) In PyTorch 2.6, we changed the default value of the `weights_only` argument in `torch.load` from `False` "
    "to `True`. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, but it can result "
    "in arbitrary code execution. Do it only if you got the file from a trusted source."
)
# torch's refusal of a pickle that calls os.system, as each torch release worded it
RECORDED = {
    "torch-2.1-to-2.3": (
        "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, "
        "but it can result in arbitrary code execution.Do it only if you get the file from a trusted source. "
        "WeightsUnpickler error: Unsupported class posix.system"
    ),
    "torch-2.4-to-2.5": (
        "Weights only load failed. This file can still be loaded, to do so you have two options \n\t(1) Re-running "
        "`torch.load` with `weights_only` set to `False` will likely succeed, but it can result in arbitrary code "
        "execution. Do it only if you got the file from a trusted source.\n\t(2) Alternatively, to load with "
        "`weights_only=True` please check the recommended steps in the following error message.\n\tWeightsUnpickler "
        "error: Unsupported global: GLOBAL posix.system was not an allowed global by default. Please use "
        "`torch.serialization.add_safe_globals([system])` to allowlist this global if you trust this class/function."
    ),
    "torch-2.6-to-2.12": (
        "Weights only load failed. This file can still be loaded, to do so you have two options, \x1b[1mdo those "
        f"steps only if you trust the source of the checkpoint\x1b[0m. \n\t{ADVICE_2_6}\n\t(2) Alternatively, to load "
        "with `weights_only=True` please check the recommended steps in the following error message.\n\t"
        "WeightsUnpickler error: Unsupported global: GLOBAL posix.system was not an allowed global by default. "
        "Please use `torch.serialization.add_safe_globals([posix.system])` or the "
        "`torch.serialization.safe_globals([posix.system])` context manager to allowlist this global if you trust "
        "this class/function.\n\nCheck the documentation of torch.load to learn more about types accepted by default "
        "with weights_only https://pytorch.org/docs/stable/generated/torch.load.html."
    ),
    "torch-2.13": (
        "Weights only load failed. In PyTorch 2.6, we changed the default value of the `weights_only` argument in "
        "`torch.load` from `False` to `True`. Re-running `torch.load` with `weights_only` set to `False` will likely "
        "succeed, but it can result in arbitrary code execution. Do it only if you got the file from a trusted "
        "source.\n\n\nTrying to load unsupported GLOBAL posix.system whose module posix is blocked.\n\nCheck the "
        "documentation of torch.load to learn more about types accepted by default with weights_only "
        "https://pytorch.org/docs/stable/generated/torch.load.html."
    ),
}
UNSAFE_ADVICE = ("weights_only=False", "set to `False`", "Re-running", "add_safe_globals", "safe_globals", "trusted")


def _assert_says_why_without_the_advice(message: str, path: object) -> None:
    assert str(path) in message
    assert "posix.system" in message
    assert "Nothing was changed" in message and "Fix:" in message
    for advice in UNSAFE_ADVICE:
        assert advice not in message, advice


@pytest.mark.parametrize("release", list(RECORDED))
def test_each_torch_wording_gives_the_blocked_global_and_its_reason(release):
    refusal = parse_refusal(RECORDED[release])
    assert refusal.blocked == "posix.system"
    assert "posix.system" in refusal.reason
    for advice in UNSAFE_ADVICE:
        assert advice not in refusal.reason
    _assert_says_why_without_the_advice(refusal_message("/data/run.pt", RECORDED[release]), "/data/run.pt")


def test_a_reduce_of_an_unrecognised_function_is_named():
    text = (
        "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, "
        "but it can result in arbitrary code execution.Do it only if you get the file from a trusted source. "
        "WeightsUnpickler error: Trying to call reduce for unrecognized function <built-in function system>"
    )
    refusal = parse_refusal(text)
    assert refusal.blocked == "<built-in function system>"
    assert refusal.reason.startswith("Trying to call reduce")


class _RunsACommand:
    def __reduce__(self):
        return (os.system, ("echo this should never run",))


def test_a_code_running_pickle_is_refused_naming_its_global_and_the_file(tmp_path, capfd):
    path = tmp_path / "run.pt"
    torch.save({"format": "ipyrepro-checkpoint/1", "body": {"x": _RunsACommand()}}, path)
    with pytest.raises(CheckpointError) as raised:
        ipyrepro.load_checkpoint(path, model=torch.nn.Linear(2, 2))
    _assert_says_why_without_the_advice(str(raised.value), path)
    assert raised.value.__cause__ is None  # torch's advice does not come back in the chained traceback
    assert "should never run" not in capfd.readouterr().out
    assert Path(path).exists()
