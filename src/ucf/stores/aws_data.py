"""botocore's data loader, checking a service's name without listing every service.

Before it loads a service's model, botocore's ``Loader.load_service_model``
lists every service it has data for (``list_available_services``: a directory
listing per service, ~450 of them, and a stat per API version), once for each
kind of model a client reads (the API model, the endpoint rules), only to
check that the one asked for is among them: ~11 ms of CPU on the first client
of every Lambda cold start (``bench/coldstart.py``), that boto3's own
clients pay too. Here that list is a :class:`ServiceNames`, which answers
``name in`` from that one service's directory (botocore's own
``list_api_versions``: the same answer, a test holds it for every service) and
lists everything only when read as a list (the message of an unknown
service's ``UnknownServiceError``, ``Session.get_available_services``).

Its files are read by a :class:`PlainJSONFileLoader`: botocore parses every
data file into ``OrderedDict`` objects, which costs more than twice what plain
dicts do (the 1.2 MB ``endpoints.json`` every first client reads: ~10 ms of
CPU against ~4); a dict keeps the file's key order too, and a test holds the
two readings equal, order included, for the files ucf's clients read.

Imported with the session (:mod:`ucf.stores.aws_session`), never by importing ucf.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, overload

from botocore.exceptions import DataNotFoundError
from botocore.loaders import JSONFileLoader, Loader, create_loader

__all__ = ["PlainJSONFileLoader", "ServiceLoader", "ServiceNames", "data_loader"]


class PlainJSONFileLoader(JSONFileLoader):  # type: ignore[misc]  # botocore has no type hints
    """botocore's ``JSONFileLoader``, parsing into dicts, not ``OrderedDict`` objects.

    With orjson, which ucf's log lines load anyway: it reads the 1.2 MB
    ``endpoints.json`` in ~4 ms of CPU where ``json`` takes ~6.5, and the
    clients' service models in about two thirds of the time. What orjson
    refuses and ``json`` reads (an integer beyond 64 bits, ``NaN``; no file
    botocore ships today) is read by ``json``, so the result is always
    ``json.loads``'s.
    """

    def _load_file(self, full_path: str, open_method: Callable[[str, str], IO[bytes]]) -> Any:
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as file:
            content = file.read()
        return _parse(content)


def _parse(content: bytes) -> Any:
    import orjson  # with the first data file: never by importing ucf

    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content.decode("utf-8"))


class ServiceNames(Sequence[str]):
    """The services with a ``type_name`` model: botocore's sorted list, listed on first read."""

    def __init__(self, loader: ServiceLoader, type_name: str) -> None:
        self._loader = loader
        self._type_name = type_name

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:  # the service's own directory, as the full listing would find it
            self._loader.list_api_versions(name, self._type_name)
        except DataNotFoundError:
            return False
        return True

    @functools.cached_property
    def _names(self) -> list[str]:
        return list(Loader.list_available_services(self._loader, self._type_name))

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self._names[index]

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __eq__(self, other: object) -> bool:
        return list(self) == (list(other) if isinstance(other, ServiceNames) else other)

    __hash__ = None  # type: ignore[assignment]  # a list's equality, so unhashable like one

    def __repr__(self) -> str:
        return repr(self._names)


class ServiceLoader(Loader):  # type: ignore[misc]  # botocore has no type hints
    """botocore's :class:`~botocore.loaders.Loader` with a lazy :class:`ServiceNames` list."""

    def list_available_services(self, type_name: str) -> ServiceNames:
        return ServiceNames(self, type_name)


def data_loader(session: Any) -> ServiceLoader:
    """The loader ``session`` would make (``create_loader`` with its ``data_path``), as a
    :class:`ServiceLoader` reading with a :class:`PlainJSONFileLoader`: the same search
    paths, in the same order."""
    made = create_loader(session.get_config_variable("data_path"))
    return ServiceLoader(
        extra_search_paths=made.search_paths,
        file_loader=PlainJSONFileLoader(),
        include_default_search_paths=False,
    )
