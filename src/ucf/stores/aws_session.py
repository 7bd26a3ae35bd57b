"""The boto3 session every AWS client of the process is made from (DynamoDB, Secrets Manager, SQS…).

A new ``boto3.session.Session()`` starts from nothing: it parses botocore's
endpoint and partition data, its retry and default-configuration files, the
shared config files and the credential chain again, and only then builds the
client. A client made from a session that already did that costs a small
fraction of it (measured on a 2-core machine: 35–55 ms of CPU for a client in
a new session, ~7 ms in an existing one). A Lambda function makes two or three
clients on its first invocation (the store, the secret store, the poll queue
or the admin token), so sharing one session is a large part of the cold start
(``bench/coldstart.py``).

boto3 sessions are not safe to *create clients from* on several threads at
once, so creation is serialised here; the clients themselves are thread-safe.
The session belongs to the AWS environment it was made for (the ``AWS_*``
variables): when those change — a test switching credentials or endpoints, a
profile chosen at run time — the next client comes from a new session, as it
did when every client had a session of its own.

Each client also loads its CA bundle once, not at every new connection: botocore
hands urllib3 the bundle's path for each HTTPS connection it opens, and urllib3
loads it into the pool's shared SSL context every time (16 ms of CPU a
connection for certifi's bundle here; a cold poll worker opens several
DynamoDB connections side by side). :class:`_CaLoadedOnce` loads it into that
context the first time and gives urllib3 no path after that; verification
is unchanged (the same context, the same certificates, ``CERT_REQUIRED``). A
pool behind an ``https://`` proxy that has no CA of its own keeps the path, which
urllib3 verifies the proxy against (:func:`_proxy_reads_path`).
"""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["aws_client"]

_lock = threading.Lock()
_session: Any = None
_session_environ: dict[str, str] | None = None


def _aws_environ() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name.startswith("AWS_")}


def aws_client(service: str, **options: Any) -> Any:
    """``boto3.session.Session().client(service, **options)``, from the process's shared session.

    The session is botocore's own: boto3's adds resource classes and S3
    transfers on top of it, which ucf does not use, and importing boto3 for
    them (s3transfer, multiprocessing…) cost each Lambda cold start ~10 ms
    (``bench/coldstart.py``). The clients are the same objects either way.

    Raises what boto3 raises (``NoRegionError``, ``ValueError`` for a malformed
    endpoint…), so callers map errors exactly as before.
    """
    # Here, not at module level: importing ucf never loads the AWS SDK.
    import botocore.session

    global _session, _session_environ
    environ = _aws_environ()
    with _lock:
        if _session is None or environ != _session_environ:
            from ucf.stores.aws_data import data_loader

            session = botocore.session.Session()
            # Checks a service's name without listing all ~450: see ucf.stores.aws_data.
            session.register_component("data_loader", data_loader(session))
            _session, _session_environ = session, environ
        client = _session.create_client(service, **options)
    _load_ca_bundle_once(client)
    return client


_ca_lock = threading.Lock()


def _load_ca_bundle_once(client: Any) -> None:
    """Make the client's HTTP session a :class:`_CaLoadedOnce` (same state, one method
    more), when it is botocore's own ``URLLib3Session`` as ucf knows it; otherwise left
    as it is, loading the bundle per connection as before."""
    from botocore.httpsession import URLLib3Session

    endpoint = getattr(client, "_endpoint", None)
    http = getattr(endpoint, "http_session", None)
    if type(http) is URLLib3Session and hasattr(http, "_setup_ssl_cert"):
        http.__class__ = _ca_loaded_once_class()


def _ca_loaded_once_class() -> type[Any]:
    global _CaLoadedOnce
    if _CaLoadedOnce is None:
        from botocore.httpsession import URLLib3Session

        class CaLoadedOnce(URLLib3Session):  # type: ignore[misc]
            """botocore's session, loading its CA bundle into an SSL context only once."""

            def _setup_ssl_cert(self, conn: Any, url: str, verify: Any) -> None:
                super()._setup_ssl_cert(conn, url, verify)
                path = conn.ca_certs
                context = getattr(conn, "conn_kw", {}).get("ssl_context")
                if not isinstance(path, str) or context is None or _proxy_reads_path(conn):
                    return
                loaded: dict[int, tuple[Any, str]] = self.__dict__.setdefault("_ucf_ca_loaded", {})
                with _ca_lock:
                    known = loaded.get(id(context))
                    if known is None or known[0] is not context or known[1] != path:
                        try:
                            context.load_verify_locations(path)
                        except (OSError, ValueError):
                            return  # urllib3 tries again, and fails the request as before
                        loaded[id(context)] = (context, path)
                conn.ca_certs = None  # loaded already: urllib3 would load it again

        _CaLoadedOnce = CaLoadedOnce
    return _CaLoadedOnce


_CaLoadedOnce: type[Any] | None = None


def _proxy_reads_path(pool: Any) -> bool:
    """Whether urllib3 verifies the pool's HTTPS proxy against the bundle's *path*.

    An ``https://`` proxy without a context of its own (botocore makes one only for
    ``proxy_ca_bundle`` or ``proxy_client_cert``) is verified in a new SSL context
    urllib3 loads from the pool's ``ca_certs``; given none, it loads the system's
    certificates instead, and a proxy trusted through ``AWS_CA_BUNDLE`` (a corporate
    proxy's private CA) failed every request. Such a pool keeps the path: the bundle
    is loaded at each connection, as botocore does.
    """
    proxy = getattr(pool, "proxy", None)
    if proxy is None or getattr(proxy, "scheme", None) != "https":
        return False
    return getattr(getattr(pool, "proxy_config", None), "ssl_context", None) is None
