"""Failed authentication per client address, with exponential backoff (API token and login).

The admin token is long and random, but nothing used to stop a client from
trying hundreds of guesses a second. OWASP's authentication guidance asks for
a throttle that slows guessing without locking the genuine user out for long:

- the first ``free_failures`` wrong tokens from an address cost nothing (typos);
- after that each failure closes the address for twice as long as the one
  before (1 s, 2 s, 4 s … at most ``max_delay``), and while it is closed *every*
  attempt is refused with 429 and ``Retry-After`` before the token is looked
  at — otherwise a guesser would simply keep going;
- a success, or ``forget_after`` seconds without a failure, forgets the address.

IPv6 clients are counted per /64 (one host usually owns the whole prefix and
could otherwise rotate addresses for free). The table is bounded: past
``max_clients`` addresses the least recently failed one is forgotten.
The count lives in this process; several workers each keep their own, which
multiplies the rate a guesser gets by the number of workers and no more.
``ucf serve`` is one process, so on the embedded default the count is the
service's. It is not in the store: :meth:`check` runs on every API request,
before the token, and a store read each time is not worth a multiplier.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from ucf.core.client_address import client_key
from ucf.core.records import datarecord
from ucf.service.webhooks import RateLimitExceeded

__all__ = ["FailedAuthThrottle", "TooManyAttempts", "client_key"]

FREE_FAILURES: Final = 5
BASE_DELAY_SECONDS: Final = 1.0
MAX_DELAY_SECONDS: Final = 300.0
FORGET_AFTER_SECONDS: Final = 900.0
MAX_CLIENTS: Final = 10_000


class TooManyAttempts(RateLimitExceeded):
    code = "too_many_attempts"


@datarecord(frozen=False)
class _Failures:
    count: int = 0
    last: float = 0.0
    closed_until: float = 0.0


class FailedAuthThrottle:
    def __init__(
        self,
        *,
        free_failures: int = FREE_FAILURES,
        base_delay: float = BASE_DELAY_SECONDS,
        max_delay: float = MAX_DELAY_SECONDS,
        forget_after: float = FORGET_AFTER_SECONDS,
        max_clients: int = MAX_CLIENTS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = free_failures
        self._base = base_delay
        self._max = max_delay
        self._forget_after = forget_after
        self._max_clients = max_clients
        self._monotonic = monotonic
        self._clients: OrderedDict[str, _Failures] = OrderedDict()

    def _current(self, key: str, now: float) -> _Failures | None:
        record = self._clients.get(key)
        if record is not None and now - record.last > self._forget_after:
            del self._clients[key]
            return None
        return record

    def check(self, host: str | None, what: str) -> None:
        """Refuse (429) while the address is closed; call before looking at the token."""
        now = self._monotonic()
        record = self._current(client_key(host), now)
        if record is not None and record.closed_until > now:
            wait = max(1, math.ceil(record.closed_until - now))
            raise TooManyAttempts(
                f"too many wrong {what}s from this address; try again in {wait} s", wait
            )

    def failed(self, host: str | None) -> None:
        now = self._monotonic()
        key = client_key(host)
        record = self._current(key, now) or _Failures()
        record.count += 1
        record.last = now
        beyond = record.count - self._free
        if beyond > 0:
            record.closed_until = now + min(self._max, self._base * 2 ** min(beyond - 1, 30))
        self._clients[key] = record
        self._clients.move_to_end(key)
        while len(self._clients) > self._max_clients:
            self._clients.popitem(last=False)

    def succeeded(self, host: str | None) -> None:
        self._clients.pop(client_key(host), None)
