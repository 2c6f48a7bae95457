"""Records behave as the named tuples and dataclasses they replace (core/records.py says why they exist)."""

from __future__ import annotations

import copy
import pickle
from typing import ClassVar

import pytest

from ipyrepro.core.flags import Flags
from ipyrepro.core.records import Record


class Point(Record):
    """A module-level record, so that pickle can find it."""

    x: int
    y: int = 0
    label: str | None = None
    registry: ClassVar[dict[str, int]] = {}


class Counter(Record, mutable=True):
    count: int
    names: list[str]


def test_fields_come_from_the_annotations_in_order_and_class_vars_are_not_fields() -> None:
    assert Point._fields == ("x", "y", "label")
    assert Point(1) == Point(x=1, y=0, label=None)
    assert Point(1, 2, "a") == Point(label="a", y=2, x=1)
    x, y, label = Point(3, 4)
    assert (x, y, label) == (3, 4, None)
    assert list(Point(5)) == [5, 0, None]


def test_construction_errors_name_the_field() -> None:
    with pytest.raises(TypeError, match="needs 'x'"):
        Point()
    with pytest.raises(TypeError, match="no field 'z'"):
        Point(1, z=2)
    with pytest.raises(TypeError, match="'x' twice"):
        Point(1, x=2)
    with pytest.raises(TypeError, match="takes 3 fields, 4 were given"):
        Point(1, 2, "a", "b")


def test_immutable_records_refuse_changes_and_replace_makes_a_copy() -> None:
    point = Point(1, 2)
    with pytest.raises(AttributeError, match="immutable"):
        point.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del point.x
    moved = point._replace(y=7)
    assert (point.y, moved.y, moved.x) == (2, 7, 1)
    assert point._asdict() == {"x": 1, "y": 2, "label": None}


def test_equality_is_by_type_and_values_and_hash_follows_it() -> None:
    assert Point(1, 2) == Point(1, 2) and hash(Point(1, 2)) == hash(Point(1, 2))
    assert Point(1, 2) != Point(2, 1)
    assert Point(1, 2) != (1, 2, None)  # unlike a named tuple, a record is not a tuple

    class Other(Record):
        x: int
        y: int = 0
        label: str | None = None

    assert Point(1) != Other(1)
    assert len({Point(1), Point(1), Point(2)}) == 2


def test_repr_reads_as_a_call() -> None:
    assert repr(Point(1, label="a")) == "Point(x=1, y=0, label='a')"
    assert repr(Flags(False, True, "error", ":4096:8")) == (
        "Flags(cudnn_benchmark=False, cudnn_deterministic=True, deterministic_algorithms='error', "
        "cublas_workspace_config=':4096:8')"
    )


def test_mutable_records_take_assignments_to_their_fields_only_and_are_unhashable() -> None:
    counter = Counter(0, [])
    counter.count += 1
    counter.names.append("a")
    assert counter == Counter(1, ["a"])
    with pytest.raises(AttributeError, match="no field 'other'"):
        counter.other = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="unhashable"):
        hash(counter)


def test_a_mutable_default_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="shared by every instance"):

        class Shared(Record):
            items: list[int] = []  # noqa: RUF012


def test_subclasses_add_fields_after_the_inherited_ones() -> None:
    class Point3(Point):
        z: int = 0

    assert Point3._fields == ("x", "y", "label", "z")
    assert Point3(1, z=3) == Point3(1, 0, None, 3)


def test_records_copy_and_pickle() -> None:
    point = Point(1, 2, "a")
    assert copy.copy(point) == point and copy.deepcopy(point) == point
    assert pickle.loads(pickle.dumps(point)) == point
