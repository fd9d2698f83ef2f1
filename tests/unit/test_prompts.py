"""The spoken prompts: the WAVs in the package match their texts, and PromptPlayer's process handling (fake paplay).

Real paplay into a real PulseAudio null sink, recorded and measured: tests/integration/test_menu_real.py.
"""

from __future__ import annotations

import hashlib
import json
import wave
from pathlib import Path

from sipmediagw.gateway import ivr
from sipmediagw.gateway.media import ROOM_SINK
from sipmediagw.gateway.process import ComponentFailed
from sipmediagw.gateway.prompts import MANIFEST, PROMPTS_DIR, RATE, SPOKEN, PromptPlayer, concatenate, prompt_path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DRIVERS = sorted(p.stem for p in (ROOT / "browsing").glob("*.py"))


# -- the files --------------------------------------------------------------------------------------------------------
def test_every_prompt_has_a_small_16k_mono_wav() -> None:
    for prompt_id in SPOKEN:
        with wave.open(str(prompt_path(prompt_id))) as handle:
            assert (handle.getnchannels(), handle.getsampwidth(), handle.getframerate()) == (1, 2, RATE), prompt_id
            seconds = handle.getnframes() / RATE
        assert 0.3 < seconds < 6, (prompt_id, seconds)
    assert sorted(p.stem for p in PROMPTS_DIR.glob("*.wav")) == sorted(SPOKEN)  # no stale file either
    assert sum(p.stat().st_size for p in PROMPTS_DIR.glob("*.wav")) < 2_000_000


def test_manifest_matches_the_texts_and_the_files() -> None:
    """A text changed without `scripts/make-prompts` fails here."""
    manifest = json.loads(MANIFEST.read_text())
    assert {k: v["text"] for k, v in manifest["prompts"].items()} == SPOKEN, "run scripts/make-prompts"
    for prompt_id, entry in manifest["prompts"].items():
        assert hashlib.sha256(prompt_path(prompt_id).read_bytes()).hexdigest() == entry["sha256"], prompt_id
    assert "espeak-ng" in manifest["generator"].lower() or "espeak ng" in manifest["generator"].lower()


def test_everything_the_menu_can_say_with_the_shipped_drivers_is_recorded() -> None:
    said: set[str] = set()
    for platforms in ((), tuple(SHIPPED_DRIVERS)):
        menu = ivr.KeypadMenu(lambda meeting, platform: meeting == "1", platforms, clock=lambda: 0.0, max_attempts=9)
        said.update(menu.start().prompt)
        for key in "0" * 2 + "1" + "#" + "9#" + "*" * 2 + "1" + "1#":
            said.update(menu.key(key).prompt)
    said.update((ivr.TOO_MANY_ATTEMPTS, ivr.TIMEOUT_PROMPT, ivr.GOODBYE))
    said.update(ivr.press_prompt(n) for n in range(1, ivr.MAX_PLATFORMS + 1))
    assert {ivr.platform_prompt(d) for d in SHIPPED_DRIVERS} <= said
    assert said <= set(SPOKEN), said - set(SPOKEN)


def test_concatenate_joins_frames(tmp_path: Path) -> None:
    a, b = prompt_path(ivr.CHOOSE_PLATFORM), prompt_path(ivr.GOODBYE)
    joined = concatenate([a, b], tmp_path / "j.wav")
    with wave.open(str(a)) as ha, wave.open(str(b)) as hb, wave.open(str(joined)) as hj:
        assert hj.getnframes() == ha.getnframes() + hb.getnframes()
        assert hj.readframes(hj.getnframes()) == ha.readframes(ha.getnframes()) + hb.readframes(hb.getnframes())


