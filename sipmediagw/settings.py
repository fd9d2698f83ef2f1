"""One typed settings object: built-in defaults < sipmediagw.yaml < SIPMEDIAGW_* environment < command-line flags.

The object is built once by the CLI and passed explicitly; nothing deeper reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import buildcontext
from . import dispatch as dispatching
from . import room_options
from .dispatch import Rule as DispatchRule
from .errors import ConfigError, FileLineError

ENV_PREFIX = "SIPMEDIAGW_"
CONFIG_FILE_NAME = "sipmediagw.yaml"
MEDIA_MODES = ("auto", "kernel", "userspace")
#: uid/gid of the user inside the gateway image (contract: image USER gw 10001)
CONTAINER_UID = 10001
#: bounds of the per-gateway budget, which is also each gateway's limit: Docker takes no CPU limit under 0.01 cores
#: and no memory limit under 6 MiB; no gateway starts under 64 pids (Chromium alone runs dozens of threads), and the
#: kernel's largest pid_max is 2^22
MIN_CPU, MAX_CPU = 0.01, 1024.0
MIN_MEMORY = 6 * 1024**2
MIN_PIDS, MAX_PIDS = 64, 4 * 1024**2
MAX_CONFIG_BYTES = 256 * 1024  # a settings file larger than this is a mistake (or an attack), not settings


def project_root() -> Path:
    """The source tree this package runs from (a clone, an editable install), else the current directory."""
    return buildcontext.source_checkout() or Path.cwd()


def data_dir() -> Path:
    """The folder holding the default browsing/ drivers and baresip/ template: the source tree, else the copies
    shipped inside the installed package (never the current directory: they must exist wherever the CLI runs)."""
    return buildcontext.locate().data_dir


def default_logs_dir(env: Mapping[str, str] | None = None) -> Path:
    """<source tree>/logs in a checkout; installed, the XDG state folder: site-packages is neither the operator's
    nor, often, writable."""
    root = buildcontext.source_checkout()
    if root is not None:
        return root / "logs"
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):  # the XDG spec: a relative value is invalid and must be ignored
        state = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return Path(state) / "sipmediagw" / "logs"


BACKENDS = ("auto", "engine", "swarm")


def check_constraint(text: str) -> str:
    """A swarm placement constraint as Swarm reads it (``node.labels.sipmediagw==yes``, ``node.role!=manager``),
    spaces around the operator dropped; ValueError otherwise."""
    left, op, right = text.partition("==") if "==" in text else text.partition("!=")
    left, right = left.strip(), right.strip()
    if not op or not left or not right or any(ch.isspace() for ch in left + right):
        raise ValueError(f"invalid placement constraint {text!r}: expected e.g. node.labels.sipmediagw==yes or "
                         "node.role!=manager")
    if not left.startswith(("node.", "engine.labels.")):
        raise ValueError(f"invalid placement constraint {text!r}: it must test node.* or engine.labels.*")
    return f"{left}{op}{right}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the host side needs to know; see docs/cli.md for each key."""

    image: str = "sipmediagw:latest"
    platform: str = "janus"
    base_url: str = ""
    accounts_file: Path = dataclasses.field(default_factory=lambda: project_root() / "baresip" / "accounts")
    logs_dir: Path = dataclasses.field(default_factory=default_logs_dir)
    browsing_dir: Path = dataclasses.field(default_factory=lambda: data_dir() / "browsing")
    baresip_dir: Path = dataclasses.field(default_factory=lambda: data_dir() / "baresip")
    sysroot: Path = Path("/")
    media: str = "auto"
    backend: str = "auto"  # engine | swarm | auto (swarm when the engine is a swarm manager)
    constraints: tuple[str, ...] = ()  # swarm placement constraints of gateway services
    cpu_per_gateway: float = 1.3  # cores; docs/benchmarks.md: 1.16-1.27 cores in a 640x360 <-> 720p a+v call
    memory_per_gateway: int = 768 * 1024**2  # bytes; docs/benchmarks.md: ~480 MiB cgroup peak in a call, 564 MiB seen
    pids_per_gateway: int = 512  # processes + threads; docs/resources.md: 145-180 at the peak of a call
    ready_timeout: float = 120.0  # seconds `launch` waits for the state file to say ready
    stop_timeout: int = 20  # seconds between SIGTERM and SIGKILL
    shm_size: str = "256m"
    once: bool = False  # the gateway exits after its first call (seed behaviour)
    # pool gateways: meeting -> room rules tried before the default (platform + base_url); see sipmediagw/dispatch.py
    dispatch: tuple[DispatchRule, ...] = ()
    service_user: str = "meet"  # the dialled user that opens the keypad menu on a pool gateway (besides its own)
    # call timeouts in seconds, 0 = off (docs/dialplan.md "Timeouts")
    alone_timeout: float = 300.0  # the gateway alone in the room: leave and hang up
    no_media_timeout: float = 60.0  # no RTP from the caller
    max_call_duration: float = 14400.0  # any call ends after this long
    audio_only: bool = False  # gateways without video: no caller display, no camera, no m=video (`--audio-only`)
    # the platform driver's options (docs/rooms.md): plain ones by value, secret ones by the file that holds each
    room_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    room_secrets: dict[str, Path] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.media not in MEDIA_MODES:
            raise ConfigError(f"media must be one of {', '.join(MEDIA_MODES)}, not {self.media!r}")
        # The budget is also each gateway's hard limit (launcher.container_config): Docker's own bounds apply
        if not MIN_CPU <= self.cpu_per_gateway <= MAX_CPU:  # also refuses nan and inf
            raise ConfigError(f"cpu_per_gateway must be between {MIN_CPU:g} and {MAX_CPU:g} cores, "
                              f"not {self.cpu_per_gateway}")
        if not MIN_MEMORY <= self.memory_per_gateway:
            raise ConfigError(f"memory_per_gateway must be at least 6M (Docker's smallest memory limit), "
                              f"not {self.memory_per_gateway}")
        if not MIN_PIDS <= self.pids_per_gateway <= MAX_PIDS:
            raise ConfigError(f"pids_per_gateway must be between {MIN_PIDS} and {MAX_PIDS}, "
                              f"not {self.pids_per_gateway}")
        if not 0 < self.ready_timeout <= 86400:  # also refuses nan and inf, which would wait for ever
            raise ConfigError(f"ready_timeout must be between 0 and 86400 seconds, not {self.ready_timeout}")
        for name in ("alone_timeout", "no_media_timeout", "max_call_duration"):
            value = getattr(self, name)
            if not 0 <= value <= 7 * 86400:  # also refuses nan and inf
                raise ConfigError(f"{name} must be between 0 (off) and 604800 seconds, not {value}")
        if not dispatching.SERVICE_USER.fullmatch(self.service_user):
            raise ConfigError(f"service_user must be a SIP user part (letters, digits, . _ + -), not {self.service_user!r}")


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: Any) -> int:
    """``512M``, ``1.5G``, ``1024`` (bytes) -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r} (examples: 512M, 1G)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _convert(name: str, value: Any) -> Any:
    """Turn a YAML/env/flag value into the type of field `name`; ValueError says why not."""
    if name == "memory_per_gateway":
        return parse_size(value)
    if name == "constraints":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
            raise ValueError("expected a list of placement constraints")
        return tuple(check_constraint(item) for item in items if item.strip())
    if name in ("room_options", "room_secrets"):
        return _room_options(name, value)
    if name == "dispatch":
        if isinstance(value, str):  # the environment (and a flag) carry the list as JSON, as the container gets it
            return dispatching.rules_from_json(value, dispatching.ENV_VAR)
        return dispatching.parse_rules(value)
    kind = FIELDS[name].type
    if kind == "Path":
        return Path(os.path.expanduser(str(value)))
    if kind == "float":
        return float(value)
    if kind == "int":
        if isinstance(value, bool):
            raise ValueError(f"not a whole number: {value!r}")
        try:
            return int(value)
        except OverflowError:  # int(float("inf"))
            raise ValueError(f"not a whole number: {value!r}") from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return str(value)


def _room_options(name: str, value: Any) -> dict[str, Any]:
    """`room_options` (option: value) or `room_secrets` (option: file); the environment carries either as JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            raise ValueError("expected a JSON object of option: value") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("expected a mapping of option: " + ("file" if name == "room_secrets" else "value"))
    checked: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not room_options.KEY.match(key):
            raise ValueError(f"invalid room option name {key!r} (lowercase letters, digits and '_')")
        if name == "room_secrets":
            if not isinstance(item, str) or not item.strip():
                raise ValueError(f"{key}: expected the path of the file holding the secret")
            checked[key] = Path(os.path.expanduser(item))
        else:
            if isinstance(item, (list, tuple)) or item is None:
                raise ValueError(f"{key}: expected a text, number, true/false or a mapping")
            checked[key] = item
    return checked


