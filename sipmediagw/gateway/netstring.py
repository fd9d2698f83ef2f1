"""Netstring codec (``LEN:PAYLOAD,``), the framing of baresip's ctrl_tcp socket.

The decoder is incremental: TCP hands us arbitrary chunks (half a message, several messages, or bytes that are not a
netstring at all), so it keeps a buffer, emits every complete payload, and on garbage drops one byte, reports it, and
rescans from the next digit. Dropping a single byte (instead of the whole bad frame) means a valid message that a
bogus length prefix had swallowed is still found on the rescan.

Stdlib only: this module runs inside the gateway container.
"""

from __future__ import annotations

from typing import Callable

#: largest payload accepted by default; baresip events (even CALL_RTCP with stats) are a few kB
DEFAULT_MAX_LENGTH = 1 << 20

GarbageSink = Callable[[str], None]


def encode(payload: bytes) -> bytes:
    """Frame `payload` as one netstring."""
    return b"%d:%s," % (len(payload), payload)


class NetstringDecoder:
    """Incremental netstring decoder that survives partial reads, several messages per read and garbage.

    `on_garbage` is called with a short description each time bytes are discarded; `garbage_events` counts them.
    """

    def __init__(self, *, max_length: int = DEFAULT_MAX_LENGTH, on_garbage: GarbageSink | None = None) -> None:
        if max_length < 1:
            raise ValueError("max_length must be positive")
        self.max_length = max_length
        self._max_digits = len(str(max_length))
        self._on_garbage = on_garbage
        self._buffer = bytearray()
        self.garbage_events = 0

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add `data` and return every payload now complete, in order."""
        self._buffer += data
        messages: list[bytes] = []
        while self._buffer:
            outcome = self._parse_one()
            if outcome is None:  # incomplete: wait for more bytes
                break
            if isinstance(outcome, str):
                self._resync(outcome)
                continue
            messages.append(outcome)
        return messages

    def _parse_one(self) -> bytes | str | None:
        """One frame at the start of the buffer: its payload, an error description (str), or None if incomplete."""
        buf = self._buffer
        colon = -1
        for index in range(min(len(buf), self._max_digits + 1)):
            byte = buf[index]
            if byte == 0x3A:  # ':'
                colon = index
                break
            if not 0x30 <= byte <= 0x39:
                return f"unexpected byte {bytes([byte])!r} in length prefix"
        if colon == -1:
            if len(buf) > self._max_digits:
                return f"length prefix longer than {self._max_digits} digits"
            return None
        if colon == 0:
            return "empty length prefix"
        if colon > 1 and buf[0] == 0x30:
            return "length prefix with a leading zero"
        length = int(buf[:colon])
        if length > self.max_length:
            return f"length {length} exceeds the limit of {self.max_length}"
        end = colon + 1 + length
        if len(buf) <= end:
            return None
        if buf[end] != 0x2C:  # ','
            return f"missing ',' after a {length}-byte payload"
        payload = bytes(buf[colon + 1 : end])
        del buf[: end + 1]
        return payload

    def _resync(self, reason: str) -> None:
        """Drop the first byte, then everything up to the next digit (the only byte a frame can start with)."""
        buf = self._buffer
        skip = 1
        while skip < len(buf) and not 0x30 <= buf[skip] <= 0x39:
            skip += 1
        self.garbage_events += 1
        if self._on_garbage is not None:
            self._on_garbage(f"netstring: discarded {skip} byte(s): {reason}")
        del buf[:skip]
