"""Content decoding that never produces more than it is allowed to.

A hostile or broken upstream can send a few kilobytes that inflate to
gigabytes: gzip reaches about 1000:1, and stacking codings (``Content-Encoding:
gzip, gzip``) multiplies the ratios, so 2.6 KB became 1.5 GB in one step of
httpx's own decoder, before any size check could look at it. The decoders here
inflate at most :data:`DECODE_STEP` bytes per step (``zlib``'s ``max_length``),
so the caller's size cap is checked between steps and memory stays bounded by
the step, whatever the ratio.

Only one coding is decoded: stacked codings have no legitimate use for an API
(RFC 9110 §8.4 allows them, no provider sends them) and are refused, as are
codings we cannot bound (``br``, ``zstd``, ``compress``), so the client
advertises exactly :data:`ACCEPT_ENCODING`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Final

__all__ = [
    "ACCEPT_ENCODING",
    "DECODE_STEP",
    "DecodeFailed",
    "EncodingRefused",
    "Inflater",
    "inflater_for",
]

ACCEPT_ENCODING: Final = "gzip, deflate"
"""What the client asks for: the codings :class:`Inflater` can bound."""

DECODE_STEP: Final = 64 * 1024
"""Most bytes one decoding step may produce; the size cap is checked after each."""

_WBITS: Final = {
    "gzip": zlib.MAX_WBITS | 16,
    "x-gzip": zlib.MAX_WBITS | 16,
    "deflate": zlib.MAX_WBITS,
}


class EncodingRefused(ValueError):
    """The response's ``Content-Encoding`` is one ucf will not decode (stacked, unknown)."""


class DecodeFailed(ValueError):
    """The body is not valid data of its declared coding."""


class Inflater:
    """gzip or deflate, inflated :data:`DECODE_STEP` bytes at a time.

    ``deflate`` is meant to be zlib-wrapped (RFC 9110 §8.4.1.2) but some servers
    send raw deflate; like browsers (and httpx), the first chunk decides.
    """

    __slots__ = ("_first", "_inflate", "coding")

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._inflate = zlib.decompressobj(_WBITS[coding])
        self._first = coding == "deflate"

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of ``data``, each at most :data:`DECODE_STEP` bytes."""
        try:
            piece = self._inflate.decompress(data, DECODE_STEP)
        except zlib.error as exc:
            if not self._first:
                raise DecodeFailed(f"not valid {self.coding} data ({exc})") from None
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, no zlib header
            piece = self._decompress(data)
        self._first = False
        yield from self._drain(piece)

    def finish(self) -> Iterator[bytes]:
        """What is left once the body has ended (usually nothing: feed drained it)."""
        yield from self._drain(self._decompress(b""))
        try:
            rest = self._inflate.flush()
        except zlib.error as exc:
            raise DecodeFailed(f"not valid {self.coding} data ({exc})") from None
        if rest:
            yield rest

    def _decompress(self, data: bytes) -> bytes:
        try:
            return self._inflate.decompress(data, DECODE_STEP)
        except zlib.error as exc:
            raise DecodeFailed(f"not valid {self.coding} data ({exc})") from None

    def _drain(self, piece: bytes) -> Iterator[bytes]:
        # A full step may leave input unconsumed (unconsumed_tail) or output
        # pending inside zlib; keep stepping until a step comes back short.
        while True:
            if piece:
                yield piece
            if len(piece) < DECODE_STEP and not self._inflate.unconsumed_tail:
                return
            piece = self._decompress(self._inflate.unconsumed_tail)


def inflater_for(content_encoding: list[str]) -> Inflater | None:
    """The decoder for a response's ``Content-Encoding`` values, None for identity.

    Raises :class:`EncodingRefused` for stacked or unsupported codings; the
    message names them (they are the server's, not a secret).
    """
    codings = [c.strip().lower() for value in content_encoding for c in value.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) > 1:
        raise EncodingRefused(
            f"stacked content-codings ({', '.join(codings)}) are refused: decoding one after"
            " another multiplies a decompression bomb"
        )
    coding = codings[0]
    if coding not in _WBITS:
        raise EncodingRefused(
            f"unsupported Content-Encoding {coding[:40]!r} (ucf asks for {ACCEPT_ENCODING})"
        )
    return Inflater(coding)