def config_search_path(env: Mapping[str, str]) -> list[Path]:
    """Where sipmediagw.yaml is looked for when no --config is given, first found wins."""
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME", "~"), ".config")
    return [
        Path.cwd() / CONFIG_FILE_NAME,
        Path(os.path.expanduser(xdg)) / "sipmediagw" / CONFIG_FILE_NAME,
        Path("/etc/sipmediagw") / CONFIG_FILE_NAME,
    ]


def compose_yaml_file(path: Path, what: str = "config file") -> yaml.Node | None:
    """The YAML node tree of an operator's file (`what`: how errors name it), bounded: at most MAX_CONFIG_BYTES,
    UTF-8, not nested too deeply, no anchors or aliases. The one reader of settings and YAML platforms."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)  # never more: such a file is a few hundred bytes
        text = data.decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a {what}")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise FileLineError(str(path), line, f"invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    except RecursionError:
        raise ConfigError(f"{what} {path}: YAML nested too deeply") from None
    if root is not None:
        _refuse_aliases(path, root)
    return root


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML settings file; unknown keys and bad values are errors naming the file and line."""
    root = compose_yaml_file(path)
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise FileLineError(str(path), root.start_mark.line + 1, "expected a mapping of setting: value")
    values: dict[str, Any] = {}
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1
        key = str(key_node.value).replace("-", "_")
        if key not in FIELDS:
            raise FileLineError(str(path), line, f"unknown setting {key_node.value!r} (known: {', '.join(FIELDS)})")
        raw = yaml.safe_load(yaml.serialize(value_node))
        if key == "dispatch":
            values[key] = _dispatch_rules(path, value_node, raw)
            continue
        try:
            values[key] = _convert(key, raw)
        except (TypeError, ValueError) as exc:
            raise FileLineError(str(path), line, f"{key}: {exc}") from exc
    return values


