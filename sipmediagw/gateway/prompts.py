"""Spoken prompts of the keypad menu and of the notices (notice.py): their texts, the WAV files made from them, and a
player into PulseAudio.

The WAVs in ``prompts/`` are generated offline by ``scripts/make-prompts`` (espeak-ng, 16-bit mono 16 kHz) from
:data:`SPOKEN`; ``prompts/manifest.json`` records each file's text and hash so a unit test notices a text changed
without regenerating. :class:`PromptPlayer` plays them with ``paplay`` into the sink the caller hears: in the gateway
that is ``to_caller`` (media.ROOM_SINK), whose monitor baresip records as its audio source.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
import wave
from pathlib import Path
from typing import Callable, Sequence

from . import ivr, notice
from .logs import LogSink
from .media import ROOM_SINK
from .process import ComponentFailed, ManagedProcess

PROMPTS_DIR = Path(__file__).with_name("prompts")
MANIFEST = PROMPTS_DIR / "manifest.json"
RATE = 16000  # what every prompt file is; PulseAudio resamples to the sink's 48 kHz stereo

#: spoken names of the platforms shipped in browsing/ (the screen shows ivr.PLATFORM_LABELS)
SPOKEN_PLATFORMS = {"janus": "Janus", "jitsi": "Jitsi Meet", "bigbluebutton": "Big Blue Button",
                    "livekit": "LiveKit"}

#: prompt id -> the sentence spoken (scripts/make-prompts makes prompts/<id>.wav of each)
SPOKEN: dict[str, str] = {
    ivr.ENTER_MEETING: "Please enter the meeting number, then press hash.",
    ivr.CHOOSE_PLATFORM: "Choose the platform.",
    ivr.INVALID_CHOICE: "That is not one of the choices.",
    ivr.UNKNOWN_MEETING: "Unknown meeting, please try again.",
    ivr.TOO_MANY_ATTEMPTS: "Too many attempts.",
    ivr.JOINING_PROMPT: "Joining the meeting.",
    ivr.TIMEOUT_PROMPT: "No key was pressed.",
    ivr.GOODBYE: "Goodbye.",
    notice.MEETING_UNAVAILABLE: "Sorry, this meeting cannot be joined right now. Goodbye.",
    **{ivr.press_prompt(n): f"Press {n} for" for n in range(1, ivr.MAX_PLATFORMS + 1)},
    **{ivr.platform_prompt(name): spoken for name, spoken in SPOKEN_PLATFORMS.items()},
}

ProcessFactory = Callable[..., ManagedProcess]


def prompt_path(prompt_id: str, directory: Path = PROMPTS_DIR) -> Path:
    """Where the WAV of `prompt_id` lives (it may not exist: e.g. the spoken name of a custom platform)."""
    return directory / f"{prompt_id}.wav"


def concatenate(parts: Sequence[Path], target: Path) -> Path:
    """Join WAVs of one format into `target` (one paplay per sequence: nothing to schedule between the parts)."""
    with wave.open(str(parts[0])) as first:
        params = first.getparams()
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        for part in parts:
            with wave.open(str(part)) as handle:
                if (handle.getnchannels(), handle.getsampwidth(), handle.getframerate()) != params[:3]:
                    raise ValueError(f"{part}: format differs from {parts[0]}")
                out.writeframes(handle.readframes(handle.getnframes()))
    return target


class PromptPlayer:
    """Plays prompts into a PulseAudio sink, one at a time: a new prompt (or stop()) interrupts the one playing.

    `server` is the PULSE_SERVER value (media.MediaPlan.pulse_server); None uses the environment's. Not thread-safe:
    call it from the thread that feeds the menu.
    """

    def __init__(
        self,
        *,
        sink: str = ROOM_SINK,
        server: str | None = None,
        directory: Path = PROMPTS_DIR,
        log: LogSink | None = None,
        paplay: str = "paplay",
        process_factory: ProcessFactory = ManagedProcess,
    ) -> None:
        self.sink = sink
        self.server = server
        self.directory = directory
        self.log = log
        self.paplay = paplay
        self.process_factory = process_factory
        self.current: tuple[str, ...] = ()  # the prompt ids last started
        self._process: ManagedProcess | None = None
        self._workdir: Path | None = None  # joined sequences, removed by close()

    def argv(self, wav: Path) -> list[str]:
        """The paplay command playing `wav` into the sink."""
        return [self.paplay, f"--device={self.sink}", "--client-name=sipmediagw-prompt", str(wav)]

    def play(self, prompt: str | Sequence[str]) -> bool:
        """Stop what is playing, then play `prompt` (an id, or ids played back to back). Ids without a WAV are
        skipped (logged); returns False when nothing was left to play."""
        ids = (prompt,) if isinstance(prompt, str) else tuple(prompt)
        self.stop()
        parts = []
        for prompt_id in ids:
            path = prompt_path(prompt_id, self.directory)
            if path.is_file():
                parts.append(path)
            else:
                self._emit(f"no recording of prompt {prompt_id!r} ({path}): skipped")
        if not parts:
            return False
        wav = parts[0] if len(parts) == 1 else self._joined(parts)
        env = {"PULSE_SERVER": self.server} if self.server else {}
        process = self.process_factory("prompt", self.argv(wav), env=env, log=self.log, stop_timeout=1.0)
        try:
            process.start()
        except ComponentFailed as exc:
            self._emit(f"cannot play prompt {' '.join(ids)}: {exc.reason}")
            return False
        self._process, self.current = process, ids
        return True

    def stop(self) -> None:
        """Interrupt the prompt playing (the caller pressed a key); nothing playing is fine."""
        process, self._process = self._process, None
        if process is not None:
            process.stop()

    @property
    def pid(self) -> int | None:
        """Pid of the paplay of the prompt last started (None when none was started since the last stop)."""
        return self._process.pid if self._process is not None else None

    @property
    def playing(self) -> bool:
        """True while a prompt is being played."""
        return self._process is not None and self._process.alive()

    def wait(self, timeout: float, interval: float = 0.05) -> bool:
        """Wait until the prompt has been played (e.g. "Goodbye" before the hang-up); False if still playing."""
        deadline = time.monotonic() + timeout
        while self.playing:
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
        return True

    def close(self) -> None:
        """Stop playing and remove the joined sequences; idempotent."""
        self.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _joined(self, parts: list[Path]) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="sipmediagw-prompts-"))
        key = hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:16]
        target = self._workdir / f"{key}.wav"
        return target if target.is_file() else concatenate(parts, target)

    def _emit(self, message: str) -> None:
        if self.log is not None:
            try:
                self.log(message)
            except Exception:  # a broken log sink must not stop the menu
                pass
