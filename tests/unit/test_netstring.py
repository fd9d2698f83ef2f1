"""Netstring codec: round trip under any chunking, garbage never crashes and is resynced past."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipmediagw.gateway.netstring import NetstringDecoder, encode

payloads = st.lists(st.binary(max_size=300), max_size=12)
json_like = st.lists(
    st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=20), st.integers(), st.booleans()), max_size=4)
    .map(lambda d: __import__("json").dumps(d).encode()),
    min_size=1,
    max_size=8,
)
# garbage that cannot start a frame: no ASCII digit anywhere
no_digit_garbage = st.binary(min_size=1, max_size=60).map(lambda b: bytes(c for c in b if not 0x30 <= c <= 0x39) or b"x")


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split `data` at the given (unsorted, possibly repeated) positions."""
    points = sorted({c % (len(data) + 1) for c in cuts}) if data else []
    chunks, start = [], 0
    for point in points + [len(data)]:
        chunks.append(data[start:point])
        start = point
    return chunks


def decode_all(decoder: NetstringDecoder, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def test_encode_examples() -> None:
    assert encode(b"") == b"0:,"
    assert encode(b'{"a":1}') == b'7:{"a":1},'


def test_several_messages_in_one_read_and_one_message_byte_by_byte() -> None:
    decoder = NetstringDecoder()
    assert decoder.feed(b"3:abc,0:,5:hello,") == [b"abc", b"", b"hello"]
    stream = encode(b"split across reads")
    got = [m for i in range(len(stream)) for m in decoder.feed(stream[i : i + 1])]
    assert got == [b"split across reads"]
    assert decoder.pending == 0


@given(payloads, st.lists(st.integers(min_value=0, max_value=10_000), max_size=20))
def test_round_trip_under_arbitrary_chunking(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode(m) for m in messages)
    decoder = NetstringDecoder()
    assert decode_all(decoder, chunked(stream, cuts)) == messages
    assert decoder.pending == 0
    assert decoder.garbage_events == 0


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0, max_value=1000), max_size=10))
def test_arbitrary_garbage_never_crashes(garbage: bytes, cuts: list[int]) -> None:
    reports: list[str] = []
    decoder = NetstringDecoder(max_length=64, on_garbage=reports.append)
    for message in decode_all(decoder, chunked(garbage, cuts)):
        assert isinstance(message, bytes) and len(message) <= 64
    assert decoder.garbage_events == len(reports)
    assert decoder.pending <= len(garbage)


@given(json_like, no_digit_garbage, st.integers(min_value=0, max_value=8), st.lists(st.integers(0, 5000), max_size=15))
def test_digit_free_garbage_between_messages_loses_nothing(
    messages: list[bytes], garbage: bytes, where: int, cuts: list[int]
) -> None:
    where %= len(messages) + 1
    stream = b"".join(encode(m) for m in messages[:where]) + garbage + b"".join(encode(m) for m in messages[where:])
    reports: list[str] = []
    decoder = NetstringDecoder(on_garbage=reports.append)
    assert decode_all(decoder, chunked(stream, cuts)) == messages
    assert reports, "garbage must be reported"
    assert all("discarded" in r for r in reports)


@given(json_like, st.integers(min_value=1, max_value=40))
def test_frame_with_a_wrong_length_is_dropped_and_the_next_message_found(messages: list[bytes], wrong: int) -> None:
    # a frame whose length prefix lies (too long): the decoder must back off byte by byte and find what follows
    bad = b"%d:%s" % (len(b"broken") + wrong, b"broken")
    # 20 trailing frames of 5 bytes: the lie (at most 40 bytes too long) can swallow at most 9 of them
    stream = bad + b"".join(encode(m) for m in messages) + encode(b"{}") * 20
    decoder = NetstringDecoder(max_length=4096)
    got = decoder.feed(stream)
    # the lying frame may swallow following frames whole when a ',' happens to sit where it says it ends
    # (undetectable by design); the stream must still be back in step for the trailing messages
    assert got[-8:] == [b"{}"] * 8
    assert decoder.pending == 0


@pytest.mark.parametrize(
    "bad, reason",
    [
        (b"x3:abc,", "unexpected byte"),
        (b":abc,", "empty length prefix"),
        (b"03:abc,", "leading zero"),
        (b"3:abcX", "missing ','"),
        (b"99999999999:", "longer than"),
        (b"2000:", "exceeds the limit"),
    ],
)
def test_garbage_reasons_are_reported(bad: bytes, reason: str) -> None:
    reports: list[str] = []
    decoder = NetstringDecoder(max_length=1024, on_garbage=reports.append)
    decoder.feed(bad)
    assert any(reason in r for r in reports), reports


def test_resync_after_garbage_keeps_following_message() -> None:
    reports: list[str] = []
    decoder = NetstringDecoder(on_garbage=reports.append)
    assert decoder.feed(b'hello world 7:{"a":1},') == [b'{"a":1}']
    assert len(reports) == 1 and "discarded 12 byte(s)" in reports[0]
