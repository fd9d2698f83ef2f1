"""Browser flags and the injected script's configuration (the real-Chromium tests are in tests/integration)."""

from __future__ import annotations

import json

from sipmediagw.gateway.browser import chromium_arguments, injection_source, insecure_origin


def args(**kw):  # type: ignore[no-untyped-def]
    return chromium_arguments(window_size=(1280, 720), user_data_dir="/tmp/p", **kw)


def test_flags_for_a_headful_gateway_browser() -> None:
    a = args()
    for flag in ("--no-sandbox", "--kiosk", "--test-type", "--use-fake-ui-for-media-stream",
                 "--autoplay-policy=no-user-gesture-required", "--disable-background-networking",
                 "--window-size=1280,720", "--window-position=0,0", "--user-data-dir=/tmp/p"):
        assert flag in a
    disabled = next(x for x in a if x.startswith("--disable-features="))
    assert "LocalNetworkAccessChecks" in disabled
    # The fake capture device would replace the real PulseAudio microphone too.
    assert not any("use-fake-device-for-media-stream" in x for x in a)
    assert not any(x.startswith("--headless") for x in a)
    assert not any(x.startswith("--unsafely-treat-insecure-origin-as-secure") for x in a)


def test_the_sandbox_is_off_only_when_the_gateway_found_no_user_namespaces() -> None:
    assert {"--no-sandbox", "--test-type"} <= set(args())  # the default: a host without the probe
    sandboxed = args(sandbox=True)
    assert "--no-sandbox" not in sandboxed and "--test-type" not in sandboxed
    assert set(sandboxed) == set(args()) - {"--no-sandbox", "--test-type"}


def test_http_room_origins_are_treated_as_secure() -> None:
    a = args(insecure_origins=["http://172.17.0.1:8000/videoroom.html?room=1", "https://meet.example.org",
                               "http://localhost:8000/x"])
    assert "--unsafely-treat-insecure-origin-as-secure=http://172.17.0.1:8000" in a


def test_insecure_origin() -> None:
    assert insecure_origin("http://172.17.0.1:8000/a?b") == "http://172.17.0.1:8000"
    assert insecure_origin("https://x.org/") is None
    assert insecure_origin("http://127.0.0.1:9/") is None
    assert insecure_origin("http://app.localhost/") is None
    assert insecure_origin("ftp://x") is None


def test_headless_and_extra_args() -> None:
    a = args(headless=True, extra_args=["--lang=fr"])
    assert "--headless=new" in a and a[-1] == "--lang=fr"


def test_injection_source_embeds_the_config_as_json() -> None:
    src = injection_source("http://127.0.0.1:5000/stream", (640, 360), fps=15)
    config = json.loads(src[src.rindex("(") + 1: src.rindex(")")])
    assert config == {"cameraUrl": "http://127.0.0.1:5000/stream", "cameraSize": [640, 360], "fps": 15,
                      "audioOnly": False}
    assert src.lstrip().startswith("//") and "(function (config)" in src
    audio_only = injection_source(None, (640, 360), audio_only=True)
    assert json.loads(audio_only[audio_only.rindex("(") + 1: audio_only.rindex(")")])["audioOnly"] is True


def test_injection_source_cannot_be_broken_by_the_url() -> None:
    hostile = "http://127.0.0.1:1/s\"});alert(1);//</script>"
    src = injection_source(hostile, (640, 360))
    tail = src[src.rindex("})(") + 3:]
    assert json.loads(tail.rstrip().rstrip(";")[:-1])["cameraUrl"] == hostile
