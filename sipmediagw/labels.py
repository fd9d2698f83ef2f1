"""Docker labels in the reserved ``org.sipmediagw.`` namespace: the only host-side record of what runs.

A gateway container carries these labels; the allocator derives held slots and accounts from the running
containers' labels, so a gateway that dies frees its resources by ceasing to run.
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
LOGS = PREFIX + "logs"  # host folder with app.log, err.log, state.json
