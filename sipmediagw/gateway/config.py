"""GatewayConfig: what the entrypoint reads from its environment (docs/contracts.md) and the mounted account file.

Every problem is a ConfigError naming the variable (or file and line), raised before anything is started.
The account line is a secret: it is kept out of repr() and registered with the log masker.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

from ..dispatch import ENV_VAR as DISPATCH_VAR
from ..dispatch import SERVICE_USER, Rule, rules_from_json
from ..errors import ConfigError, FileLineError, ValidationError
from ..redaction import add_secret, is_secret_key
from ..room_options import from_env as options_from_env
from ..room_options import parse_secret_line
from ..room import check_base_url
from .baresip import BROWSER_REFUSED_PORTS, CTRL_PORT
from .media import KERNEL, MODES
from .request_socket import SOCKET_NAME

_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
_ACCOUNT_URI = re.compile(r"^<?(?P<uri>sips?:[^;>\s]+)")


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    """Settings of one gateway container; built by :meth:`from_env`."""

    gateway: str
    room: str | None  # the fixed room; None: a pool gateway (each call says where it goes)
    base_url: str  # the default rule's service ("" on a pool gateway that dispatches by its rules only)
    account_line: str = dataclasses.field(repr=False)
    sip_uri: str
    platform: str = "janus"
    media: str = "userspace"
    alsa_cards: tuple[int, int] | None = None
    video_device: str = "/dev/video0"
    once: bool = False
    log_dir: Path = Path("/var/log/sipmediagw")
    browsing_dir: Path = Path("/opt/sipmediagw/browsing")
    baresip_dir: Path = Path("/opt/sipmediagw/baresip")
    video_size: tuple[int, int] = (1280, 720)
    camera_size: tuple[int, int] = (640, 360)
    sip_display_size: tuple[int, int] = (1920, 1080)
    fps: int = 15
    display_name: str = "SIP gateway"
    insecure_origins: tuple[str, ...] = ()
    net_interface: str | None = None
    sip_port: int = 5060
    ctrl_port: int = CTRL_PORT  # one Chromium refuses to pages (baresip.BROWSER_REFUSED_PORTS)
    run_dir: Path = Path("/tmp/sipmediagw")
    display_base: int = 0  # room display :N, caller display :N+1 (change to run a gateway outside a container)
    dispatch: tuple[Rule, ...] = ()  # pool gateways: meeting -> room rules tried before the default
    service_user: str = "meet"  # pool gateways: the dialled user that opens the keypad menu
    # call timeouts in seconds, 0 = off (incall.py, docs/dialplan.md "Timeouts")
    alone_timeout: float = 300.0
    no_media_timeout: float = 60.0
    max_call_duration: float = 14400.0
    audio_only: bool = False  # no video at all: no caller display, no camera, no m=video, audio-only browser
    # the driver's options: plain ones from the environment, secret ones from the account's secret file
    room_options: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def request_socket(self) -> Path:
        """The request socket (request_socket.py) in the private run folder."""
        return self.run_dir / SOCKET_NAME

    @property
    def mode(self) -> str:
        """``fixed`` (launched with a room) or ``pool`` (the room comes with each call)."""
        return "pool" if self.room is None else "fixed"

    @property
    def account_user(self) -> str:
        """The user part of the gateway's own SIP address, percent-decoded (``gw1`` of ``sip:gw1@example.org``)."""
        return unquote(self.sip_uri.split(":", 1)[-1].split("@", 1)[0])

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "GatewayConfig":
        """Build the config from SIPMEDIAGW_* variables; raise ConfigError on the first bad value."""

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(f"SIPMEDIAGW_{name}")
            return value.strip() if value is not None and value.strip() != "" else default

        def required(name: str) -> str:
            value = get(name)
            if value is None:
                raise ConfigError(f"SIPMEDIAGW_{name} is required")
            return value

        room = get("ROOM")  # none: a pool gateway
        if room is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in room):
            raise ConfigError("SIPMEDIAGW_ROOM contains control characters")
        rules = rules_from_json(get("DISPATCH", "") or "", DISPATCH_VAR) if room is None else ()
        if room is None and rules:
            base_url = get("BASE_URL", "") or ""  # optional: without it, only the rules give rooms
        else:
            base_url = required("BASE_URL")
        if base_url:
            try:
                check_base_url(base_url)
            except ValidationError:
                raise ConfigError(f"SIPMEDIAGW_BASE_URL must be an http(s) URL, got {base_url!r}") from None
        parts = urlsplit(base_url)
        service_user = get("SERVICE_USER", "meet") or "meet"
        if not SERVICE_USER.fullmatch(service_user):
            raise ConfigError(f"SIPMEDIAGW_SERVICE_USER must be a SIP user part, got {service_user!r}")
        media = get("MEDIA", "userspace")
        if media not in MODES:
            raise ConfigError(f"SIPMEDIAGW_MEDIA must be one of {', '.join(MODES)}, got {media!r}")
        alsa_cards = _cards(get("ALSA_CARDS"))
        if media == KERNEL and alsa_cards is None:
            raise ConfigError("SIPMEDIAGW_ALSA_CARDS=A,B is required in kernel media mode")
        once = get("ONCE", "0")
        if once not in ("0", "1"):
            raise ConfigError(f"SIPMEDIAGW_ONCE must be 0 or 1, got {once!r}")
        audio_only = get("AUDIO_ONLY", "0")
        if audio_only not in ("0", "1"):
            raise ConfigError(f"SIPMEDIAGW_AUDIO_ONLY must be 0 or 1, got {audio_only!r}")
        account_file = Path(get("ACCOUNT_FILE", "/run/secrets/sipmediagw-account"))  # type: ignore[arg-type]
        account_line, sip_uri, secret_options = read_account_file(account_file)
        room_options = {**options_from_env(get("ROOM_OPTIONS", "") or ""), **secret_options}
        insecure = get("INSECURE_ORIGINS")
        if insecure is not None:
            origins = tuple(o.strip() for o in insecure.split(",") if o.strip())
        else:
            # getUserMedia needs a secure context: a plain-http room (the test bed's Janus page) must be whitelisted,
            # for the default service and for every service a dispatch rule names.
            urls = [base_url] * (parts.scheme == "http") + [rule.base_url for rule in rules]
            origins = tuple(dict.fromkeys(f"http://{urlsplit(url).netloc}" for url in urls
                                          if urlsplit(url).scheme == "http"))
        return cls(
            gateway=get("GATEWAY") or socket.gethostname(),
            room=room,
            base_url=base_url,
            account_line=account_line,
            sip_uri=sip_uri,
            platform=get("PLATFORM", "janus"),  # type: ignore[arg-type]
            media=media,  # type: ignore[arg-type]
            alsa_cards=alsa_cards,
            video_device=get("VIDEO_DEVICE", "/dev/video0"),  # type: ignore[arg-type]
            once=once == "1",
            log_dir=Path(get("LOG_DIR", "/var/log/sipmediagw")),  # type: ignore[arg-type]
            browsing_dir=Path(get("BROWSING_DIR", "/opt/sipmediagw/browsing")),  # type: ignore[arg-type]
            baresip_dir=Path(get("BARESIP_DIR", "/opt/sipmediagw/baresip")),  # type: ignore[arg-type]
            video_size=_size("VIDEO_SIZE", get("VIDEO_SIZE", "1280x720")),  # type: ignore[arg-type]
            camera_size=_size("CAMERA_SIZE", get("CAMERA_SIZE", "640x360")),  # type: ignore[arg-type]
            sip_display_size=_size("SIP_DISPLAY_SIZE", get("SIP_DISPLAY_SIZE", "1920x1080")),  # type: ignore[arg-type]
            fps=_int("FPS", get("FPS", "15"), 1, 60),  # type: ignore[arg-type]
            display_name=get("DISPLAY_NAME", "SIP gateway"),  # type: ignore[arg-type]
            insecure_origins=origins,
            net_interface=get("NET_INTERFACE"),
            sip_port=_int("SIP_PORT", get("SIP_PORT", "5060"), 1, 65534),  # type: ignore[arg-type]
            ctrl_port=_ctrl_port(get("CTRL_PORT", str(CTRL_PORT))),  # type: ignore[arg-type]
            run_dir=Path(get("RUN_DIR", "/tmp/sipmediagw")),  # type: ignore[arg-type]
            display_base=_int("DISPLAY_BASE", get("DISPLAY_BASE", "0"), 0, 5000),  # type: ignore[arg-type]
            dispatch=rules,
            room_options=room_options,
            service_user=service_user,
            alone_timeout=_seconds("ALONE_TIMEOUT", get("ALONE_TIMEOUT", "300")),  # type: ignore[arg-type]
            no_media_timeout=_seconds("NO_MEDIA_TIMEOUT", get("NO_MEDIA_TIMEOUT", "60")),  # type: ignore[arg-type]
            max_call_duration=_seconds("MAX_CALL_DURATION", get("MAX_CALL_DURATION", "14400")),  # type: ignore[arg-type]
            audio_only=audio_only == "1",
        )


