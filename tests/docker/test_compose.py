"""docker-compose.yml for real: Debian's `docker-compose` (1.29.2) brings one gateway up from the real image, the
gateway registers at a real Kamailio on the Docker bridge, and `down -v` leaves nothing behind.

Each test gets its own compose project, folder (the repository's docker-compose.yml run with `--project-directory`
there), gateway name and account file. The room is a tiny driver in that folder's browsing/ (a data: page), as in
test_gateway.py: no conference server is needed. SIPMEDIAGW_TEST_COMPOSE picks another compose command (e.g. a compose
v2 binary). Needs `sipmediagw:latest` (scripts/setup-host builds it) and docker-compose (setup-host installs it).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

docker = pytest.importorskip("docker")

from sipmediagw import seccomp  # noqa: E402
from sipmediagw.names import container_name  # noqa: E402
from sipmediagw.testbed.kamailio import Kamailio  # noqa: E402
from sipmediagw.testbed.network import docker_bridge_ip, free_port  # noqa: E402

from test_gateway import _wait  # noqa: E402  (one readiness wait for the docker tier)

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE = shlex.split(os.environ.get("SIPMEDIAGW_TEST_COMPOSE", "docker-compose"))
IMAGE = "sipmediagw:latest"  # what docker-compose.yml names
PROJECT_LABEL = "com.docker.compose.project"  # set by compose 1.x and v2 on what they create
SECRET = "Compose-Secret-5813"
DOMAIN = "sipmediagw.test"  # not an IP: see test_gateway.py
GW_UID = 10001
READY_TIMEOUT = 120  # Chromium's first start on a loaded 2-core machine can take tens of seconds
COMMAND_TIMEOUT = 120  # one compose command; `stop` alone may take the 20 s grace period

ROOM_DRIVER = '''
from sipmediagw.room import Room


class TestRoom(Room):
    """A room that is a local page: enough for the gateway to become ready without a conference server."""

    platform = "testroom"

    def url(self):
        return "data:text/html,<title>room</title><h1>in room</h1>"

    def join(self, display_name):
        self.driver.get(self.url())

    def leave(self):
        self.driver.get("about:blank")
'''


class ComposeProject:
    """One compose project: the repository's docker-compose.yml run in its own folder with its own env file."""

    def __init__(self, client: Any, name: str, folder: Path, gateway: str) -> None:
        self.client, self.name, self.folder, self.gateway = client, name, folder, gateway
        self.env_file = folder / "gateway.env"
        self.log_dir = folder / "logs" / gateway

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`docker-compose --env-file ... -f docker-compose.yml --project-directory FOLDER -p NAME ARGS`."""
        argv = [*COMPOSE, "--env-file", str(self.env_file), "-f", str(COMPOSE_FILE),
                "--project-directory", str(self.folder), "-p", self.name, *args]
        # variables from the caller's shell would override the env file (compose gives the shell precedence)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIPMEDIAGW_", "COMPOSE_"))}
        result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=env,
                                cwd=self.folder)
        if check:
            assert result.returncode == 0, f"{shlex.join(argv)} -> {result.returncode}\n{result.stdout}{result.stderr}"
        return result

    def container(self) -> Any:
        """The gateway service's container (running or not)."""
        ids = self.run("ps", "-q", "gateway").stdout.split()
        assert len(ids) == 1, f"expected one gateway container, compose lists {ids}"
        return self.client.containers.get(ids[0])

    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.log_dir / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def leftovers(self) -> dict[str, list[str]]:
        """Whatever the engine still holds of this project: containers, networks, volumes."""
        by_label = {"label": f"{PROJECT_LABEL}={self.name}"}
        by_name = {"name": f"^/{container_name(self.gateway)}$"}  # in case compose never got to label it
        containers = {c.name for query in (by_label, by_name)
                      for c in self.client.containers.list(all=True, filters=query)}
        return {
            "containers": sorted(containers),
            "networks": [n.name for n in self.client.networks.list(filters=by_label)],
            "volumes": [v.name for v in self.client.volumes.list(filters=by_label)],
        }

    def report(self) -> str:
        logs = self.run("logs", "--no-color", "--tail", "60", check=False)
        ps = self.run("ps", check=False)
        return (f"{ps.stdout}{ps.stderr}\nstate: {json.dumps(self.state(), indent=1)}\n"
                f"logs:\n{logs.stdout[-6000:]}{logs.stderr[-2000:]}")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    if not shutil.which(COMPOSE[0]):
        pytest.fail(f"{COMPOSE[0]} not found: apt-get install -y --no-install-recommends docker-compose "
                    "(scripts/setup-host installs it)")
    try:
        cli = docker.from_env()
        cli.ping()
        cli.images.get(IMAGE)
    except Exception as exc:  # the docker tier is opt-in: no daemon or image means the tier was not set up
        pytest.fail(f"docker tier needs a running daemon and {IMAGE} (scripts/setup-host builds it): {exc}")
    yield cli
    cli.close()


