"""Two one-shot import hooks waiting for the same module (`on`'s and the causes watch's, for torch) both fire,
in the order they were installed, and never ask each other (which recursed without end)."""

from __future__ import annotations

import sys
import types

import pytest

from ipyrepro.core.importhook import after_import


def _module_file(tmp_path, monkeypatch, name: str) -> None:
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_two_hooks_on_one_module_fire_in_install_order_and_leave_the_real_loader(tmp_path, monkeypatch) -> None:
    name = "ipyrepro_twice_hooked_module"
    _module_file(tmp_path, monkeypatch, name)
    seen: list[tuple[str, int]] = []
    first = after_import(name, lambda module: seen.append(("first", module.VALUE)) or setattr(module, "VALUE", 2))
    second = after_import(name, lambda module: seen.append(("second", module.VALUE)))
    try:
        module = __import__(name)
        assert seen == [("first", 1), ("second", 2)]
        assert first not in sys.meta_path and second not in sys.meta_path
        assert type(module.__loader__).__name__ == "SourceFileLoader"
        assert module.__spec__.loader is module.__loader__
    finally:
        first.remove()
        second.remove()


def test_a_raising_callback_does_not_keep_the_other_hook_from_firing(tmp_path, monkeypatch) -> None:
    name = "ipyrepro_hooked_module_that_raises"
    _module_file(tmp_path, monkeypatch, name)
    seen: list[types.ModuleType] = []

    def refuse(module: types.ModuleType) -> None:
        raise RuntimeError("callback refuses")

    first = after_import(name, refuse)
    second = after_import(name, seen.append)
    try:
        with pytest.raises(RuntimeError, match="callback refuses"):
            __import__(name)
        assert len(seen) == 1 and second not in sys.meta_path and first not in sys.meta_path
    finally:
        first.remove()
        second.remove()
