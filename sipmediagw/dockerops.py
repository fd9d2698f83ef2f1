"""docker-py wrapper: connect, list gateway containers by label, create/start/stop/remove idempotently.

"Already gone" (404) and "already stopped" (304/409 on stop) count as success, so every lifecycle step can be
retried and cleanup paths never fail on their own.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from typing import Any, Iterator

import docker
import docker.errors
import requests
from docker.models.containers import Container

from . import labels
from .errors import DockerUnavailable

#: container states that still hold a slot and an account (created-but-not-started counts: launch is mid-way;
#: restarting: between two runs of a gateway that its restart policy starts again)
HOLDING_STATES = ("created", "running", "restarting", "paused")


def connect(client: docker.DockerClient | None = None) -> docker.DockerClient:
    """A client for the engine of DOCKER_HOST (local socket, tcp:// with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, or
    ssh:// through the `ssh` client, so no paramiko is needed); DockerUnavailable if it does not answer."""
    where = os.environ.get("DOCKER_HOST") or "the local socket"
    try:
        client = client or docker.from_env(timeout=120, use_ssh_client=where.startswith("ssh://"))
        client.ping()
    except Exception as exc:  # docker-py raises several unrelated types here
        raise DockerUnavailable(
            f"cannot reach the Docker engine at {where} ({exc.__class__.__name__}: {exc}); is dockerd running "
            "(systemctl start docker) and may this user use it (group docker)?"
        ) from exc
    return client


def list_gateways(client: docker.DockerClient, include_stopped: bool = True) -> list[Container]:
    """Every container carrying our managed label."""
    for _ in range(4):
        try:
            return client.containers.list(all=include_stopped, filters={"label": f"{labels.MANAGED}=true"})
        except docker.errors.NotFound:
            continue  # a container removed between the list and its inspect (concurrent launches): list again
    return client.containers.list(all=include_stopped, filters={"label": f"{labels.MANAGED}=true"})


def holds_resources(container: Container) -> bool:
    """True when `container` still holds its slot and account."""
    return container.status in HOLDING_STATES


def find_gateway(client: docker.DockerClient, gateway: str) -> Container | None:
    """The container of gateway `gateway` (by label), or None."""
    # the summary listing, then one inspect: a container removed in between (a concurrent launch giving up) is
    # skipped instead of failing the lookup
    wanted = [f"{labels.MANAGED}=true", f"{labels.GATEWAY}={gateway}"]
    found = client.api.containers(all=True, filters={"label": wanted})
    for summary in found:
        try:
            return client.containers.get(summary["Id"])
        except docker.errors.NotFound:
            continue
    return None


def image_present(client: docker.DockerClient, image: str) -> bool:
    """Whether `image` exists locally (no registry is asked)."""
    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False


def secret_archive(file_name: str, content: bytes, uid: int, mode: int = 0o400) -> bytes:
    """A tar holding one file `file_name` with `content`, owned by `uid`:`uid`, mode `mode`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        item = tarfile.TarInfo(file_name)
        item.size, item.mode, item.uid, item.gid, item.mtime = len(content), mode, uid, uid, int(time.time())
        tar.addfile(item, io.BytesIO(content))
    return buffer.getvalue()


def put_secret(container: Container, path: str, content: bytes, uid: int) -> None:
    """Place `content` at absolute `path` in a created container, readable only by `uid` (the folder must exist)."""
    folder, _, name = path.rpartition("/")
    try:
        ok = container.put_archive(folder or "/", secret_archive(name, content, uid))
    except docker.errors.APIError as exc:
        raise DockerUnavailable(f"could not copy the account file into {container.name}: {exc.explanation}") from exc
    if not ok:
        raise DockerUnavailable(f"could not copy the account file into {container.name}")


def stop_container(container: Container, timeout: int) -> None:
    """SIGTERM, up to `timeout` s, then SIGKILL; a container already stopped or gone is fine."""
    try:
        container.stop(timeout=timeout)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code not in (304, 409):
            raise


def remove_container(container: Container) -> None:
    """Remove (forcefully); a container already gone or being removed is fine."""
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409 or "already in progress" not in str(exc):
            raise


def refresh(container: Container) -> Container | None:
    """Re-read `container`'s state; None if it no longer exists."""
    try:
        container.reload()
        return container
    except docker.errors.NotFound:
        return None


def container_logs(container: Container, tail: int = 20) -> str:
    """The last `tail` lines of the container's stdout+stderr ('' if unavailable)."""
    try:
        return container.logs(tail=tail).decode("utf-8", errors="replace")
    except docker.errors.APIError:
        return ""


def container_stats(container: Container) -> dict[str, Any] | None:
    """CPU % (of one core) and memory bytes of a running container, or None."""
    try:
        stats = container.stats(stream=False)
    except docker.errors.APIError:
        return None
    try:
        cpu = stats["cpu_stats"]
        pre = stats["precpu_stats"]
        cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
        cpus = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or [1])
        percent = (cpu_delta / system_delta) * cpus * 100.0 if system_delta > 0 else 0.0
        memory = stats["memory_stats"].get("usage", 0) - stats["memory_stats"].get("stats", {}).get("cache", 0)
        return {"cpu_percent": round(percent, 1), "memory": max(0, int(memory))}
    except (KeyError, TypeError):
        return None