@pytest.fixture(scope="module")
def bridge_ip() -> str:
    return docker_bridge_ip()


@pytest.fixture(scope="module")
def registrar(tmp_path_factory: pytest.TempPathFactory, bridge_ip: str) -> Iterator[Kamailio]:
    port = free_port(bridge_ip)
    with Kamailio(domain=DOMAIN, listen=[bridge_ip], port=port,
                  workdir=tmp_path_factory.mktemp("kamailio")) as kamailio:
        yield kamailio


@pytest.fixture
def project(client: Any, registrar: Kamailio, bridge_ip: str, tmp_path: Path,
            request: pytest.FixtureRequest) -> ComposeProject:
    """A folder laid out as docker-compose.yml expects, with this test's gateway, room driver and account."""
    gateway = f"compose-{os.getpid()}"
    folder = tmp_path / "compose"
    proj = ComposeProject(client, f"sipmediagw-composetest-{os.getpid()}", folder, gateway)
    (folder / "browsing").mkdir(parents=True)
    (folder / "browsing" / "testroom.py").write_text(ROOM_DRIVER)
    (folder / "baresip").mkdir()
    shutil.copy(ROOT / "baresip" / "config_default", folder / "baresip" / "config_default")
    (folder / "docker").mkdir()  # the seccomp profile docker-compose.yml names, relative to the project folder
    shutil.copy(ROOT / "docker" / "seccomp-gateway.json", folder / "docker" / "seccomp-gateway.json")
    proj.log_dir.mkdir(parents=True)
    os.chown(proj.log_dir, GW_UID, GW_UID)  # the compose file's header: writable by the gateway user
    account = folder / "baresip" / f"{gateway}.account"
    account.write_text(f'<sip:{gateway}@{DOMAIN}>;auth_pass={SECRET};answermode=auto;'
                       f'outbound="sip:{bridge_ip}:{registrar.port}"\n')
    os.chown(account, GW_UID, GW_UID)  # compose bind-mounts the file as it is: owner and mode come from here
    account.chmod(0o400)
    proj.env_file.write_text(
        f"SIPMEDIAGW_GATEWAY={gateway}\nSIPMEDIAGW_ROOM=1234\nSIPMEDIAGW_PLATFORM=testroom\n"
        f"SIPMEDIAGW_BASE_URL=http://{bridge_ip}:8000\nSIPMEDIAGW_ACCOUNT=./baresip/{gateway}.account\n")

    def tear_down() -> None:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            sys.stderr.write(f"\n--- compose project {proj.name} ---\n{proj.report()}\n")
        down = proj.run("down", "-v", "--remove-orphans", "--timeout", "20", check=False)
        # whatever `down` could not remove (it failed, or the file no longer parses) goes by the project's label
        left = proj.leftovers()
        removals = [(client.containers, name, {"force": True, "v": True}) for name in left["containers"]]
        removals += [(client.networks, name, {}) for name in left["networks"]]
        removals += [(client.volumes, name, {"force": True}) for name in left["volumes"]]
        for collection, name, options in removals:
            try:
                collection.get(name).remove(**options)
            except docker.errors.NotFound:  # gone meanwhile: that is what we wanted
                pass
        assert down.returncode == 0 and not any(left.values()), f"cleanup: down -> {down.stderr}, left {left}"

    request.addfinalizer(tear_down)
    return proj


