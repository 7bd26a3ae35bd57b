"""``@datarecord``: a dataclass built for a fraction of what ``@dataclass`` costs at import.

``@dataclass(frozen=True, slots=True)`` writes six methods as Python source
(``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``,
``__delattr__``) and compiles each with its own ``exec``: about 0.45 ms a
class on Python 3.11 (no less on 3.12 or 3.13). A Lambda cold start builds
every class of every module it imports, and the poll worker's path held about
65 of ucf's, some 30 ms of its CPU (docs/aws.md, "What remains, per function").

``@datarecord`` gives the same class for about a quarter of that:

* ``dataclasses.dataclass`` itself still reads the fields, with nothing to
  generate (``init``, ``repr`` and ``eq`` off, not frozen), so the class *is*
  a dataclass: ``dataclasses.fields``, ``replace``, ``asdict`` and
  ``__match_args__`` work, and ``slots`` rebuilds it as before;
* ``__init__`` is the one method compiled per class (it must take the class's
  own parameters, and it is what a hot path calls), written as the standard
  library writes it: defaults, ``default_factory``, ``init=False`` fields,
  ``__post_init__``; a frozen record stores through ``object.__setattr__``,
  or, slotted, through each slot's own setter (the same store, without
  looking the name up on the class first). It is compiled by the class's
  first construction (or the first ``inspect.signature`` of it), not with the
  class: a Lambda function's first invocation imports 37-64 of ucf's records
  and builds about two thirds of them or fewer (the poll worker 41 of 64,
  delivery 13 of 37);
* ``__repr__``, ``__eq__``, ``__hash__`` and a frozen record's ``__setattr__``
  and ``__delattr__`` are shared functions that read the class's field names
  (``operator.attrgetter``, made once per class), with the standard library's
  answers: ``repr`` by fields with ``repr=True``, equality by the tuple of
  ``compare=True`` fields between instances of the same class, a frozen
  record hashable by that tuple and a mutable one not hashable,
  ``FrozenInstanceError`` on assignment.

A method the class body defines itself is kept, as ``@dataclass`` keeps it.
What ``@datarecord`` does not take (``InitVar`` and keyword-only fields, ``order``,
``unsafe_hash``, subclassing a dataclass) is refused at class creation; use
``@dataclass`` there. One answer differs on purpose: a record without a
docstring gets ``Name(a, b=...)`` as its ``__doc__``, where ``@dataclass``
renders its signature with ``inspect`` (slow, and only for that text).
``tests/core/test_records.py`` holds a record to the dataclass with the same
fields, answer by answer. Measured on Python 3.11: 0.50 -> 0.18 ms a class.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError
from operator import attrgetter
from types import MemberDescriptorType
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T", bound=type)


class _Factory:
    """The default an ``__init__`` shows for a ``default_factory`` field (``<factory>``, as
    ``@dataclass`` shows it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


@overload
def datarecord(cls: T, /) -> T: ...


@overload
def datarecord(*, frozen: bool = True, slots: bool = True) -> Callable[[T], T]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, Field))
def datarecord(
    cls: T | None = None, /, *, frozen: bool = True, slots: bool = True
) -> T | Callable[[T], T]:
    """``@dataclass(frozen=frozen, slots=slots)``, built without compiling five of its methods."""

    def wrap(cls: T) -> T:
        return _build(cls, frozen=frozen, slots=slots)

    return wrap if cls is None else wrap(cls)


