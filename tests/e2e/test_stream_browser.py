"""The /live page in headless Chromium with a fake microphone fed from a WAV: the page captures
it (getUserMedia + AudioWorklet), streams 16-bit PCM to /v1/stream and fills in the chart and
the sentence list."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import CHROMIUM, CHROMIUM_ARGS, need_shared

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live_url(replica_config, tmp_path_factory):  # type: ignore[no-untyped-def]
    import uvicorn
    from fastapi import FastAPI

    from emoflow.pipeline import Pipeline
    from emoflow.service.settings import ServiceSettings
    from emoflow.service.stream import register_stream

    app = FastAPI()
    store = tmp_path_factory.mktemp("live") / "store"
    register_stream(app, Pipeline(replica_config), ServiceSettings(store=store, token="pagetoken"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/live"
    server.should_exit = True
    thread.join(timeout=10)


def test_live_page_with_a_fake_microphone(live_url: str, tmp_path: Path) -> None:
    if not CHROMIUM:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    wav = need_shared("audio", "speech", "interview.wav")
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
    ]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(live_url)
            page.fill("#token", "pagetoken")
            page.click("#start")
            # windows arrive each second once the first 3 s are in; a sentence after its pause
            page.wait_for_function("window.emoflowLive.windows.length >= 4", timeout=90_000)
            page.wait_for_function("window.emoflowLive.sentences >= 1", timeout=120_000)
            page.click("#stop")
            page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('done')", timeout=120_000
            )
            labels = page.evaluate("window.emoflowLive.labels")
            assert len(labels) == 9 and page.locator("#legend span").count() == 9
            assert page.locator("#sentences tbody tr").count() >= 1
            text = page.locator("#sentences tbody").inner_text().lower()
            assert "started" in text or "moved" in text or "scared" in text or "better" in text
            assert not errors
            page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
        finally:
            browser.close()
