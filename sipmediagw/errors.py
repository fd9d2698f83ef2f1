"""Domain errors. The CLI turns each into a one-line message on stderr and a non-zero exit code."""

from __future__ import annotations

from .redaction import redact


class SipMediaGwError(Exception):
    """Base class of every error the user should see as a plain message (no traceback). The message is redacted
    when the error is made: whatever input it quotes, no secret travels in it (str, repr, logs, tracebacks)."""

    exit_code = 1

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(redact(str(message)), *args)


class ConfigError(SipMediaGwError):
    """A configuration value or file is invalid."""

    exit_code = 2


class FileLineError(ConfigError):
    """A problem at a given line of a given file (accounts file, YAML config...)."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        self.message = redact(message)
        super().__init__(f"{path}:{line}: {message}")


class ValidationError(ConfigError):
    """A user-supplied value (room name, gateway name...) is not acceptable."""


class ResourceError(SipMediaGwError):
    """The host lacks something a gateway needs (slot, account, CPU/memory headroom)."""

    exit_code = 3


class GatewayNotFound(SipMediaGwError):
    """No gateway of that name exists."""

    exit_code = 4


class GatewayExists(SipMediaGwError):
    """A gateway of that name already exists."""

    exit_code = 5


class DockerUnavailable(SipMediaGwError):
    """The Docker daemon cannot be reached, or the image is missing."""

    exit_code = 6


class LaunchFailed(SipMediaGwError):
    """The gateway container started but never became ready (it has been removed)."""

    exit_code = 7


class DialFailed(SipMediaGwError):
    """`dial`: the call did not come about (busy, declined, not found, no answer, unreachable) or its room could not
    be joined; the gateway is ready again. `sip_status` is the callee's final response, e.g. ``486 Busy Here``."""

    exit_code = 8

    def __init__(self, message: str, sip_status: str | None = None, result: dict | None = None) -> None:
        super().__init__(message)
        self.sip_status = sip_status
        self.result = result or {}


class GatewayNotReady(SipMediaGwError):
    """`dial`: the gateway cannot place a call now (not running, starting, in a call, not registered)."""

    exit_code = 9
