"""`ipyrepro kernel install/uninstall`: the kernelspec on disk, and a real kernel started from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from jupyter_client.kernelspec import KernelSpecManager

from ipyrepro.cli import main
from ipyrepro.core.seeding import derive_cell_seed
from ipyrepro.notebooks import kernelspec
from ipyrepro.notebooks.kernelrun import running_kernel


@pytest.fixture(autouse=True)
def _user_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own Jupyter data dir, so `--user` never touches the real one."""
    data = tmp_path / "jupyter-data"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data))
    return data


def spec_manager(prefix: Path) -> KernelSpecManager:
    return KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])


def read_spec(prefix: Path, name: str = "ipyrepro") -> dict:
    return json.loads((prefix / "share" / "jupyter" / "kernels" / name / "kernel.json").read_text())


def test_install_writes_env_and_startup_lines(tmp_path: Path, capsys) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path), "--seed", "9", "--cublas", ":16:8"]) == 0
    assert "Installed kernelspec 'ipyrepro'" in capsys.readouterr().out
    spec = read_spec(tmp_path)
    assert spec["env"] == {
        "PYTHONHASHSEED": "9",
        "CUBLAS_WORKSPACE_CONFIG": ":16:8",
        "IPYREPRO_SEED": "9",  # the kernel's settings, which a notebook's own `%repro on` follows
        "IPYREPRO_RESEED": "cell",
    }
    assert spec["argv"][:5] == [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    assert spec["argv"][5:] == [
        "--IPKernelApp.exec_lines=%load_ext ipyrepro.preload",
        "--IPKernelApp.exec_lines=%repro on --seed 9",
    ]
    assert spec["display_name"] == "Python 3 (ipyrepro, seed 9)"
    assert spec["metadata"]["ipyrepro"]["seed"] == 9 and spec["metadata"]["ipyrepro"]["reseed"] == "cell"
    assert "ipyrepro" in spec_manager(tmp_path).find_kernel_specs()


def test_install_writes_the_reseed_mode_into_the_kernelspec(tmp_path: Path, capsys) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path), "--reseed", "source"]) == 0
    assert "--reseed source" in capsys.readouterr().out
    spec = read_spec(tmp_path)
    assert spec["argv"][-1] == "--IPKernelApp.exec_lines=%repro on --seed 0 --reseed source"
    assert spec["display_name"] == "Python 3 (ipyrepro, seed 0, re-seed source)"
    assert spec["metadata"]["ipyrepro"]["reseed"] == "source"
    with pytest.raises(SystemExit) as exit_info:
        main(["kernel", "install", "--prefix", str(tmp_path), "--name", "other", "--reseed", "random"])
    assert exit_info.value.code == 2
    with pytest.raises(ValueError, match="re-seed mode"):
        kernelspec.install("other", prefix=tmp_path, reseed="random")
    assert not (tmp_path / "share" / "jupyter" / "kernels" / "other").exists()


def test_install_leaves_ipyrepro_compiled_even_where_python_writes_no_bytecode(tmp_path: Path) -> None:
    # As in a container that sets PYTHONDONTWRITEBYTECODE over an editable install: without this, every
    # kernel the kernelspec starts would compile ipyrepro's sources again.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache")}
    missing = (
        "import importlib.util, pathlib, ipyrepro\n"
        "package = pathlib.Path(ipyrepro.__file__).parent\n"
        "cached = (pathlib.Path(importlib.util.cache_from_source(f)) for f in package.rglob('*.py'))\n"
        "print(sum(1 for path in cached if not path.is_file()))"
    )
    count = [sys.executable, "-c", missing]
    assert int(subprocess.run(count, env=env, capture_output=True, text=True, check=True).stdout) > 0
    install = [sys.executable, "-m", "ipyrepro", "kernel", "install", "--prefix", str(tmp_path / "prefix")]
    subprocess.run(install, env=env, capture_output=True, check=True)
    assert int(subprocess.run(count, env=env, capture_output=True, text=True, check=True).stdout) == 0


