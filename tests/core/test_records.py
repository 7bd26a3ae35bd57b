"""``@datarecord`` answers as ``@dataclass`` does, for the shapes ucf's records take.

Each case declares one class body twice, once under ``@dataclass`` and once
under ``@datarecord`` with the same options, and the two are asked the same
questions: construction and its signature, ``repr``, equality, hashing,
immutability, ``dataclasses.replace``/``asdict``/``fields``, pattern matching,
copying and pickling.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any, ClassVar

import pytest

from ucf.core.records import datarecord


@datarecord
class Point:
    """A frozen, slotted record (pickled by reference, so at module level)."""

    x: int
    y: int = 0


@dataclass(frozen=True, slots=True)
class PointDC:
    """The same as a dataclass."""

    x: int
    y: int = 0


def _pair(frozen: bool, slots: bool) -> tuple[type[Any], type[Any]]:
    """The same body under both decorators."""

    def body() -> type[Any]:
        class Shape:
            """A record of every kind of field."""

            kind: ClassVar[str] = "shape"
            name: str
            size: float = 1.0
            tags: tuple[str, ...] = field(default_factory=tuple)
            secret: str = field(default="", repr=False)
            note: str = field(default="", compare=False)
            derived: int = field(default=0, init=False)

            def area(self) -> float:
                return self.size * self.size

        return Shape

    made_dc = dataclass(frozen=frozen, slots=slots)(body())
    made_record = datarecord(frozen=frozen, slots=slots)(body())
    return made_dc, made_record


KINDS = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.parametrize(("frozen", "slots"), KINDS)
def test_a_record_answers_every_question_as_the_dataclass_does(frozen: bool, slots: bool) -> None:
    made_dc, made_record = _pair(frozen, slots)
    for cls in (made_dc, made_record):
        assert dataclasses.is_dataclass(cls)
    assert str(inspect.signature(made_record)) == str(inspect.signature(made_dc))
    assert made_record.__init__.__module__ == made_dc.__init__.__module__ == __name__
    assert made_record.__match_args__ == made_dc.__match_args__
    assert [f.name for f in dataclasses.fields(made_record)] == [
        f.name for f in dataclasses.fields(made_dc)
    ]
    assert ("__slots__" in made_record.__dict__) == ("__slots__" in made_dc.__dict__) == slots

    def both(**kwargs: Any) -> tuple[Any, Any]:
        return made_dc(**kwargs), made_record(**kwargs)

    a_dc, a_rec = both(name="a", tags=("t",), secret="s3cret", note="n")
    assert repr(a_rec).replace(made_record.__qualname__, "X") == repr(a_dc).replace(
        made_dc.__qualname__, "X"
    )
    assert "s3cret" not in repr(a_rec)
    assert a_rec.derived == a_dc.derived == 0
    assert a_rec.area() == 1.0
    assert dataclasses.asdict(a_rec) == dataclasses.asdict(a_dc)
    # equality: by compared fields, only between instances of one class
    same_dc, same_rec = both(name="a", tags=("t",), secret="s3cret", note="other note")
    diff_dc, diff_rec = both(name="b")
    assert (a_rec == same_rec) == (a_dc == same_dc) is True
    assert (a_rec == diff_rec) == (a_dc == diff_dc) is False
    assert (a_rec != diff_rec) is True
    assert a_rec != a_dc
    assert a_rec.__eq__(object()) is NotImplemented
    # hashing: a frozen record by its compared fields, a mutable one not at all
    if frozen:
        assert hash(a_rec) == hash(a_dc) == hash(same_rec)
    else:
        assert made_record.__hash__ is None
        with pytest.raises(TypeError):
            hash(a_rec)
    # immutability
    if frozen:
        for obj in (a_dc, a_rec):
            with pytest.raises(FrozenInstanceError, match="cannot assign to field 'name'"):
                obj.name = "z"
            with pytest.raises(FrozenInstanceError, match="cannot delete field 'name'"):
                del obj.name
    else:
        a_rec.name = "z"
        assert a_rec.name == "z"
    # replace, copies
    moved = dataclasses.replace(same_rec, size=2.0)
    assert type(moved) is made_record
    assert (moved.size, moved.name) == (2.0, "a")
    assert copy.copy(same_rec) == same_rec
    assert copy.deepcopy(same_rec) == same_rec
    # a factory's default is fresh and shown as the dataclass shows it
    assert made_record(name="x").tags == ()
    assert "<factory>" in str(inspect.signature(made_record))


def test_a_frozen_slotted_record_pickles_like_the_dataclass() -> None:
    point = Point(1, 2)
    assert pickle.loads(pickle.dumps(point)) == point
    assert pickle.loads(pickle.dumps(PointDC(1, 2))) == PointDC(1, 2)
    assert not hasattr(point, "__dict__")
    match point:
        case Point(x, y):
            assert (x, y) == (1, 2)
        case _:
            pytest.fail("a record matches its positional fields")


def test_a_dataclass_may_extend_a_record_as_it_extends_a_dataclass() -> None:
    @datarecord
    class Base:
        """A frozen record."""

        value: int

    @dataclass(frozen=True)
    class Derived(Base):
        """Adds a field."""

        other: int = 0

    derived = Derived(1, 2)
    assert (derived.value, derived.other) == (1, 2)
    assert derived == Derived(1, 2) != Derived(1, 3)
    with pytest.raises(FrozenInstanceError):
        derived.value = 3  # type: ignore[misc]
    with pytest.raises(TypeError, match="non-frozen dataclass from a frozen one"):

        @dataclass
        class Thawed(Base):  # type: ignore[misc]
            """As @dataclass refuses it for a frozen base."""

            other: int = 0


def test_a_record_inside_itself_is_shown_as_the_dataclass_shows_it() -> None:
    @datarecord(frozen=False)
    class Node:
        """Holds what it points to."""

        children: list[Any] = field(default_factory=list)

    node = Node()
    node.children.append(node)
    assert repr(node).endswith("<locals>.Node(children=[...])")


def test_post_init_runs_after_the_fields_are_set() -> None:
    @datarecord
    class Checked:
        """Refuses a negative value."""

        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    assert Checked(1).value == 1
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)


def test_methods_the_class_defines_are_kept() -> None:
    @datarecord
    class Own:
        """Defines its own equality, hash and repr."""

        value: int

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Own) and self.value % 10 == other.value % 10

        def __hash__(self) -> int:
            return self.value % 10

        def __repr__(self) -> str:
            return "own"

    assert Own(1) == Own(11)
    assert hash(Own(1)) == hash(Own(11))
    assert repr(Own(1)) == "own"


def test_an_undocumented_record_is_documented_by_its_parameters() -> None:
    @datarecord
    class Bare:
        value: int
        other: int = 0

    assert Bare.__doc__ == "Bare(value, other=...)"


def test_what_a_record_does_not_take_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="InitVar"):

        @datarecord
        class WithInitVar:
            """Not supported."""

            seed: dataclasses.InitVar[int]

    with pytest.raises(TypeError, match="keyword-only"):

        @datarecord
        class KeywordOnly:
            """Not supported."""

            value: int = field(kw_only=True)

    @dataclass(frozen=True)
    class Base:
        """A dataclass base."""

        value: int

    with pytest.raises(TypeError, match="subclass a dataclass"):

        @datarecord
        class Derived(Base):
            """Not supported."""

            other: int

    with pytest.raises(TypeError, match="follows default argument"):

        @datarecord
        class Misordered:
            """As @dataclass refuses it."""

            first: int = 0
            second: int  # type: ignore[misc]


def test_a_records_init_is_compiled_by_its_first_construction_not_with_its_class() -> None:
    """Most records a process imports are never built in it (a Lambda poll worker's
    first invocation imports 64): each ``__init__`` compile (~0.1 ms) waits for a use."""

    @datarecord
    class Late:
        """Built once below."""

        a: int
        b: str = "x"

    class Later(Late):
        """A plain subclass, built first: it uses the record's ``__init__``."""

    def compiled(cls: type) -> bool:
        return bool(cls.__dict__["__init__"].__code__.co_filename.startswith("<record "))

    assert not compiled(Late)
    assert Later(1).b == "x"
    assert compiled(Late)
    assert Late(2) == Late(2, "x")
    assert (
        Late.__init__.__qualname__
        == "test_a_records_init_is_compiled_by_its_first_construction_not_with_its_class.<locals>.Late.__init__"
    )