def read_account_file(path: Path) -> tuple[str, str, dict[str, str]]:
    """Return (account line, SIP URI, secret room options) of the gateway's secret file `path`: its account line
    (the one line that is not a comment nor a ``room-secret KEY=VALUE`` line) and its secret room options
    (room_options.secret_lines); every secret is registered for masking."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: account file not found (mount it as the sipmediagw-account secret)") from None
    except PermissionError:
        raise ConfigError(f"{path}: account file not readable by uid {os.getuid()}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: account file is not UTF-8 text") from None
    found: tuple[str, str] | None = None
    secrets: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        secret = parse_secret_line(line, f"{path}:{number}")
        if secret is not None:
            secrets[secret[0]] = secret[1]
            continue
        match = _ACCOUNT_URI.match(line)
        if not match or "@" not in match["uri"]:
            raise FileLineError(str(path), number, "expected a baresip account line like <sip:user@domain>;auth_pass=...")
        if line.startswith("<") and ">" not in line:
            raise FileLineError(str(path), number, "unterminated <sip:...> address")
        for param in line.split(";"):  # register secret values so they are masked even without their key
            key, sep, value = param.partition("=")
            if sep and is_secret_key(key.strip()):
                add_secret(value.strip().strip('"'))
        if found is not None:
            raise FileLineError(str(path), number, "more than one account line (one gateway = one account)")
        found = (line, match["uri"])
    if found is not None:
        return found[0], found[1], secrets
    raise ConfigError(f"{path}: no account line (file is empty or only comments)")


def _size(name: str, value: str) -> tuple[int, int]:
    match = _SIZE.match(value)
    if not match:
        raise ConfigError(f"SIPMEDIAGW_{name} must look like 1280x720, got {value!r}")
    width, height = int(match[1]), int(match[2])
    if width % 2 or height % 2 or width < 16 or height < 16:
        raise ConfigError(f"SIPMEDIAGW_{name} must be even and at least 16x16, got {value!r}")
    return width, height


def _int(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"SIPMEDIAGW_{name} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"SIPMEDIAGW_{name} must be between {low} and {high}, got {number}")
    return number


def _ctrl_port(value: str) -> int:
    """baresip's ctrl_tcp port: only one a page in Chromium cannot connect to (it would evict the supervisor)."""
    port = _int("CTRL_PORT", value, 1, 65535)
    if port not in BROWSER_REFUSED_PORTS:
        choices = ", ".join(str(p) for p in sorted(BROWSER_REFUSED_PORTS) if p > 1024)
        raise ConfigError(f"SIPMEDIAGW_CTRL_PORT must be a port Chromium refuses to pages, or a room page could take "
                          f"baresip's single control connection: one of {choices} (or below 1024), got {port}")
    return port


def _seconds(name: str, value: str) -> float:
    """A timeout in seconds: a number >= 0 (0 turns it off), at most a week."""
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"SIPMEDIAGW_{name} must be a number of seconds, got {value!r}") from None
    if not 0 <= number <= 7 * 86400:  # also refuses nan and inf
        raise ConfigError(f"SIPMEDIAGW_{name} must be between 0 (off) and 604800 seconds, got {value!r}")
    return number


def _cards(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts[0] == parts[1]:
        raise ConfigError(f"SIPMEDIAGW_ALSA_CARDS must be two different card indices like 0,1, got {value!r}")
    return int(parts[0]), int(parts[1])