def test_install_refuses_to_overwrite_without_force(tmp_path: Path, capsys) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path), "--name", "repro-a"]) == 0
    assert main(["kernel", "install", "--prefix", str(tmp_path), "--name", "repro-a", "--seed", "3"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert read_spec(tmp_path, "repro-a")["env"]["PYTHONHASHSEED"] == "0"
    args = ["kernel", "install", "--prefix", str(tmp_path), "--name", "repro-a", "--seed", "3", "--force"]
    assert main([*args, "--display-name", "Seed three"]) == 0
    spec = read_spec(tmp_path, "repro-a")
    assert spec["env"]["PYTHONHASHSEED"] == "3" and spec["display_name"] == "Seed three"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--name", "no spaces"], "invalid kernel name"),
        (["--name", "python3"], "default kernel"),
    ],
)
def test_bad_input_writes_nothing(tmp_path: Path, capsys, arguments: list[str], message: str) -> None:
    assert main(["kernel", "install", "--prefix", str(tmp_path), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "share").exists()


@pytest.mark.parametrize("arguments", [["--seed", "-1"], ["--seed", "4294967296"], ["--cublas", ":8:8"]])
def test_bad_seed_or_cublas_is_a_usage_error(tmp_path: Path, arguments: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["kernel", "install", "--prefix", str(tmp_path), *arguments])
    assert exit_info.value.code == 2
    assert not (tmp_path / "share").exists()


def test_api_validates_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CUBLAS_WORKSPACE_CONFIG"):
        kernelspec.install(prefix=tmp_path, cublas=":1:1")
    with pytest.raises(ValueError, match="seed"):
        kernelspec.install(prefix=tmp_path, seed=2**32)
    assert not (tmp_path / "share").exists()


def test_user_install_goes_to_the_jupyter_data_dir(_user_data_dir: Path) -> None:
    folder = kernelspec.install("repro-user", seed=1)
    assert folder == _user_data_dir / "kernels" / "repro-user"
    assert "repro-user" in KernelSpecManager().find_kernel_specs()
    assert main(["kernel", "uninstall", "repro-user"]) == 0
    assert not folder.exists()


def test_uninstall_removes_only_ipyrepro_kernelspecs(tmp_path: Path, capsys) -> None:
    kernelspec.install("mine", prefix=tmp_path)
    other = tmp_path / "share" / "jupyter" / "kernels" / "theirs"
    other.mkdir()
    (other / "kernel.json").write_text(json.dumps({"argv": ["python"], "display_name": "x", "language": "python"}))
    assert main(["kernel", "uninstall", "theirs", "--prefix", str(tmp_path)]) == 2
    assert "not installed by ipyrepro" in capsys.readouterr().err and other.exists()
    assert main(["kernel", "uninstall", "mine", "--prefix", str(tmp_path)]) == 0
    assert not (other.parent / "mine").exists()
    assert main(["kernel", "uninstall", "mine", "--prefix", str(tmp_path)]) == 2
    assert "no kernelspec named 'mine'" in capsys.readouterr().err


def first_cell_draws(seed: int, cell_id: str) -> list[float]:
    generator = torch.Generator().manual_seed(derive_cell_seed(seed, cell_id))
    return torch.rand(3, generator=generator).tolist()


FIRST_CELL = "import torch, os\nprint(torch.rand(3).tolist())"
STATUS_CELL = "%repro status --json"
PROCESS_CELL = "print(os.environ['PYTHONHASHSEED'], os.environ['CUBLAS_WORKSPACE_CONFIG'], hash('ipyrepro'))"


@pytest.mark.kernel
def test_installed_kernel_is_reproducible_from_its_first_cell(tmp_path: Path) -> None:
    kernelspec.install("repro-test", prefix=tmp_path, seed=11, cublas=":16:8")
    seen = []
    for _ in range(2):
        with running_kernel("repro-test", kernel_spec_manager=spec_manager(tmp_path)) as kernel:
            first = kernel.execute(FIRST_CELL, "first-cell")
            assert first.status == "ok", first.error_text
            load = kernel.execute("%load_ext ipyrepro", "load")  # a notebook's own line, as in any kernel
            assert (load.status, load.stdout, load.stderr) == ("ok", "", "")
            status = json.loads(kernel.execute(STATUS_CELL, "status").stdout)
            process = kernel.execute(PROCESS_CELL, "process").stdout.split()
        assert json.loads(first.stdout) == pytest.approx(first_cell_draws(11, "first-cell"), abs=0)
        assert status["enabled"] and status["seed"] == 11 and status["reseed"] == "cell"
        assert status["deterministic_algorithms"] == "error" and status["python_hash_seed"] == "11"
        assert process[:2] == ["11", ":16:8"]
        seen.append(process[2])
    expected = subprocess.run(
        [sys.executable, "-c", "print(hash('ipyrepro'))"],
        env={"PYTHONHASHSEED": "11"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert seen == [expected, expected]