# -- the player, with a fake process -----------------------------------------------------------------------------------
class FakeProcess:
    pid = 4242

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str] | None = None, log: object = None,
                 stop_timeout: float = 5.0, fail: bool = False) -> None:
        self.name, self.argv, self.env, self.stop_timeout = name, argv, env or {}, stop_timeout
        self.running = False
        self.stopped = False
        self.fail = fail

    def start(self) -> None:
        if self.fail:
            raise ComponentFailed(self.name, "cannot start paplay: No such file or directory")
        self.running = True

    def stop(self) -> int:
        self.running, self.stopped = False, True
        return 0

    def alive(self) -> bool:
        return self.running


class Factory:
    def __init__(self, fail: bool = False) -> None:
        self.made: list[FakeProcess] = []
        self.fail = fail

    def __call__(self, *args, **kwargs) -> FakeProcess:  # type: ignore[no-untyped-def]
        process = FakeProcess(*args, fail=self.fail, **kwargs)
        self.made.append(process)
        return process


def test_play_runs_paplay_into_the_sink_with_the_server() -> None:
    factory = Factory()
    player = PromptPlayer(server="unix:/tmp/gw/pulse", process_factory=factory)
    assert player.sink == ROOM_SINK  # the caller hears what baresip records: to_caller's monitor
    assert player.play(ivr.ENTER_MEETING)
    (process,) = factory.made
    assert process.argv == ["paplay", f"--device={ROOM_SINK}", "--client-name=sipmediagw-prompt",
                            str(prompt_path(ivr.ENTER_MEETING))]
    assert process.env == {"PULSE_SERVER": "unix:/tmp/gw/pulse"}
    assert player.playing and player.current == (ivr.ENTER_MEETING,) and player.pid == 4242


def test_a_new_prompt_interrupts_the_previous_one() -> None:
    factory = Factory()
    player = PromptPlayer(sink="s", process_factory=factory)
    player.play(ivr.ENTER_MEETING)
    player.play(ivr.UNKNOWN_MEETING)
    first, second = factory.made
    assert first.stopped and not first.running
    assert second.running and not second.stopped


def test_stop_interrupts_and_is_idempotent() -> None:
    factory = Factory()
    player = PromptPlayer(sink="s", process_factory=factory)
    player.stop()
    player.play(ivr.GOODBYE)
    player.stop()
    player.stop()
    assert factory.made[0].stopped and not player.playing and player.pid is None
    assert player.wait(0.1)


def test_wait_until_played() -> None:
    factory = Factory()
    player = PromptPlayer(sink="s", process_factory=factory)
    player.play(ivr.GOODBYE)
    assert not player.wait(0.05)
    factory.made[0].running = False  # paplay reached the end
    assert player.wait(1)


def test_a_sequence_is_one_joined_file(tmp_path: Path) -> None:
    factory = Factory()
    lines: list[str] = []
    player = PromptPlayer(sink="s", process_factory=factory, log=lines.append)
    sequence = (ivr.CHOOSE_PLATFORM, "press_1", "platform_jitsi", "press_2", "platform_custom")
    assert player.play(sequence)
    wav = Path(factory.made[0].argv[-1])
    with wave.open(str(wav)) as joined:
        expected = 0
        for part in sequence[:-1]:
            with wave.open(str(prompt_path(part))) as handle:
                expected += handle.getnframes()
        assert joined.getnframes() == expected
    assert any("platform_custom" in line and "skipped" in line for line in lines)
    player.play(sequence)  # the joined file is reused
    assert factory.made[1].argv[-1] == str(wav)
    player.close()
    assert not wav.exists() and factory.made[1].stopped
    player.close()


def test_nothing_to_play(tmp_path: Path) -> None:
    factory = Factory()
    player = PromptPlayer(sink="s", process_factory=factory, directory=tmp_path)
    assert not player.play("enter_meeting")
    assert factory.made == [] and not player.playing


def test_paplay_missing_is_reported_not_raised() -> None:
    lines: list[str] = []
    player = PromptPlayer(sink="s", process_factory=Factory(fail=True), log=lines.append)
    assert not player.play(ivr.GOODBYE)
    assert not player.playing and any("cannot play" in line for line in lines)