def _build(cls: T, *, frozen: bool, slots: bool) -> T:
    for base in cls.__mro__[1:]:
        if dataclasses.is_dataclass(base):
            raise TypeError(f"{cls.__qualname__}: @datarecord does not subclass a dataclass")
    own = dict(cls.__dict__)
    documented = bool(own.get("__doc__"))
    if not documented:
        cls.__doc__ = cls.__name__  # @dataclass would build one with inspect (slow); below
    built: Any = dataclasses.dataclass(init=False, repr=False, eq=False, slots=slots)(cls)
    # What the class does, as @dataclass(frozen=frozen) records it: a @dataclass
    # subclass checks these (a frozen one may only extend a frozen base).
    params = built.__dataclass_params__
    params.init = params.repr = params.eq = True
    params.frozen = frozen
    fields = dataclasses.fields(built)
    for f in built.__dataclass_fields__.values():
        if isinstance(f.type, dataclasses.InitVar) or "InitVar" in str(f.type):
            raise TypeError(f"{cls.__qualname__}: @datarecord takes no InitVar fields")
    if any(f.kw_only is True for f in fields):
        raise TypeError(f"{cls.__qualname__}: @datarecord takes no keyword-only fields")
    _check_defaults(built, fields)
    if not documented:
        built.__doc__ = f"{cls.__name__}({', '.join(_parameters(fields))})"
    compared = [f.name for f in fields if f.compare]
    hashed = [f.name for f in fields if (f.compare if f.hash is None else f.hash)]
    built.__record_repr__ = tuple(f.name for f in fields if f.repr)
    built.__record_key__ = staticmethod(_tuple_of(compared))
    if "__init__" not in own:
        built.__init__ = _deferred_init(built, fields, frozen=frozen)
        built.__signature__ = _SignatureOnDemand(built)
    _add(built, own, "__repr__", _repr)
    _add(built, own, "__eq__", _eq)
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    if not explicit_hash:
        if frozen:
            built.__record_hash_key__ = staticmethod(_tuple_of(hashed))
            built.__hash__ = _hash
        else:
            built.__hash__ = None
    if frozen:
        for name in ("__setattr__", "__delattr__"):
            if name in own:
                raise TypeError(f"cannot overwrite attribute {name} in class {cls.__name__}")
        built.__record_owner__ = built
        built.__record_names__ = frozenset(f.name for f in fields)
        built.__setattr__ = _frozen_setattr
        built.__delattr__ = _frozen_delattr
        if slots:
            _add(built, own, "__getstate__", _getstate)
            _add(built, own, "__setstate__", _setstate)
    return built  # type: ignore[no-any-return]


def _add(cls: type, own: dict[str, Any], name: str, value: Any) -> None:
    if name not in own:
        setattr(cls, name, value)


def _tuple_of(names: list[str]) -> Callable[[object], tuple[Any, ...]]:
    """``attrgetter`` that always answers a tuple, as ``@dataclass``'s methods compare one."""
    if not names:
        return lambda _: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return attrgetter(*names)


def _parameters(fields: tuple[Field[Any], ...]) -> list[str]:
    return [
        f"{f.name}=..." if f.default is not MISSING or f.default_factory is not MISSING else f.name
        for f in fields
        if f.init
    ]


def _check_defaults(cls: type, fields: tuple[Field[Any], ...]) -> None:
    """``@dataclass``'s refusal of a required parameter after one with a default, at class
    creation (the ``__init__`` that would show it is compiled later)."""
    seen_default = False
    for f in fields:
        if not f.init:
            continue
        if f.default is not MISSING or f.default_factory is not MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")