# ---------------------------------------------------------------------------------------------------------------


def test_compose_file_is_accepted(project: ComposeProject) -> None:
    config = project.run("config").stdout
    assert container_name(project.gateway) in config
    assert SECRET not in config  # the secret is a file path in the model, never its content


def test_compose_gateway_registers_and_down_leaves_nothing(project: ComposeProject, registrar: Kamailio) -> None:
    project.run("up", "-d", "--no-build")
    container = project.container()
    assert container.name == container_name(project.gateway)

    def registered() -> bool:
        container.reload()
        if container.status not in ("created", "running"):  # an early exit fails at once, not after the timeout
            raise AssertionError(f"gateway container {container.status} before registering\n{project.report()}")
        return registrar.registered(project.gateway)

    _wait(registered, READY_TIMEOUT, f"{project.gateway} registered at Kamailio", project.report)
    # READY also proves the other mounts: the room driver from browsing/, the template, the log folder
    state = _wait(lambda: project.state() if project.state().get("state") == "ready" else None, READY_TIMEOUT,
                  "gateway state 'ready'", project.report)
    assert state["sip_uri"].startswith(f"sip:{project.gateway}@")

    # the container is the one `launch` creates (docs/contracts.md)
    container.reload()
    attrs = container.attrs
    host, config = attrs["HostConfig"], attrs["Config"]
    assert (host["Init"], host["ShmSize"], host["CapDrop"], host["SecurityOpt"][:1], host["NetworkMode"]) == (
        True, 256 * 1024**2, ["ALL"], ["no-new-privileges"], "bridge")
    # compose read docker/seccomp-gateway.json and sent its JSON: the profile `launch` sends, so Chromium is sandboxed
    [profile] = [option.partition("=")[2] for option in host["SecurityOpt"][1:] if option.startswith("seccomp=")]
    assert json.loads(profile) == seccomp.profile() and state["sandbox"] == "on"
    assert (config["User"], config["StopSignal"], config["StopTimeout"]) == ("gw", "SIGTERM", 20)
    # the limits, restart policy, /tmp and Docker's log that `launch` sets (docs/resources.md "Limits and restarts")
    # the quota the file states: twice the 1.3-core budget, capped at a 2-CPU engine (launcher.cpu_limit)
    assert (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["PidsLimit"]) == (
        768 * 1024**2, 768 * 1024**2, 2_000_000_000, 512)
    assert host["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert host["Tmpfs"] == {"/tmp": "mode=1777,size=256m"}
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
    # the secret: bind-mounted read-only with the host file's owner and mode, and nowhere in the engine's records
    code, out = container.exec_run(["stat", "-c", "%u %g %a", "/run/secrets/sipmediagw-account"], user="gw")
    assert (code, out.decode().strip()) == (0, f"{GW_UID} {GW_UID} 400")
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/run/secrets/sipmediagw-account"]["RW"] is False
    inspect = subprocess.run(["docker", "inspect", container.id], capture_output=True, text=True, timeout=30)
    assert inspect.returncode == 0 and container.id in inspect.stdout
    for where, text in (("docker inspect", inspect.stdout),
                        ("container logs", container.logs().decode(errors="replace")),
                        ("app.log", (project.log_dir / "app.log").read_text()), ("state.json", json.dumps(state))):
        assert SECRET not in text, f"the account password is in {where}"

    # stop: SIGTERM ends the gateway cleanly (exit 0, not the 137 of a SIGKILL after the grace period)
    project.run("stop")
    container.reload()
    assert (container.status, container.attrs["State"]["ExitCode"]) == ("exited", 0), project.report()
    assert project.state().get("state") == "exited"

    project.run("down", "-v")
    left = project.leftovers()
    assert not any(left.values()), f"left behind by down -v: {left}"