def test_asking_a_records_signature_before_any_construction_gets_the_dataclasss() -> None:
    @datarecord(frozen=False)
    class Unbuilt:
        """Never constructed before its signature is read."""

        a: int
        tags: tuple[str, ...] = field(default_factory=tuple)

    @dataclass
    class UnbuiltDC:
        """The same as a dataclass."""

        a: int
        tags: tuple[str, ...] = field(default_factory=tuple)

    assert str(inspect.signature(Unbuilt)) == str(inspect.signature(UnbuiltDC))
    assert Unbuilt(1).tags == ()


def test_a_plain_subclass_shows_the_records_signature_before_any_construction() -> None:
    """As a plain subclass of a dataclass does, not the stand-in ``__init__``'s
    ``(*args, **kwargs)``; one with its own ``__init__`` keeps its own."""

    @datarecord
    class Parent:
        """Never constructed before its subclass's signature is read."""

        a: int
        b: str = "x"

    class Child(Parent):
        """Adds nothing to construction."""

    class Custom(Parent):
        """Constructs differently."""

        def __init__(self, c: float) -> None:
            super().__init__(int(c))

    @dataclass
    class ParentDC:
        """The same as a dataclass."""

        a: int
        b: str = "x"

    class ChildDC(ParentDC):
        """Adds nothing to construction."""

    assert str(inspect.signature(Child)) == str(inspect.signature(ChildDC))
    assert "a: 'int'" in str(inspect.signature(Child))
    assert str(inspect.signature(Custom)) == "(c: 'float') -> 'None'"
    assert Custom(2.0).a == 2