def _deferred_init(
    cls: type, fields: tuple[Field[Any], ...], *, frozen: bool
) -> Callable[..., None]:
    """An ``__init__`` that compiles the real one (:func:`_init`) on the first construction.

    Compiling costs ~0.1 ms a class, and most records a process imports are never
    built in it: a Lambda poll worker's first invocation imports 64 and builds a
    few of them. The first call puts the compiled ``__init__`` on the class, so
    every later one calls it directly; ``inspect.signature(cls)`` compiles it first
    (:class:`_SignatureOnDemand`), so the class shows the dataclass's signature.
    """

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        _compiled_init(cls, fields, frozen)(self, *args, **kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__module__ = cls.__module__
    __init__.__record_fields__ = (fields, frozen)  # type: ignore[attr-defined]
    return __init__


def _compiled_init(cls: type, fields: tuple[Field[Any], ...], frozen: bool) -> Callable[..., None]:
    """The class's compiled ``__init__``, compiled and put in place if it is not yet."""
    current = cls.__dict__["__init__"]
    if getattr(current, "__record_fields__", None) is None:
        return current  # type: ignore[no-any-return]
    init = _init(cls, fields, frozen=frozen)
    type.__setattr__(cls, "__init__", init)
    return init


class _SignatureOnDemand:
    """``cls.__signature__`` of a record: compiles its ``__init__``, then lets ``inspect``
    read the signature from it as it reads a dataclass's (answering ``None`` means
    "look at ``__init__``"). A plain subclass that inherits the record's ``__init__``
    reads it through here too (it would otherwise show the stand-in's ``*args,
    **kwargs``); one with an ``__init__`` of its own is left to it."""

    __slots__ = ("_cls",)

    def __init__(self, cls: type) -> None:
        self._cls = cls

    def __get__(self, instance: object, owner: type | None = None) -> None:
        init = self._cls.__dict__["__init__"]
        fields_frozen = getattr(init, "__record_fields__", None)
        if fields_frozen is not None and getattr(owner, "__init__", None) is init:
            _compiled_init(self._cls, *fields_frozen)


def _init(cls: type, fields: tuple[Field[Any], ...], *, frozen: bool) -> Callable[..., None]:
    """``__init__`` as ``dataclasses._init_fn`` writes it, in one small ``exec``."""
    names: dict[str, Any] = {"__record_object_setattr__": object.__setattr__}
    names["__record_factory__"] = _Factory()
    params, body = ["self"], []
    seen_default = False
    for f in fields:
        default = f"__record_default_{f.name}__"
        factory = f"__record_factory_{f.name}__"
        if f.default is not MISSING:
            names[default] = f.default
        if f.default_factory is not MISSING:
            names[factory] = f.default_factory
        if f.init:
            if f.default is not MISSING:
                params.append(f"{f.name}={default}")
                seen_default = True
                value = f.name
            elif f.default_factory is not MISSING:
                params.append(f"{f.name}=__record_factory__")
                seen_default = True
                value = f"{factory}() if {f.name} is __record_factory__ else {f.name}"
            else:
                if seen_default:
                    raise TypeError(f"non-default argument {f.name!r} follows default argument")
                params.append(f.name)
                value = f.name
        elif f.default is not MISSING:
            value = default
        elif f.default_factory is not MISSING:
            value = f"{factory}()"
        else:
            continue
        slot = cls.__dict__.get(f.name)
        if frozen and isinstance(slot, MemberDescriptorType):
            # The slot's own setter: what object.__setattr__ finds after looking the name
            # up on the class, without the lookup (~30 ns a field; a delivery builds five
            # frozen records).
            names[f"__record_set_{f.name}__"] = slot.__set__
            body.append(f"  __record_set_{f.name}__(self, {value})")
        elif frozen:
            body.append(f"  __record_object_setattr__(self, {f.name!r}, {value})")
        else:
            body.append(f"  self.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("  self.__post_init__()")
    source = f"def __init__({', '.join(params)}):\n" + ("\n".join(body) or "  pass") + "\n"
    exec(compile(source, f"<record {cls.__module__}.{cls.__qualname__}>", "exec"), names)  # noqa: S102 - our own source, as dataclasses does
    init: Callable[..., None] = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {f.name: f.type for f in fields if f.init} | {"return": None}
    return init


@reprlib.recursive_repr()  # a record inside itself shows as ``...``, as @dataclass's does
def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_repr__)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: Any) -> Any:  # a bool, or NotImplemented
    if other.__class__ is self.__class__:
        key = self.__record_key__
        return key(self) == key(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(self.__record_hash_key__(self))


def _frozen_setattr(self: Any, name: str, value: object) -> None:
    owner = self.__record_owner__  # as @dataclass: a plain subclass may add attributes
    if type(self) is owner or name in owner.__record_names__:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")
    super(owner, self).__setattr__(name, value)


def _frozen_delattr(self: Any, name: str) -> None:
    owner = self.__record_owner__
    if type(self) is owner or name in owner.__record_names__:
        raise FrozenInstanceError(f"cannot delete field {name!r}")
    super(owner, self).__delattr__(name)


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, f.name) for f in dataclasses.fields(self)]


def _setstate(self: Any, state: list[Any]) -> None:
    for f, value in zip(dataclasses.fields(self), state, strict=False):
        object.__setattr__(self, f.name, value)
