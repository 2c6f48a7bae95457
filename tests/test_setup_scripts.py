"""scripts/setup: the demo installs no extras, the test setup says before it runs apt-get, and a Chromium that
cannot be installed skips the browser tests instead of failing the setup.

pip, apt-get and sleep are stand-ins on PATH that record their arguments (nothing is installed, nothing waits);
every other command, Python included, is the real one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "setup"


@pytest.fixture
def shims(tmp_path: Path) -> Path:
    """A folder put first on PATH: `python -m pip install` and `apt-get` only log; `sleep` returns at once."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1 $2 $3" = "-m pip install" ]; then echo "pip $*" >> {log}; echo "(pip ran)"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    (bin_dir / "apt-get").write_text(
        f'#!/usr/bin/env bash\necho "apt-get $*" >> {log}\necho "(apt-get ran)"\nexit "${{FAKE_APT_EXIT:-0}}"\n'
    )
    (bin_dir / "sleep").write_text("#!/usr/bin/env bash\nexit 0\n")
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    return bin_dir


def setup(shims: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    environment = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}", **env}
    (shims.parent / "calls.log").unlink(missing_ok=True)
    done = subprocess.run(["bash", str(SETUP), *args], capture_output=True, text=True, timeout=120, env=environment)
    log = shims.parent / "calls.log"
    return done, log.read_text().splitlines() if log.exists() else []


def test_the_demo_setup_installs_ipyrepro_alone_and_keeps_the_torch_that_is_there(shims: Path) -> None:
    done, calls = setup(shims, "demo", IPYREPRO_CHROMIUM=str(shims / "no-chromium"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "keeping torch" in done.stdout
    assert [call for call in calls if call.startswith("pip")] == [
        "pip -m pip install -q --disable-pip-version-check -e ."
    ]
    assert not any(call.startswith("apt-get") for call in calls)  # the demo needs no browser


def test_the_test_setup_says_before_apt_get_runs_and_waits_for_the_dpkg_lock(shims: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("scripts/setup calls apt-get only as root")
    done, calls = setup(shims, "test", IPYREPRO_CHROMIUM=str(shims / "no-chromium"))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.index("installing Debian's chromium for the browser tests") < out.index("(apt-get ran)")
    assert all("DPkg::Lock::Timeout=" in call for call in calls if call.startswith("apt-get"))
    assert calls[-1] == "pip -m pip install -q --disable-pip-version-check -e .[test,bench,docs]"


def test_a_chromium_that_cannot_be_installed_skips_the_browser_tests_with_a_message(shims: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("scripts/setup calls apt-get only as root")
    done, calls = setup(shims, "test", IPYREPRO_CHROMIUM=str(shims / "no-chromium"), FAKE_APT_EXIT="100")
    assert done.returncode == 0, done.stdout + done.stderr  # the rest of the setup still happens
    assert "Chromium could not be installed: the browser tests will be skipped" in done.stdout
    assert sum(call.startswith("apt-get") and " update " in f"{call} " for call in calls) == 6  # retried
    assert calls[-1].endswith("-e .[test,bench,docs]")


def test_skip_browser_never_calls_apt_get_and_a_bad_target_says_which_exist(shims: Path) -> None:
    done, calls = setup(shims, "test", IPYREPRO_CHROMIUM=str(shims / "no-chromium"), IPYREPRO_SKIP_BROWSER="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not any(call.startswith("apt-get") for call in calls)
    done, calls = setup(shims, "docs")
    assert done.returncode == 2 and "use 'demo' or 'test'" in done.stderr and calls == []
