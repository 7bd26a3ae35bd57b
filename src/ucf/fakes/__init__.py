"""Fake upstream APIs on loopback, for the tests and for ``ucf sandbox``.

:mod:`ucf.fakes.kit` is the framework (server, routes, scripted faults);
connector fakes built on it live next to it.
"""

from ucf.fakes.kit import (
    FakeRequest,
    FakeResponse,
    FakeServer,
    Fault,
    Handler,
    TlsPair,
    endless,
    make_tls_pair,
)

__all__ = [
    "FakeRequest",
    "FakeResponse",
    "FakeServer",
    "Fault",
    "Handler",
    "TlsPair",
    "endless",
    "make_tls_pair",
]