def _refuse_aliases(path: Path, root: yaml.Node) -> None:
    """A node reached twice is an alias (`*name`): settings never need one, and nested aliases expand
    exponentially (a "billion laughs" file), so none is accepted."""
    seen: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen:
            raise FileLineError(str(path), node.start_mark.line + 1, "YAML anchors and aliases (&name, *name) are "
                                "not accepted: write the value out")
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            pending.extend(part for pair in node.value for part in pair)
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)


def _dispatch_rules(path: Path, node: yaml.Node, raw: Any) -> tuple[DispatchRule, ...]:
    """The `dispatch:` list of a YAML file; each rule remembers its file:line and an error points at the bad key."""
    if raw is None:
        return ()
    if not isinstance(node, yaml.SequenceNode):
        raise FileLineError(str(path), node.start_mark.line + 1,
                            "dispatch: expected a list of rules {match, platform, base_url, room}")
    rules = []
    for item_node, item in zip(node.value, raw):
        line = item_node.start_mark.line + 1
        try:
            rules.append(dispatching.parse_rule(item, f"{path}:{line}"))
        except dispatching.RuleError as exc:
            if exc.key is not None and isinstance(item_node, yaml.MappingNode):
                line = next((k.start_mark.line + 1 for k, _v in item_node.value if k.value == exc.key), line)
            raise FileLineError(str(path), line, f"dispatch: {exc.message}") from None
    return tuple(rules)


def env_values(env: Mapping[str, str]) -> dict[str, Any]:
    """Settings from SIPMEDIAGW_<KEY> variables. Other SIPMEDIAGW_* names (the container's) are ignored."""
    values: dict[str, Any] = {}
    for name in FIELDS:
        var = ENV_PREFIX + name.upper()
        if var in env and env[var] != "":
            try:
                values[name] = _convert(name, env[var])
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"environment variable {var}: {exc}") from exc
    return values


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from defaults < YAML (`config_file`, $SIPMEDIAGW_CONFIG or the search path) < env < overrides.

    `overrides` are CLI flags; a None value means "flag not given".
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    explicit = config_file or env.get(ENV_PREFIX + "CONFIG")
    if explicit:
        path = Path(os.path.expanduser(str(explicit)))
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        values.update(read_config_file(path))
    else:
        for candidate in config_search_path(env):
            if candidate.is_file():
                values.update(read_config_file(candidate))
                break
    values.update(env_values(env))
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        try:
            values[name] = _convert(name, value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--{name.replace('_', '-')}: {exc}") from exc
    return Settings(**values)
