"""Accounts file parsing (the seed's baresip format) and redaction of every *pass* value."""

import pytest

from sipmediagw.accounts import load_accounts, parse_account_line, parse_accounts
from sipmediagw.errors import ConfigError, FileLineError

SEED_LINE = ("<sip:user@domain;transport=tcp>;auth_pass=pass;answermode=auto;medianat=turn;"
             "stunserver=turn:turnserver.org:3478;stunuser=username;stunpass=password")


def test_seed_example_line():
    account = parse_account_line(SEED_LINE)
    assert (account.user, account.domain, account.transport) == ("user", "domain", "tcp")
    assert account.sip_uri == "sip:user@domain"
    assert account.params["answermode"] == "auto" and account.params["stunserver"] == "turn:turnserver.org:3478"
    assert account.line == SEED_LINE  # the full line goes to the container


def test_secrets_are_redacted_everywhere_shown():
    line = ("<sip:user@domain;transport=tcp>;auth_pass=Qx7-auth;answermode=auto;stunuser=username;"
            "stunpass=Zy9-stun")
    account = parse_account_line(line)
    shown = [account.redacted_line(), str(account), repr(account), str(account.redacted_params), f"{[account]}"]
    for text in shown:
        assert "Qx7-auth" not in text and "Zy9-stun" not in text, text
    assert "auth_pass=***" in account.redacted_line() and "stunpass=***" in account.redacted_line()
    assert account.redacted_params["stunuser"] == "username"
    assert "sip:user@domain" in repr(account)  # still says which account it is


@pytest.mark.parametrize("typo", ["auth_pass:Hunter-2", "auth_pass Hunter-2", "auth pass=Hunter-2",
                                  "auth_pass:'Hunter-2'", '"auth_pass": "Hunter-2"'])
def test_a_malformed_parameter_is_named_but_never_echoed(typo):
    with pytest.raises(FileLineError) as caught:
        parse_account_line(f"<sip:gw@example.org>;answermode=auto;{typo}", "accounts", 7)
    message = str(caught.value)
    assert "Hunter-2" not in message and "accounts:7" in message and "malformed" in message


def test_display_name_port_and_default_transport():
    account = parse_account_line('"Room 1" <sip:gw1@sip.example.org:5070>;answermode=auto')
    assert account.display_name == "Room 1"
    assert (account.domain, account.transport, account.sip_uri) == ("sip.example.org:5070", "udp",
                                                                     "sip:gw1@sip.example.org:5070")


def test_comments_and_blank_lines_are_ignored_and_line_numbers_kept():
    text = "# header\n\n<sip:a@h>;auth_pass=x\n   \n  # indented comment\n<sip:b@h;transport=tls>\n"
    accounts = parse_accounts(text, "acc")
    assert [(a.user, a.line_no) for a in accounts] == [("a", 3), ("b", 6)]


@pytest.mark.parametrize("line,needle", [
    ("sip:user@domain;auth_pass=x", "angle brackets"),
    ("<user@domain>", "sip:user@domain"),
    ("<sip:domain>", "sip:user@domain"),
    ("<sip:user:secret@domain>", "auth_pass"),
    ("<sip:user@bad domain>", "invalid SIP domain"),
    ("<sip:user@domain;transport=carrier-pigeon>", "unknown transport"),
    ("<sip:user@domain>auth_pass=x", "must start with ';'"),
    ("<sip:user@domain>;=x", "malformed account parameter"),
    ("<sip:user@domain>;a=1;a=2", "given twice"),
])
def test_malformed_lines_name_file_and_line(line, needle):
    with pytest.raises(FileLineError) as caught:
        parse_accounts(f"# c\n{line}\n", "/etc/sipmediagw/accounts")
    assert str(caught.value).startswith("/etc/sipmediagw/accounts:2: ")
    assert needle in str(caught.value)
    assert "secret" not in str(caught.value)


def test_malformed_param_message_does_not_leak_the_password():
    with pytest.raises(FileLineError) as caught:
        parse_accounts("<sip:u@d>;auth pass=hunter2\n", "f")
    assert "hunter2" not in str(caught.value)


def test_duplicate_account_is_an_error():
    with pytest.raises(FileLineError, match=r"f:2: sip:a@h is already used on line 1"):
        parse_accounts("<sip:a@h>\n<sip:a@h;transport=tcp>\n", "f")


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="accounts.example"):
        load_accounts(tmp_path / "accounts")


def test_shipped_example_parses():
    from pathlib import Path
    accounts = load_accounts(Path(__file__).resolve().parents[2] / "baresip" / "accounts.example")
    assert len(accounts) >= 2 and len({a.sip_uri for a in accounts}) == len(accounts)


def test_the_same_account_spelled_differently_is_a_duplicate():
    with pytest.raises(FileLineError, match=r"f:2: sip:a@h:5060 is already used on line 1"):
        parse_accounts("<sip:a@h>\n<sip:a@H:5060>\n", "f")
    assert len(parse_accounts("<sip:a@h>\n<sip:a@h:5070>\n<sip:A@h>\n", "f")) == 3


def test_a_password_holding_a_semicolon_is_not_echoed_as_the_next_parameter() -> None:
    # found by hypothesis (test_properties.py): `pass = ;A000:` split at ';' made the password's tail a "parameter"
    with pytest.raises(FileLineError) as caught:
        parse_account_line("<sip:gw@example.org;transport=udp;auth_pass=;Hunter2:x;regint=60>", "accounts", 1)
    assert "Hunter2" not in str(caught.value) and "(number 3)" in str(caught.value)
