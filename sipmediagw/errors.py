"""Domain errors. The CLI turns each into a one-line message on stderr and a non-zero exit code."""

from __future__ import annotations


class SipMediaGwError(Exception):
    """Base class of every error the user should see as a plain message (no traceback)."""

    exit_code = 1


class ConfigError(SipMediaGwError):
    """A configuration value or file is invalid."""

    exit_code = 2


class FileLineError(ConfigError):
    """A problem at a given line of a given file (accounts file, YAML config...)."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
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
