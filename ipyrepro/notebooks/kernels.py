"""The kernels a check starts: the notebook's kernelspec set up as the reproducible kernel would be, or a
plain kernel of the same Python."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from ..core.defaults import ChildSettings, settings_from_env
from ..core.validation import CHECK_KERNEL_VAR, CHILD_VARS, validate_reseed_mode, validate_seed
from .kernelrun import running_kernel
from .kernelspec import startup_env, startup_lines

PLAIN_KERNEL = "python-plain"  # the in-memory spec that runs instead of an ipyrepro kernel


class PlainKernel(NamedTuple):
    """What runs instead of an ipyrepro kernel: a kernel name, the spec manager that knows it, and the report's
    note."""

    name: str
    manager: Any
    note: str


def kernelspec_settings(kernel_name: str, kernel_spec_manager: Any) -> ChildSettings:
    """The settings the kernelspec gives (the third source of core/defaults.py's rule): its env's
    IPYREPRO_SEED, IPYREPRO_RESEED, IPYREPRO_DETERMINISTIC, else what `ipyrepro kernel install` wrote
    in its metadata (kernels installed before it wrote the variables). Nothing for a kernel not installed
    (starting it reports that); a bad variable raises ValueError naming it."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = (kernel_spec_manager or KernelSpecManager()).get_kernel_spec(kernel_name)
    except (NoSuchKernel, OSError, ValueError):
        return ChildSettings()
    try:
        given = settings_from_env(spec.env or {})
    except ValueError as error:
        raise ValueError(f"kernelspec {kernel_name!r} ({spec.resource_dir}): {error}") from None
    installed = spec.metadata.get("ipyrepro") if isinstance(spec.metadata, dict) else None
    if not isinstance(installed, dict):
        return given
    seed, reseed = installed.get("seed"), installed.get("reseed")
    return ChildSettings(
        seed=given.seed if given.seed is not None else _valid(validate_seed, seed),
        reseed=given.reseed if given.reseed is not None else _valid(validate_reseed_mode, reseed),
        deterministic=given.deterministic,
    )


def _valid(validate: Callable[[Any], Any], value: Any) -> Any:
    """`value` if valid, else None: a hand-edited metadata entry is ignored, as before the variables."""
    try:
        return validate(value)
    except (ValueError, TypeError):
        return None


def plain_kernel_for(kernel_name: str, kernel_spec_manager: Any, *, as_is: bool = True) -> PlainKernel | None:
    """When `kernel_name` is an ipyrepro kernel, a plain ipykernel of the same Python.

    An ipyrepro kernel sets PYTHONHASHSEED and CUBLAS_WORKSPACE_CONFIG and runs `%repro on`
    before the first cell, which is not "as written" (--as-is); in the default mode its
    kernelspec's PYTHONHASHSEED would win over the check's (and the causes kernel's), so the
    check sets the plain kernel up itself. Returns None when the kernel is not an ipyrepro one
    (or not installed: starting it reports that).
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel

    manager = kernel_spec_manager or KernelSpecManager()
    try:
        spec = manager.get_kernel_spec(kernel_name)
    except (NoSuchKernel, OSError, ValueError):
        return None
    if not isinstance(spec.metadata, dict) or "ipyrepro" not in spec.metadata or not spec.argv:
        return None
    python = spec.argv[0]
    managed = set(startup_env(0, ":4096:8", "cell")) | (set(CHILD_VARS) if as_is else set())
    plain = KernelSpec(
        argv=[python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name=f"{spec.display_name} (plain, for ipyrepro check)",
        language=spec.language or "python",
        env={key: value for key, value in (spec.env or {}).items() if key not in managed},
        resource_dir=spec.resource_dir,
    )
    if as_is:
        note = (
            f"--as-is: {kernel_name!r} is an ipyrepro kernel, so a plain kernel of its Python ({python}) ran "
            "instead, without its environment variables and `%repro on`"
        )
    else:
        note = (
            f"{kernel_name!r} is an ipyrepro kernel, so a plain kernel of its Python ({python}) ran instead, "
            "set up by the check (the kernel's seed and re-seed mode unless --seed / --reseed, and PYTHONHASHSEED)"
        )

    class SingleSpec(KernelSpecManager):
        """Knows one in-memory spec: the plain kernel --as-is runs."""

        def get_kernel_spec(self, name: str) -> Any:
            if name != PLAIN_KERNEL:
                raise NoSuchKernel(name)
            return plain

        def find_kernel_specs(self) -> dict[str, str]:
            return {PLAIN_KERNEL: plain.resource_dir}

    return PlainKernel(PLAIN_KERNEL, SingleSpec(), note)


@contextmanager
def notebook_kernel(
    kernel_name: str,
    path: Path,
    *,
    as_is: bool,
    seed: int,
    reseed: str | None,
    cublas: str,
    startup_timeout: float,
    kernel_spec_manager: Any,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[Any, str | None]]:
    """A fresh kernel in the notebook's folder, set up as the reproducible kernel is unless `as_is`.

    Yields (runner, setup_error): the error text when `%repro on` failed there, else None.
    `env` adds to (or overrides) the reproducible kernel's variables. What a `%repro on` around this
    process exported for its children (IPYREPRO_SEED, ...) stays out: the kernel is as fresh as a
    frontend's, and the check's own options say how it is set up. CHECK_KERNEL_VAR marks the kernel as a
    check's, even --as-is: `%repro check` in it does nothing (no recursion).
    """
    with running_kernel(
        kernel_name,
        env={**({} if as_is else startup_env(seed, cublas, reseed)), **(env or {}), CHECK_KERNEL_VAR: "1"},
        unset=CHILD_VARS,
        cwd=path.absolute().parent,
        startup_timeout=startup_timeout,
        kernel_spec_manager=kernel_spec_manager,
    ) as runner:
        setup_error = None
        if not as_is:
            setup = runner.execute(
                "\n".join(startup_lines(seed, reseed)), silent=True, store_history=False, timeout=startup_timeout
            )
            if setup.status != "ok":
                setup_error = setup.error_text or setup.status
        yield runner, setup_error