def build_image(
    client: docker.DockerClient, context: str | bytes, tag: str, buildargs: dict[str, str] | None = None
) -> Iterator[str]:
    """Build `tag` with the classic builder; yield progress lines. `context`: a folder holding a Dockerfile (its
    .dockerignore applies), or an uncompressed tar of the context (buildcontext.context_tar)."""
    if isinstance(context, bytes):
        source: dict[str, Any] = {"fileobj": io.BytesIO(context), "custom_context": True}
    else:
        source = {"path": context}
    try:
        for chunk in client.api.build(**source, tag=tag, buildargs=buildargs or {}, rm=True, decode=True):
            if "error" in chunk:
                raise DockerUnavailable(f"image build failed: {chunk['error'].strip()}")
            text = chunk.get("stream") or chunk.get("status")
            if text and text.strip():
                yield text.rstrip("\n")
    except docker.errors.APIError as exc:
        raise DockerUnavailable(f"image build failed: {exc.explanation or exc}") from exc


def exec_lines(client: docker.DockerClient, container: Container, argv: list[str]) -> Iterator[tuple[str, str]]:
    """Run `argv` (no shell) in the running `container` through the engine's exec API, as the container's user, and
    yield ``("stdout" | "stderr", line)`` as lines arrive, then ``("exit", code)``: what a remote DOCKER_HOST allows
    as well as a local one. DockerUnavailable when the engine refuses (e.g. the container is not running)."""
    api = client.api
    try:
        exec_id = api.exec_create(container.id, argv, stdout=True, stderr=True)["Id"]
        chunks = api.exec_start(exec_id, stream=True, demux=True)
        pending = {"stdout": b"", "stderr": b""}
        for out, err in chunks:
            for name, data in (("stdout", out), ("stderr", err)):
                if not data:
                    continue
                pending[name] += data
                *lines, pending[name] = pending[name].split(b"\n")
                for line in lines:
                    yield name, line.decode("utf-8", errors="replace")
        for name, rest in pending.items():
            if rest:
                yield name, rest.decode("utf-8", errors="replace")
        code = api.exec_inspect(exec_id).get("ExitCode")
    except docker.errors.APIError as exc:
        raise DockerUnavailable(f"docker exec in {container.name} failed: {exc.explanation or exc}") from exc
    except (requests.exceptions.RequestException, OSError) as exc:  # the stream broke (engine gone, read timeout)
        raise DockerUnavailable(f"docker exec in {container.name}: lost the connection to the engine ({exc})") from exc
    yield "exit", str(code)
