"""Digests of values, and the files `--save` writes and `--check` reads: data only, validated, written atomically."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import ipyrepro
from ipyrepro.comparison import digests
from ipyrepro.comparison import fingerprint as fp
from ipyrepro.comparison.values import Tolerance


def test_digests_cover_bytes_dtype_and_shape() -> None:
    x = torch.arange(12, dtype=torch.float32)
    digest = digests.tensor_digest(x)
    assert digest.startswith("xxh3_128:") and len(digest) == len("xxh3_128:") + 32
    assert digests.tensor_digest(x.clone()) == digest
    assert digests.tensor_digest(x.reshape(3, 4)) != digest  # same bytes, other shape
    assert digests.tensor_digest(x.view(torch.int32)) != digest  # same bytes, other dtype
    changed = x.clone()
    changed[11] = 11.000001
    assert digests.tensor_digest(changed) != digest
    assert digests.tensor_digest(x.reshape(3, 4).t()) == digests.tensor_digest(x.reshape(3, 4).t().contiguous())
    bf16, f16 = torch.ones(3, dtype=torch.bfloat16), torch.ones(3, dtype=torch.float16)
    assert digests.tensor_digest(bf16) != digests.tensor_digest(f16)
    assert digests.tensor_digest(torch.tensor(1.5)) != digests.tensor_digest(torch.tensor([1.5]))
    assert digests.array_digest(np.arange(3.0)) == digests.array_digest(np.arange(3.0))


def test_leaves_walk_containers_modules_and_optimizers() -> None:
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    records = digests.fingerprint({"model": model, "opt": optimizer, "hist": {"loss": [1.0, 2.0]}, "tag": "v1"})
    assert {"model['weight']", "model['bias']", "hist['loss'][0]", "hist['loss'][1]", "tag"} <= set(records)
    assert records["opt['param_groups'][0]['lr']"] == {
        "kind": "float",
        "value": (0.5).hex(),
        "digest": records["opt['param_groups'][0]['lr']"]["digest"],
    }
    weight = records["model['weight']"]
    assert weight["kind"] == "tensor" and weight["shape"] == [1, 2] and weight["dtype"] == "torch.float32"
    assert set(weight["stats"]) == {"numel", "nan", "posinf", "neginf", "min", "max", "mean", "abs_mean"}
    assert records["tag"]["value"] == "v1"


def test_stats_count_nonfinite_values_and_summarise_the_finite_ones() -> None:
    stats = digests.tensor_stats(torch.tensor([1.0, -3.0, float("nan"), float("inf"), float("-inf")]))
    assert stats == {
        "numel": 5,
        "nan": 1,
        "posinf": 1,
        "neginf": 1,
        "min": -3.0,
        "max": 1.0,
        "mean": -1.0,
        "abs_mean": 2.0,
    }
    assert digests.tensor_stats(torch.tensor([True, False]))["mean"] == 0.5


def _save(path: Path, values: dict, seed: int = 0) -> str:
    return fp.save(path, digests.fingerprint(values), seed=seed, runs=2, reproducible=True)


def test_save_and_check_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    values = {"x": torch.linspace(0, 1, 100), "n": 3, "name": "ok"}
    _save(path, values, seed=7)
    saved = fp.load(path)
    assert saved.seed == 7 and saved.runs == 2 and set(saved.values) == {"x", "n", "name"}
    assert saved.environment["torch"] == torch.__version__ and saved.environment["seed"] == 7
    assert saved.environment["flags"]["deterministic_algorithms"] == "off"
    same = fp.check(saved, digests.fingerprint(values), Tolerance(), fp.environment(7))
    assert same.ok and {entry.status for entry in same.entries} == {"matches"}
    other = fp.check(saved, digests.fingerprint({**values, "n": 4}), Tolerance(), fp.environment(7))
    assert not other.ok
    assert [(entry.path, entry.detail) for entry in other.entries if entry.failed] == [("n", "'4' now, '3' saved")]


def test_check_within_a_tolerance_uses_the_saved_statistics(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    x = torch.linspace(-1, 1, 1000)
    _save(path, {"x": x, "lr": 0.1})
    saved = fp.load(path)
    nudged = {"x": x + 1e-6, "lr": 0.1 + 1e-12}
    exact = fp.check(saved, digests.fingerprint(nudged), Tolerance(), fp.environment(0))
    assert not exact.ok
    close = fp.check(saved, digests.fingerprint(nudged), Tolerance(atol=1e-5), fp.environment(0))
    assert close.ok and {entry.status for entry in close.entries} == {"within tolerance"}
    far = fp.check(saved, digests.fingerprint({"x": x + 1e-3, "lr": 0.1}), Tolerance(atol=1e-5), fp.environment(0))
    failed = [entry for entry in far.entries if entry.failed]
    assert [entry.path for entry in failed] == ["x"] and "allowed difference" in failed[0].detail
    nan = x.clone()
    nan[0] = float("nan")
    with_nan = fp.check(saved, digests.fingerprint({"x": nan, "lr": 0.1}), Tolerance(atol=1.0), fp.environment(0))
    assert not with_nan.ok and "nan count 1 now, 0 saved" in with_nan.entries[0].detail


def test_a_mismatch_lists_environment_fields_that_changed(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    _save(path, {"x": torch.ones(2)})
    document = json.loads(path.read_text())
    document["environment"]["torch"] = "1.0.0"
    document["environment"]["flags"]["cudnn_benchmark"] = True
    path.write_text(json.dumps(document))
    result = fp.check(fp.load(path), digests.fingerprint({"x": torch.zeros(2)}), Tolerance(), fp.environment(0))
    assert not result.ok
    changed = {name: (old, new) for name, old, new in result.environment_changes}
    assert changed["torch"] == ("1.0.0", torch.__version__)
    assert changed["flags.cudnn_benchmark"] == (True, False)


def test_names_missing_now_fail_and_new_names_are_only_noted(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    _save(path, {"a": 1, "b": 2})
    result = fp.check(fp.load(path), digests.fingerprint({"a": 1, "c": 3}), Tolerance(), fp.environment(0))
    statuses = {entry.path: entry.status for entry in result.entries}
    assert statuses == {"a": "matches", "b": "missing in this run", "c": "not in the file"}
    assert not result.ok


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.json"
    _save(path, {"x": 1})
    before = path.read_bytes()

    def broken_replace(source: str, target: str) -> None:
        raise OSError("disk full (pretend)")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        _save(path, {"x": 2})
    assert path.read_bytes() == before  # the old file is intact
    assert [item.name for item in tmp_path.iterdir()] == ["run.json"]


def test_check_writable_refuses_missing_folders_and_folders(tmp_path: Path) -> None:
    with pytest.raises(fp.FingerprintFileError, match="does not exist"):
        fp.check_writable(tmp_path / "nope" / "x.json")
    with pytest.raises(fp.FingerprintFileError, match="it is a folder"):
        fp.check_writable(tmp_path)
    fp.check_writable(tmp_path / "fine.json")


def _valid_document(tmp_path: Path) -> dict:
    path = tmp_path / "valid.json"
    _save(path, {"x": torch.ones(2), "f": 1.5, "i": 3})
    return json.loads(path.read_text())


def _broken(document: dict, edit: str) -> dict:
    document = json.loads(json.dumps(document))
    values = document["values"]
    if edit == "version":
        document["version"] = 99
    elif edit == "format":
        document["format"] = "something else"
    elif edit == "digest":
        values["x"]["digest"] = "md5:abc"
    elif edit == "shape":
        values["x"]["shape"] = [-1]
    elif edit == "kind":
        values["x"]["kind"] = "pickle"
    elif edit == "float":
        values["f"]["value"] = "__import__('os').system('echo hacked')"
    elif edit == "int":
        values["i"]["value"] = "1e9"
    elif edit == "seed":
        document["seed"] = "0"
    elif edit == "stats":
        values["x"]["stats"]["nan"] = -1
    elif edit == "stats_partial":
        values["x"]["stats"]["max"] = None
    elif edit == "values":
        document["values"] = []
    return document


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("version", "format version 99 was written by a newer ipyrepro"),
        ("format", "not an ipyrepro fingerprint"),
        ("digest", "no valid digest"),
        ("shape", "invalid shape"),
        ("kind", "unknown kind 'pickle'"),
        ("float", "float value must be float.hex"),
        ("int", "int value must be decimal text"),
        ("seed", "invalid seed"),
        ("stats", "stats.nan must be a count"),
        ("stats_partial", "stats.max must be a finite number"),
        ("values", 'missing "values" object'),
    ],
)
def test_malformed_files_give_a_clear_error(tmp_path: Path, edit: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_broken(_valid_document(tmp_path), edit)))
    with pytest.raises(fp.FingerprintFileError, match=message):
        fp.load(path)


def test_corrupt_truncated_and_hostile_files_give_a_clear_error(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_valid_document(tmp_path)))
    text = good.read_text()
    cases = {
        "truncated.json": (text[: len(text) // 2], "not valid JSON \\(it looks truncated\\)"),
        "empty.json": ("", "not valid JSON"),
        "binary.json": (b"\x80\x03}q\x00.", "not UTF-8 text"),  # a pickle
        "nan.json": (text.replace('"runs": 2', '"runs": NaN'), "NaN is not allowed"),
        "duplicate.json": ('{"format": "ipyrepro.fingerprint", "format": "x"}', "duplicate key 'format'"),
        "deep.json": ("[" * 100000 + "]" * 100000, "malformed|not an ipyrepro fingerprint"),
        "list.json": ("[1, 2, 3]", "not an ipyrepro fingerprint"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        with pytest.raises(fp.FingerprintFileError, match=message):
            fp.load(path)
    with pytest.raises(fp.FingerprintFileError, match="does not exist"):
        fp.load(tmp_path / "missing.json")
    with pytest.raises(fp.FingerprintFileError, match="is a folder"):
        fp.load(tmp_path)


def test_oversized_files_are_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.json"
    path.write_text(" " * 2000)
    monkeypatch.setattr(fp, "MAX_FILE_BYTES", 1000)
    with pytest.raises(fp.FingerprintFileError, match="more than the 1,000 allowed"):
        fp.load(path)


def test_compare_saves_then_checks(tmp_path: Path) -> None:
    path = tmp_path / "fn.json"

    def step() -> dict:
        return {"w": torch.randn(5), "n": int(np.random.randint(100))}

    saved = ipyrepro.compare(step, seed=11, save=str(path))
    assert saved.ok and saved.saved == str(path)
    check = ipyrepro.compare(step, check=str(path))
    assert check.ok and check.seed == 11  # the seed comes from the file
    assert "Check against" in str(check) and "w: matches" in str(check)
    other_seed = ipyrepro.compare(step, seed=12, check=str(path))
    assert not other_seed.ok and "DOES NOT MATCH" in str(other_seed)
    assert "seed: 11 saved, 12 now" in str(other_seed)
    with pytest.raises(ValueError, match="not both"):
        ipyrepro.compare(step, save=str(path), check=str(path))


def test_unsupported_values_are_skipped_not_failed(tmp_path: Path) -> None:
    path = tmp_path / "obj.json"

    class Thing:
        pass

    thing = Thing()
    ipyrepro.compare(lambda: {"thing": thing, "t": 1}, save=str(path))
    assert fp.load(path).values["thing"]["kind"] == "unsupported"
    report = ipyrepro.compare(lambda: {"thing": thing, "t": 1}, check=str(path))
    assert report.ok
    assert {entry.path: entry.status for entry in report.check.entries}["thing"] == "skipped"


def test_saving_runs_that_differ_says_so(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    report = ipyrepro.compare(lambda: time.perf_counter_ns(), save=str(path), diagnose=False)
    assert not report.ok and "the saved digests are run 1's" in str(report)
    assert json.loads(path.read_text())["reproducible"] is False
