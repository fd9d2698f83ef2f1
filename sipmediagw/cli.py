"""The `sipmediagw` command line: Click only. Parsing, printing, and domain errors -> exit codes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__, buildcontext, dialout, dockerops
from .accounts import load_accounts
from .devices import discover
from .doctor import render_report, run_checks
from .errors import (
    ConfigError,
    DialFailed,
    DockerUnavailable,
    GatewayExists,
    GatewayNotFound,
    GatewayNotReady,
    LaunchFailed,
    ResourceError,
    SipMediaGwError,
    ValidationError,
)
from .launcher import (LaunchRequest, LaunchResult, PartialLaunch, launch, launch_pool, log_folder, reclaim_abandoned,
                       stop_all, stop_gateway, tail_log)
from .names import validate_gateway_name, validate_room_name
from .resources import sample_host
from .room_options import parse_assignment
from .backends import Backend, select_backend
from .redaction import redact
from .settings import BACKENDS, MEDIA_MODES, Settings, check_constraint, load_settings, project_root
from .sipuri import check_dial_uri
from .status import gather, render_table

#: documented in docs/cli.md (generated from this table)
EXIT_CODES: list[tuple[int, str]] = [
    (0, "success"),
    (1, "other error (e.g. `doctor` found a failing check, image build failed)"),
    (2, f"invalid configuration or input: bad option value, config/accounts file error ({ConfigError.__name__}, "
        f"{ValidationError.__name__}); Click usage errors also exit 2"),
    (ResourceError.exit_code, "no free slot, no free SIP account, or no CPU/memory headroom"),
    (GatewayNotFound.exit_code, "no gateway of that name (`stop`, `logs`)"),
    (GatewayExists.exit_code, "a gateway of that name already runs (`launch`)"),
    (DockerUnavailable.exit_code, "Docker daemon unreachable, image missing, or Docker refused an operation"),
    (LaunchFailed.exit_code, "the gateway started but never became ready; it was removed (state + logs printed)"),
    (DialFailed.exit_code, "`dial`: the call did not come about (busy, declined, not found, no answer, unreachable: "
                           "the SIP status is printed, e.g. `486 Busy Here`) or its room could not be joined; the "
                           "gateway is ready again"),
    (GatewayNotReady.exit_code, "`dial`: the gateway cannot place a call now (not running, starting, in a call, not "
                                "registered)"),
]

#: what each setting means, for docs/cli.md; the default column comes from Settings itself (setting_default)
SETTING_DOCS: dict[str, str] = {
    "image": "gateway image (`--image`)",
    "platform": "driver module in browsing/ (`--platform`)",
    "base_url": "conferencing service base URL, required by `launch` (`--domain`/`--base-url`)",
    "accounts_file": "one account line per gateway (`--accounts`)",
    "logs_dir": "one log folder per gateway, mounted rw (`--logs-dir`)",
    "browsing_dir": "platform drivers, mounted ro",
    "baresip_dir": "holds config_default, the baresip template (mounted ro, alone)",
    "sysroot": "where /proc/asound and /sys are read (`--sysroot`)",
    "media": "auto, kernel or userspace (`--media`)",
    "backend": "where gateways run: `engine` (a container each on the Docker engine of DOCKER_HOST), `swarm` (a "
               "service each on the swarm DOCKER_HOST manages), `auto` (swarm on a swarm manager) (`--backend`)",
    "constraints": "swarm: placement constraints of gateway services, e.g. [node.labels.sipmediagw==yes]; "
                   "environment: comma-separated (`--constraint`)",
    "cpu_per_gateway": "cores budgeted per gateway: admission, and each gateway's CPU limit",
    "memory_per_gateway": "memory budgeted per gateway (512M, 1G, bytes): admission, and each gateway's memory limit "
                          "(no swap on top)",
    "pids_per_gateway": "each gateway's limit of processes + threads (Chromium alone runs dozens)",
    "ready_timeout": "seconds `launch` waits for ready (`--timeout`)",
    "stop_timeout": "seconds between SIGTERM and SIGKILL (`stop --timeout`)",
    "shm_size": "/dev/shm size of the container",
    "once": "the gateway exits after its first call (`--once`)",
    "dispatch": "pool gateways: list of rules {match: REGEX on the meeting, platform, base_url, room: TEMPLATE with "
                "{meeting} and the named groups}, tried in order before the default (platform + base_url); "
                "environment: the list as JSON (docs/dialplan.md)",
    "service_user": "pool gateways: the dialled user that opens the keypad menu (as does the gateway's own user)",
    "audio_only": "gateways without video: no video in the SDP, no caller display, no camera; the browser publishes "
                  "audio only (`--audio-only`)",
    "room_options": "the platform driver's plain options, option: value (`--room-option KEY=VALUE`, repeatable); "
                    "environment: a JSON object (docs/rooms.md)",
    "room_secrets": "the driver's secret options, option: file holding the value (`--room-secret KEY=FILE`); they "
                    "travel with the SIP account, never in the environment or a label (docs/rooms.md)",
    "alone_timeout": "seconds the gateway may be the only participant in its room before it leaves and hangs up; 0: "
                     "never (docs/dialplan.md \"Timeouts\")",
    "no_media_timeout": "seconds without RTP from the caller before the call is hung up; 0: never",
    "max_call_duration": "seconds after which any call is hung up; 0: no limit",
}


def format_size(size: int) -> str:
    """Bytes as the largest exact unit `parse_size` reads back: 768M, 1G, 1536K, 1000."""
    for suffix, unit in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def setting_default(name: str, defaults: Settings | None = None) -> str:
    """The built-in default of setting `name` as docs/cli.md shows it: read from the Settings dataclass (field
    default or default_factory), sizes as 768M, paths under the source tree as <project>/..."""
    value = getattr(defaults or Settings(), name)
    if name == "memory_per_gateway":
        return format_size(value)
    if isinstance(value, bool):
        return "true" if value else "false"  # as YAML and the environment spell it
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Path):
        try:
            return f"<project>/{value.relative_to(project_root()).as_posix()}"
        except ValueError:
            return str(value)
    return str(value) if value not in ("", ()) else "(none)"


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class Cli(click.Group):
    """Group that turns domain errors into one line on stderr and their exit code (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SipMediaGwError as exc:
            click.echo(f"Error: {redact(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception:  # a bug: its traceback helps the report, but must not carry a secret out
            click.echo(redact(traceback.format_exc()).rstrip(), err=True)
            ctx.exit(1)


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    return load_settings(ctx.obj.get("config"), overrides={"backend": ctx.obj.get("backend"), **overrides})


def _backend(settings: Settings, client: Any) -> Backend:
    return select_backend(client, settings.backend)


def _docker(ctx: click.Context) -> Any:
    factory: Callable[[], Any] = ctx.obj.get("docker_factory") or dockerops.connect
    return factory()


def _host(ctx: click.Context) -> Any:
    return (ctx.obj.get("host_sampler") or sample_host)()


def _progress(message: str) -> None:
    click.echo(f"[sipmediagw] {message}", err=True)


accounts_option = click.option("--accounts", "accounts_file", type=click.Path(dir_okay=False),
                               help="Accounts file: one baresip account line per gateway.")
sysroot_option = click.option("--sysroot", type=click.Path(file_okay=False),
                              help="Root under which /proc/asound and /sys are read (default /).")
logs_option = click.option("--logs-dir", type=click.Path(file_okay=False),
                           help="Host folder holding one log folder per gateway.")
image_option = click.option("--image", help="Gateway image (default sipmediagw:latest).")


@click.group(cls=Cli, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="sipmediagw")
@click.option("--config", type=click.Path(dir_okay=False),
              help="YAML settings file (default: ./sipmediagw.yaml, ~/.config/sipmediagw/, /etc/sipmediagw/).")
@click.option("--backend", type=click.Choice(BACKENDS),
              help="Where gateways run: engine (containers), swarm (services), auto (swarm on a swarm manager).")
@click.pass_context
def cli(ctx: click.Context, config: str | None, backend: str | None) -> None:
    """Run SIP <-> web-conference gateways, one Docker container each.

    Settings: built-in defaults < YAML file < SIPMEDIAGW_* environment < flags. The Docker engine is the one of
    DOCKER_HOST (local socket, tcp:// with TLS, ssh://); on a swarm manager gateways are swarm services.

    \b
    Example:
      sipmediagw doctor
      sipmediagw launch -r myroom -g gw1 --domain https://meet.example.org
      sipmediagw status
    """
    ctx.ensure_object(dict)
    ctx.obj.setdefault("config", config)
    ctx.obj.setdefault("backend", backend)


@cli.command("launch")
@click.option("-r", "--room", help="Fixed room: every call joins it. Without it: a pool gateway (each call names "
                                   "its room).")
@click.option("-g", "--gateway", "gateway", required=True, metavar="NAME",
              help="Gateway name (unique on the host); with --count the prefix of NAME-1..NAME-N.")
@click.option("--count", type=click.IntRange(1, 1000), metavar="N",
              help="Start N pool gateways NAME-1..NAME-N, each on its own account.")
@click.option("--platform", help="Conferencing platform: a driver in browsing/ (jitsi, bigbluebutton, janus...).")
@click.option("--domain", "--base-url", "base_url", metavar="URL", help="Base URL of the conferencing service.")
@accounts_option
@click.option("--media", type=click.Choice(MEDIA_MODES), help="auto = kernel when devices exist, else userspace.")
@image_option
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the gateway reports ready.")
@click.option("--timeout", "ready_timeout", type=float, metavar="SECONDS", help="How long to wait for ready.")
@sysroot_option
@logs_option
@click.option("--once/--no-once", default=None, help="Exit after the first call (the seed's behaviour).")
@click.option("--audio-only/--with-video", "audio_only", default=None,
              help="No video: no m=video in the SDP, no caller display, no camera; the browser publishes audio only.")
@click.option("--constraint", "constraints", multiple=True, metavar="EXPR",
              help="Swarm: place the gateway only on matching nodes, e.g. node.labels.sipmediagw==yes (repeatable).")
@click.option("--room-option", "room_option_flags", multiple=True, metavar="KEY=VALUE",
              help="An option of the platform's driver, e.g. page=videoroomtest.html (repeatable; docs/rooms.md).")
@click.option("--room-secret", "room_secret_flags", multiple=True, metavar="KEY=FILE",
              help="A secret option of the driver read from FILE, e.g. shared_secret=/etc/sipmediagw/bbb.secret "
                   "(repeatable; it travels with the SIP account, never on a command line).")
@click.pass_context
def launch_command(ctx: click.Context, room: str | None, gateway: str, count: int | None, wait: bool,
                   constraints: tuple[str, ...], room_option_flags: tuple[str, ...],
                   room_secret_flags: tuple[str, ...], **options: Any) -> None:
    """Start a gateway: in a fixed ROOM, or a pool.

    Each gateway runs on a free SIP account. With -r, every call joins ROOM. Without it, a pool gateway's calls each name their room: the dialled sip:MEETING@domain gives it by the dispatch rules
    (docs/dialplan.md); a call to the gateway's own address or to the service user opens the keypad menu.

    Claims a free SIP account (and slot) through the Docker engine, so concurrent launches on any host never share
    one; checks CPU/memory headroom (on a swarm: Swarm's scheduler admits and places by the per-gateway budget);
    starts the container (swarm: service), then waits for it to be ready. On failure or SIGTERM nothing is left
    running; with --count, the gateways that started before one could not (e.g. no free account) keep running and
    are listed.

    \b
    Example:
      sipmediagw launch -r testroom -g gw1 --platform jitsi --domain https://meet.example.org
      sipmediagw launch -g pool --count 4 --platform janus --domain https://janus.example.org
    """
    try:
        checked = tuple(check_constraint(c) for c in constraints) or None
    except ValueError as exc:
        raise ValidationError(f"--constraint: {exc}") from None
    settings = _settings(ctx, constraints=checked, **options)
    settings = _with_room_flags(settings, room_option_flags, room_secret_flags)
    client = _docker(ctx)
    sampler = ctx.obj.get("host_sampler") or sample_host
    # SIGTERM (a service manager, `timeout`, kill) or SIGHUP (the terminal closed) while waiting: unwind like Ctrl-C,
    # so the launcher removes the gateway and its claims instead of leaving a container that holds an account
    # (a kill -9 cannot be caught: its launch lease expires and the next launch or status reclaims the gateway)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    if count is not None:
        if room is not None:
            raise click.UsageError("--count starts pool gateways: it cannot be combined with -r/--room")
        try:
            results = launch_pool(settings, gateway, count, client, wait=wait, progress=_progress,
                                  host_sampler=sampler)
        except PartialLaunch as exc:
            for result in exc.started:
                _echo_launched(result)
            raise
        for result in results:
            _echo_launched(result)
        return
    _echo_launched(launch(settings, LaunchRequest(gateway, room), client, wait=wait, progress=_progress,
                          host_sampler=sampler))


def _with_room_flags(settings: Settings, plain: tuple[str, ...], secret: tuple[str, ...]) -> Settings:
    """`settings` with the --room-option / --room-secret flags over its room_options / room_secrets, key by key."""
    if not plain and not secret:
        return settings
    options = dict(settings.room_options)
    options.update(parse_assignment(text, "--room-option") for text in plain)
    secrets = dict(settings.room_secrets)
    for text in secret:
        key, path = parse_assignment(text, "--room-secret")
        if not path.strip():
            raise ValidationError(f"--room-secret {key}=FILE: no file given")
        secrets[key] = Path(os.path.expanduser(path))
    return dataclasses.replace(settings, room_options=options, room_secrets=secrets)


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _echo_launched(result: LaunchResult) -> None:
    state = "ready" if result.ready else "started (not waiting for ready)"
    where = f"in room {result.room} ({result.platform})" if result.room is not None else \
        "as a pool gateway (each call names its room)"
    audio = ", audio only" if result.audio_only else ""
    node = f", on {result.node}" if result.node and result.backend == "swarm" else ""
    click.echo(f"gateway {result.gateway} {state} {where}, slot {result.slot} ({result.media}{audio}){node}")
    click.echo(f"call: {result.sip_uri}")


@cli.command("stop")
@click.argument("name", required=False)
@click.option("--all", "stop_every", is_flag=True, help="Stop every gateway on this host.")
@click.option("--timeout", "stop_timeout", type=int, metavar="SECONDS",
              help="Grace period after SIGTERM before SIGKILL (default 20).")
@click.pass_context
def stop_command(ctx: click.Context, name: str | None, stop_every: bool, stop_timeout: int | None) -> None:
    """Stop gateway NAME gracefully (SIGTERM: hang up, leave the room) and remove its container.

    A gateway that does not exist is an error (exit 4).

    \b
    Example:
      sipmediagw stop gw1
      sipmediagw stop --all
    """
    if bool(name) == stop_every:
        raise click.UsageError("give a gateway NAME or --all (not both)")
    settings = _settings(ctx, stop_timeout=stop_timeout)
    client = _docker(ctx)
    backend = _backend(settings, client)
    if stop_every:
        stopped = stop_all(client, settings.stop_timeout, progress=_progress, backend=backend)
        click.echo(f"stopped {len(stopped)} gateway(s)" + (f": {', '.join(stopped)}" if stopped else ""))
        return
    assert name is not None
    validate_gateway_name(name)
    _progress(f"stopping {name} (up to {settings.stop_timeout} s)")
    stop_gateway(client, name, settings.stop_timeout, backend=backend)
    click.echo(f"stopped {name}")


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: gateways, free_slots, free_accounts.")
@click.option("--no-stats", is_flag=True, help="Skip CPU/memory (docker stats takes about a second).")
@accounts_option
@sysroot_option
@click.option("--media", type=click.Choice(MEDIA_MODES), help="Media mode for counting free slots.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool, no_stats: bool, **options: Any) -> None:
    """Show gateways (like `docker ps`), then free slots and free accounts.

    MODE is pool or fixed (/audio-only for gateways without video); ROOM the room the gateway is in now (an idle
    fixed gateway shows its room in parentheses, a gateway dialling out "(dialling)"); CALLER and CALL the current
    caller (for a call placed by `dial`: the dialled party) and how long the call has lasted. --json adds the
    dialled meeting, the call's direction and start, and the last call's end reason; its "room" of an idle fixed
    gateway is its room.

    \b
    Example:
      sipmediagw status
      sipmediagw status --json | jq '.free_slots'
    """
    settings = _settings(ctx, **options)
    client = _docker(ctx)
    try:
        accounts = load_accounts(settings.accounts_file)
    except ConfigError as exc:
        # What runs is still worth showing: only the free-account count depends on the file.
        click.echo(f"Warning: {redact(str(exc))}; free accounts counted as 0", err=True)
        accounts = []
    backend = _backend(settings, client)
    # a launch killed without unwinding (kill -9) left its gateway: take it back, saying so
    reclaim_abandoned(backend, backend.claims(settings.image), lambda message: click.echo(message, err=True))
    discovery = discover(settings.sysroot) if backend.kind == "engine" else None
    result = gather(settings, client, accounts, discovery, _host(ctx), with_stats=not no_stats, backend=backend)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo(render_table(result))


@cli.command("dial")
@click.argument("name")
@click.argument("uri", metavar="SIP-URI")
@click.option("-r", "--room", help="Room to join when the callee answers: required for a pool gateway (its dispatch "
                                   "rules apply); a fixed gateway joins its own room.")
@click.option("--timeout", "answer_timeout", type=click.IntRange(1, dialout.MAX_TIMEOUT),
              default=dialout.DEFAULT_TIMEOUT, show_default=True, metavar="SECONDS",
              help="How long the callee has to answer; then the gateway cancels the call.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object (failures too).")
@click.pass_context
def dial_command(ctx: click.Context, name: str, uri: str, room: str | None, answer_timeout: int,
                 as_json: bool) -> None:
    """Make ready gateway NAME call SIP-URI and join the room when it answers.

    For room systems in auto-answer: the gateway calls, and once the call is answered its browser joins the room
    under the callee's name, as for a call it received. Busy, declined, not found, no answer, unreachable: the SIP
    status is printed, the exit code is 8 and the gateway is ready again. The CLI reaches the gateway only through
    the Docker engine (docker exec of the request client in the container), so DOCKER_HOST may be remote.

    \b
    Example:
      sipmediagw dial gw1 sip:boardroom@pbx.example.org
      sipmediagw dial pool-2 sip:boardroom@pbx.example.org -r 1234
    """
    validate_gateway_name(name)
    check_dial_uri(uri)  # a bad URI is refused before the engine is asked anything
    if room is not None:
        validate_room_name(room)
    client = _docker(ctx)
    backend = _backend(_settings(ctx), client)
    if backend.kind == "swarm" and dockerops.find_gateway(client, name) is None:
        handle = backend.find(name)
        if handle is not None:  # it runs, but on another node: a manager cannot exec into it
            node = backend.observe(handle).node or "another node"
            raise GatewayNotFound(f"gateway {name} runs on swarm node {node}: `dial` reaches it through docker exec, "
                                  f"which works only on that node's engine (set DOCKER_HOST to {node}'s engine)")
    try:
        result = dialout.dial(client, name, uri, room, answer_timeout, progress=_progress)
    except DialFailed as exc:
        if as_json:
            click.echo(json.dumps({**exc.result, "gateway": name}, indent=2, sort_keys=True))
        raise
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
        return
    click.echo(f"gateway {result.gateway} called {result.uri}: answered by {result.callee}, in room {result.room}"
               + (f" ({result.platform})" if result.platform else ""))


@cli.command("logs")
@click.argument("name")
@click.option("--err", "error_log", is_flag=True, help="Show the error log (err.log) instead of the app log.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the gateway stops (or Ctrl-C).")
@click.option("--tail", type=int, default=50, show_default=True, metavar="N", help="Lines of history (0: none).")
@logs_option
@click.pass_context
def logs_command(ctx: click.Context, name: str, error_log: bool, follow: bool, tail: int, logs_dir: str | None) -> None:
    """Print the app log (or --err the error log) of gateway NAME.

    Read through the Docker engine (a remote DOCKER_HOST too; on a swarm, the current task's log wherever it runs).
    A gateway of the local engine that was stopped: its log folder on this host is read instead.

    \b
    Example:
      sipmediagw logs gw1 --tail 100
      sipmediagw logs gw1 --err -f
    """
    if tail < 0:
        raise ValidationError("--tail must be >= 0")
    validate_gateway_name(name)
    settings = _settings(ctx, logs_dir=logs_dir)
    handle = backend = None
    try:
        backend = _backend(settings, _docker(ctx))
        handle = backend.find(name)
    except DockerUnavailable:
        pass  # a stopped local gateway's logs are files on this host: still readable without the engine
    try:
        if handle is not None and backend is not None:
            for line in backend.logs(handle, tail, follow, error_log):
                click.echo(redact(line))
            return
        folder = log_folder(settings, name)
        path = folder / ("err.log" if error_log else "app.log")
        if path.is_symlink() or folder.is_symlink():
            # the folder is writable by the container user: a link there must not lead `logs` to any host file
            raise ValidationError(f"{path} is a symbolic link: not followed")
        if not path.is_file():
            raise GatewayNotFound(f"no gateway named {name!r} and no log file {path}")
        for line in tail_log(path, tail):
            click.echo(redact(line))
    except KeyboardInterrupt:
        pass


@cli.command("doctor")
@accounts_option
@sysroot_option
@image_option
@click.option("--media", type=click.Choice(MEDIA_MODES), help="Media mode to check for.")
@click.pass_context
def doctor_command(ctx: click.Context, **options: Any) -> None:
    """Check this host: Docker, image, virtual devices, accounts file, CPU/memory budget; print exact fixes.

    Exits 1 when a check fails (warnings do not count).

    \b
    Example:
      sipmediagw doctor
      sipmediagw doctor --sysroot /host --media kernel
    """
    settings = _settings(ctx, **options)
    connect = ctx.obj.get("docker_factory") or dockerops.connect
    report = run_checks(settings, connect=connect, host_sampler=ctx.obj.get("host_sampler") or sample_host)
    click.echo(render_report(report))
    if not report.healthy:
        ctx.exit(1)


@cli.command("build")
@image_option
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE", help="Passed to the Dockerfile.")
@click.option("--path", "context_path", type=click.Path(file_okay=False, exists=True),
              help="A folder to send whole as the build context, holding a Dockerfile (its .dockerignore applies). "
                   "Default: only the files the gateway image needs, from the source tree or the installed package.")
@click.pass_context
def build_command(ctx: click.Context, image: str | None, build_args: tuple[str, ...], context_path: str | None) -> None:
    """Build the gateway image (classic builder, progress on stderr). Works from any folder: the Dockerfile, the
    drivers and the templates come with sipmediagw; the context is an allow-list, so no accounts file enters it.

    \b
    Example:
      sipmediagw build
      sipmediagw build --image sipmediagw:dev --build-arg SLIM=0
    """
    settings = _settings(ctx, image=image)
    args: dict[str, str] = {}
    for item in build_args:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError(f"--build-arg {item!r}: expected KEY=VALUE")
        args[key] = value
    context: str | bytes
    if context_path:
        if not (Path(context_path) / "Dockerfile").is_file():
            raise ConfigError(f"no Dockerfile in {context_path}")
        context = context_path
    else:
        context = buildcontext.context_tar()
    client = _docker(ctx)
    for line in dockerops.build_image(client, context, settings.image, args):
        click.echo(line, err=True)
    click.echo(f"built {settings.image}")


@cli.command("demo")
@click.option("--down", is_flag=True, help="Stop the demo's gateway, Kamailio and Janus, then exit.")
@image_option
@click.option("--dir", "folder", type=click.Path(file_okay=False), metavar="DIR",
              help="The demo's folder: record, logs, stack files (default <project>/.demo).")
@click.option("--gateway", "gateway", metavar="NAME", help="The demo pool's name: gateways NAME-1, NAME-2 (default demo).")
@click.option("--sip-port", type=click.IntRange(1, 65534), help="Kamailio's SIP port (default 5060).")
@click.option("--janus-port", type=click.IntRange(1, 65535), help="Janus's HTTP API port (default 8088).")
@click.option("--web-port", type=click.IntRange(1, 65535), help="The room site's port (default 8000).")
@click.pass_context
def demo_command(ctx: click.Context, down: bool, image: str | None, folder: str | None, gateway: str | None,
                 sip_port: int | None, janus_port: int | None, web_port: int | None) -> None:
    """Start a local Kamailio + Janus rooms + a pool of two gateways, place two real test calls, print what was
    measured: one dials sip:1234@sipmediagw.test, the other dials the service address and types 1234# in the keypad
    menu.

    The stack listens on the Docker bridge address (SIP 5060, Janus 8088, room site 8000) and is left running so
    you can call the pool yourself; `--down` stops it (give the same --dir and --gateway). A second demo can run
    beside the first with its own --dir, --gateway (the pool's name) and ports. The host must be prepared first
    (Debian packages, dockerd, the gateway image): `scripts/demo` does that, then runs this command. Exits 1 if
    media did not flow both ways in both calls.

    \b
    Example:
      sipmediagw demo
      sipmediagw demo --down
    """
    from . import demo  # the test bed pulls in Selenium: only load it for this command

    defaults = demo.DemoPlace()
    if gateway is not None:
        validate_gateway_name(gateway)
    place = demo.DemoPlace(folder=Path(folder).resolve() if folder else defaults.folder,
                           gateway=gateway or defaults.gateway, sip_port=sip_port or defaults.sip_port,
                           janus_port=janus_port or defaults.janus_port, web_port=web_port or defaults.web_port)
    settings = _settings(ctx, image=image, media="userspace", platform="janus")
    client = _docker(ctx)
    if down:
        click.echo("demo stopped" if demo.teardown(settings, client, place) else "no demo was running")
        return
    result = demo.run_demo(settings, client, place, progress=_progress)
    click.echo(demo.render_report(result))
    if not result.ok:
        ctx.exit(1)


def cli_reference() -> str:
    """docs/cli.md: every command's --help, and the exit codes. Regenerate with `python -m sipmediagw.cli --docs`."""
    from click.testing import CliRunner

    runner = CliRunner()
    parts = [
        "# CLI reference",
        "",
        "<!-- Generated from `--help` by `python -m sipmediagw.cli --docs > docs/cli.md`; "
        "tests/unit/test_docs.py fails when this file and the help drift apart. -->",
        "",
        "## Exit codes",
        "",
        "| code | meaning |",
        "|---|---|",
    ]
    parts += [f"| {code} | {meaning} |" for code, meaning in EXIT_CODES]
    parts += [
        "",
        "## Settings",
        "",
        "Built-in defaults < YAML file (`--config FILE`, `$SIPMEDIAGW_CONFIG`, else the first of `./sipmediagw.yaml`, "
        "`~/.config/sipmediagw/sipmediagw.yaml`, `/etc/sipmediagw/sipmediagw.yaml`) < environment < flags. "
        "Unknown YAML keys are errors (file:line). `<project>` is the source tree sipmediagw runs from; installed "
        "with `pip install` (no source tree), the drivers and the baresip template default to the copies shipped "
        "in the package, `logs_dir` to `$XDG_STATE_HOME/sipmediagw/logs` (`~/.local/state/sipmediagw/logs`) and "
        "`accounts_file` to `./baresip/accounts`.",
        "",
        "| YAML key | environment | default | meaning |",
        "|---|---|---|---|",
    ]
    defaults = Settings()
    parts += [f"| `{key}` | `SIPMEDIAGW_{key.upper()}` | {setting_default(key, defaults)} | {SETTING_DOCS[key]} |"
              for key in (field.name for field in dataclasses.fields(Settings))]
    commands = [[]] + [[name] for name in sorted(cli.commands)]
    for args in commands:
        title = " ".join(["sipmediagw"] + args)
        result = runner.invoke(cli, args + ["--help"], prog_name="sipmediagw", terminal_width=110)
        parts += ["", f"## {title}", "", "```", result.output.rstrip(), "```"]
    return "\n".join(parts) + "\n"


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sipmediagw")


if __name__ == "__main__":
    if sys.argv[1:] == ["--docs"]:
        sys.stdout.write(cli_reference())
    else:
        main()
