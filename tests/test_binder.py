"""binder/: what mybinder.org installs must keep up with the package's runtime dependencies."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).parent.parent


def binder_requirements() -> tuple[dict[str, Requirement], list[str]]:
    requirements, options = {}, []
    for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            options.append(line)
            continue
        requirement = Requirement(line)
        requirements[canonicalize_name(requirement.name)] = requirement
    return requirements, options


def test_binder_lists_every_runtime_dependency_with_the_same_bounds() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed, _ = binder_requirements()
    for dependency in map(Requirement, project["dependencies"]):
        name = canonicalize_name(dependency.name)
        assert name in listed, f"binder/requirements.txt lacks {dependency.name} (pyproject.toml needs {dependency})"
        assert listed[name].specifier == dependency.specifier, (
            f"binder/requirements.txt has {listed[name]}, pyproject.toml {dependency}: keep them the same"
        )


def test_binder_installs_a_cpu_torch_and_the_package_itself() -> None:
    _, options = binder_requirements()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in options
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK), "Binder only runs an executable postBuild"
    script = post_build.read_text()
    assert "pip install" in script and " -e ." in script
    assert "ipyrepro kernel install" in script
