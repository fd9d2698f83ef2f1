"""Docker labels in the reserved ``org.sipmediagw.`` namespace: with the engine's objects, the only record of what runs.

A gateway container (single engine) or service (swarm) carries these labels; its claims (sipmediagw/claims.py)
carry CLAIM, CLAIM_VALUE and GATEWAY. Nothing secret is ever a label value.
"""

from __future__ import annotations

PREFIX = "org.sipmediagw."

MANAGED = PREFIX + "managed"  # "true" on every container the CLI created
GATEWAY = PREFIX + "gateway"  # the gateway name as the user typed it
SLOT = PREFIX + "slot"  # slot index (int as text); kernel mode: the device slot, userspace: a virtual slot
ACCOUNT = PREFIX + "account"  # the SIP account URI, never a password
ROOM = PREFIX + "room"  # the fixed room; absent on a pool gateway (its room comes with each call)
MODE = PREFIX + "mode"  # "pool" | "fixed" (absent on containers made before pool gateways: fixed)
PLATFORM = PREFIX + "platform"
MEDIA = PREFIX + "media"  # "userspace" | "kernel"
AUDIO_ONLY = PREFIX + "audio-only"  # "true" | "false" (absent on containers made before audio-only gateways: false)
VERSION = PREFIX + "version"
LOGS = PREFIX + "logs"  # host folder with app.log, err.log, state.json (local engine only)
CLAIM = PREFIX + "claim"  # on claim objects only: "account" | "slot" (sipmediagw/claims.py)
CLAIM_VALUE = PREFIX + "claim-value"  # the claimed account URI or "<media>-<slot>"
LEASE = PREFIX + "lease"  # on a gateway: the id of the launch lease it was created under (claims.py)
DEADLINE = PREFIX + "deadline"  # on launch leases only: epoch seconds after which their launch is taken as dead
