"""Gateway/room name validation and the injective, DNS-safe container name."""

import re

import pytest
from hypothesis import given, strategies as st

from sipmediagw.errors import ValidationError
from sipmediagw.names import container_name, validate_gateway_name, validate_room_name

DNS_SAFE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
gateway_names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,39}\Z")


@pytest.mark.parametrize("name", ["gw1", "my_gateway", "Room.Gateway-2", "a" * 40])
def test_good_gateway_names(name):
    assert validate_gateway_name(name) == name


@pytest.mark.parametrize("name", ["", "-gw", "gw 1", "gw/1", "a" * 41, "gw;rm -rf", "gw\n", "ünïcode"])
def test_bad_gateway_names(name):
    with pytest.raises(ValidationError, match="invalid gateway name"):
        validate_gateway_name(name)


@pytest.mark.parametrize("room", ["testRTCmediaGW", "room-1", "salle_été", "a.b~c@d+e"])
def test_good_room_names(room):
    assert validate_room_name(room) == room


@pytest.mark.parametrize("room", ["", "two words", "../etc", "a/b", "x?y=1", "r#1", "room\n", "-x", "a" * 129])
def test_bad_room_names(room):
    with pytest.raises(ValidationError, match="invalid room name"):
        validate_room_name(room)


def test_canonical_names_are_kept_readable():
    assert container_name("room-1") == "sipmediagw-room-1"
    assert container_name("My_GW") == "sipmediagw-x---4dy-5f-47-57"


def test_names_that_look_alike_do_not_collide():
    names = ["gw", "GW", "g-w", "g_w", "g.w", "x--gw", "x-2dgw"]
    assert len({container_name(n) for n in names}) == len(names)


@given(gateway_names)
def test_container_names_are_dns_safe(name):
    result = container_name(name)
    assert DNS_SAFE.match(result), result


@given(gateway_names, gateway_names)
def test_container_name_is_injective(a, b):
    if a != b:
        assert container_name(a) != container_name(b)
