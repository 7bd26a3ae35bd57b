"""Pick the secret store from a URL, the way the service and CLI configure it.

URL forms (``UCF_SECRET_STORE``; unset means ``local:``):

``local:``
    Encrypted ``secrets.db`` and ``master.key`` in the data directory (the same
    one the main store uses: ``$UCF_DATA_DIR``, else ``$XDG_DATA_HOME/ucf``,
    else ``~/.local/share/ucf``).
``local:DIR`` / ``local:///abs/dir`` / ``local:~/dir``
    The same two files in ``DIR`` (relative to the working directory, like
    ``sqlite:`` URLs), e.g. to keep secrets on a volume with its own permissions
    and backups.
``aws-secretsmanager://?region=eu-west-1``
    AWS Secrets Manager. Optional query parameters: ``endpoint`` (a
    LocalStack/moto URL), ``prefix`` (secret name prefix, default ``ucf/``),
    ``max_attempts`` (retries on throttling, default 4). Credentials come from
    the standard AWS chain (environment, profile, IAM role), never the URL.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ucf.stores.secrets.base import SecretStore, SecretStoreConfigError
from ucf.stores.url import default_data_dir

SECRET_STORE_ENV = "UCF_SECRET_STORE"  # noqa: S105 (a variable name, not a secret)
DEFAULT_SECRET_STORE_URL = "local:"  # noqa: S105

_Opener = Callable[[str, Path, Mapping[str, str]], Awaitable[SecretStore]]


def local_directory(url: str, data_dir: Path) -> Path:
    """The directory a ``local:`` URL names: the data dir, or the path after ``local:``."""
    parts = urlsplit(url)
    if parts.netloc or parts.query or parts.fragment:
        raise SecretStoreConfigError(
            f"the local secret store URL {url!r} has a host, query or fragment",
            "use 'local:' or 'local:/path/to/dir'",
        )
    return Path(parts.path).expanduser() if parts.path else data_dir


async def _open_local(url: str, data_dir: Path, env: Mapping[str, str]) -> SecretStore:
    from ucf.stores.secrets.local import LocalSecretStore

    return await LocalSecretStore.open(local_directory(url, data_dir), env=env)


_AWS_PARAMS = ("region", "endpoint", "prefix", "max_attempts")


async def _open_aws(url: str, data_dir: Path, env: Mapping[str, str]) -> SecretStore:
    from ucf.stores.secrets.aws import DEFAULT_MAX_ATTEMPTS, DEFAULT_PREFIX, AwsSecretsManagerStore

    parts = urlsplit(url)
    if parts.netloc or parts.path.strip("/"):
        raise SecretStoreConfigError(
            "the AWS Secrets Manager URL takes its settings as query parameters",
            "write it as aws-secretsmanager://?region=…&endpoint=…",
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(_AWS_PARAMS))
    if unknown:
        raise SecretStoreConfigError(
            f"unknown parameter(s) {', '.join(unknown)} in the AWS Secrets Manager URL",
            f"the URL accepts {', '.join(_AWS_PARAMS)}",
        )
    settings = {name: values[-1] for name, values in query.items()}
    attempts_text = settings.get("max_attempts", str(DEFAULT_MAX_ATTEMPTS))
    if not attempts_text.isdigit() or not 1 <= int(attempts_text) <= 10:
        raise SecretStoreConfigError(
            f"max_attempts={attempts_text!r} in the AWS Secrets Manager URL is not a number from 1 to 10",
            "use e.g. max_attempts=4",
        )
    return await AwsSecretsManagerStore.connect(
        region=settings.get("region") or None,
        endpoint_url=settings.get("endpoint") or None,
        prefix=settings.get("prefix", DEFAULT_PREFIX),
        max_attempts=int(attempts_text),
    )


_OPENERS: dict[str, _Opener] = {"local": _open_local, "aws-secretsmanager": _open_aws}


async def open_secret_store(
    url: str | None = None, *, data_dir: Path | None = None, env: Mapping[str, str] | None = None
) -> SecretStore:
    """Open the secret store named by ``url``, else ``UCF_SECRET_STORE``, else ``local:``.

    ``env`` (default ``os.environ``) also supplies ``UCF_MASTER_KEY`` /
    ``UCF_MASTER_KEY_FILE`` and the default data directory.
    """
    env = os.environ if env is None else env
    data_dir = default_data_dir(env) if data_dir is None else data_dir
    url = url or env.get(SECRET_STORE_ENV) or DEFAULT_SECRET_STORE_URL
    scheme = urlsplit(url).scheme.lower()
    opener = _OPENERS.get(scheme)
    if opener is None:
        raise SecretStoreConfigError(
            f"unknown secret store URL scheme {scheme + ':' if scheme else url!r}",
            "use 'local:' or 'aws-secretsmanager://?region=…'",
        )
    return await opener(url, data_dir, env)


class DeferredSecretStore:
    """A secret store that opens on its first call (:func:`deferred_secret_store`).

    For short-lived processes that may never need a credential (a Lambda
    draining the outbox or enqueueing polls): opening the cloud store builds an
    AWS client, which such a process would pay for on every cold start and
    never use. A failed open is not remembered: the next call tries again.
    """

    def __init__(self, url: str | None, data_dir: Path | None) -> None:
        self._url = url
        self._data_dir = data_dir
        self._store: SecretStore | None = None
        self._lock = asyncio.Lock()

    async def _opened(self) -> SecretStore:
        if self._store is None:
            async with self._lock:
                if self._store is None:
                    self._store = await open_secret_store(self._url, data_dir=self._data_dir)
        return self._store

    async def put(self, ref: str | None, values: Mapping[str, str]) -> str:
        return await (await self._opened()).put(ref, values)

    async def get(self, ref: str) -> dict[str, str]:
        return await (await self._opened()).get(ref)

    async def delete(self, ref: str) -> None:
        await (await self._opened()).delete(ref)

    async def rotate(
        self, ref: str, values: Mapping[str, str], *, keep_previous: bool = True
    ) -> None:
        await (await self._opened()).rotate(ref, values, keep_previous=keep_previous)

    async def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await store.close()


def deferred_secret_store(url: str | None = None, data_dir: Path | None = None) -> SecretStore:
    """:func:`open_secret_store`, done on the store's first call instead of now."""
    return DeferredSecretStore(url, data_dir)
