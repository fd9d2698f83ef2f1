"""Who is publishing in a Janus VideoRoom, asked of the test bed's Janus over its HTTP API (a wait condition for the
concurrency rows, whose rooms may have no browser participant to ask)."""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from typing import Any


class JanusRooms:
    """A session + VideoRoom handle on `http://IP:PORT/janus`, for `listparticipants`."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")
        self._handle_url: str | None = None

    def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        body = body | {"transaction": secrets.token_hex(6)}
        request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the test bed's own Janus
            reply: dict[str, Any] = json.loads(response.read())
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus: {reply.get('error')}")
        return reply

    def _handle(self) -> str:
        if self._handle_url is None:
            session = self._post(self.api_url, {"janus": "create"})["data"]["id"]
            handle = self._post(f"{self.api_url}/{session}", {"janus": "attach",
                                                               "plugin": "janus.plugin.videoroom"})["data"]["id"]
            self._handle_url = f"{self.api_url}/{session}/{handle}"
        return self._handle_url

    def publishers(self, room: int | str) -> list[str]:
        """Display names of the participants publishing in `room` now."""
        reply = self._post(self._handle(), {"janus": "message",
                                            "body": {"request": "listparticipants", "room": int(room)}})
        data = reply.get("plugindata", {}).get("data", {})
        return [str(p.get("display", p.get("id"))) for p in data.get("participants", []) if p.get("publisher")]

    def wait_publishers(self, room: int | str, count: int, timeout: float = 90) -> bool:
        """Wait until at least `count` participants publish in `room` (polled; the session keeps itself alive by
        being used: Janus drops an idle one after 60 s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.publishers(room)) >= count:
                return True
            time.sleep(0.5)
        return False
