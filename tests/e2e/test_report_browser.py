"""The HTML report in a real browser (Debian's headless Chromium driven by Playwright)."""

from __future__ import annotations

import pytest

from emoflow.config import PipelineConfig
from emoflow.pipeline import Pipeline
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, need_shared

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def report(replicas, whisper_tiny_dir, tmp_path_factory):
    audio = need_shared("audio", "speech", "three_moods.wav")
    config = PipelineConfig(
        asr_model=str(whisper_tiny_dir),
        audio_model=str(replicas["emotion2vec"]),
        text_model=str(replicas["text-emotion"]),
        encoder_model=str(replicas["distilbert"]),
    )
    result = Pipeline(config).analyze(audio)
    out = result.save(tmp_path_factory.mktemp("report") / "three_moods", ["html"])
    return out / "report.html", result


def test_report_shows_timeline_and_table_and_seeks_on_click(browser, report, tmp_path):
    path, result = report
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_selector("#timeline .main-svg", timeout=20_000)
    # one line per audio emotion label in the chart, one row per sentence in the table
    assert page.locator("#timeline .scatterlayer .trace").count() == len(result.timeline.labels)
    rows = page.locator("#sentences tbody tr")
    assert rows.count() == len(result.sentences) == 3
    assert "happy" in rows.nth(0).inner_text().lower()
    page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=20_000)
    rows.nth(1).click()
    start = result.sentences[1].sentence.start
    page.wait_for_function(
        f"Math.abs(document.getElementById('player').currentTime - {start}) < 0.3", timeout=10_000
    )
    t = page.evaluate("document.getElementById('player').currentTime")
    assert t == pytest.approx(start, abs=0.3)
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    # self-contained: nothing was fetched but the file itself and inline data
    assert all(u.startswith(("file:", "data:")) for u in requests), requests


def test_reports_sharing_plotly_draw_the_chart_offline(browser, report, tmp_path):
    """A batch's reports load one plotly.js by relative path; a report moved away from it still
    shows the table and seeks the player, and says where the chart's script was looked for."""
    from emoflow.export.writers import SHARED_ASSETS, save_result

    _, result = report
    out = save_result(result, tmp_path / "three_moods", ["html"], assets_dir=tmp_path / SHARED_ASSETS)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((out / "report.html").as_uri())
    page.wait_for_selector("#timeline .main-svg", timeout=20_000)
    assert page.locator("#timeline .scatterlayer .trace").count() == len(result.timeline.labels)
    assert any(u.startswith("file:") and f"/{SHARED_ASSETS}/plotly-" in u for u in requests), requests
    assert all(u.startswith(("file:", "data:")) for u in requests), requests

    moved = tmp_path / "elsewhere" / "three_moods"  # no ../_assets beside it
    moved.mkdir(parents=True)
    (moved / "report.html").write_bytes((out / "report.html").read_bytes())
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto((moved / "report.html").as_uri())
    page.wait_for_selector("#timeline p.muted", timeout=20_000)
    assert "plotly.js" in page.locator("#timeline").inner_text()
    page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=20_000)
    page.locator("#sentences tbody tr").nth(2).click()
    start = result.sentences[2].sentence.start
    page.wait_for_function(
        f"Math.abs(document.getElementById('player').currentTime - {start}) < 0.3", timeout=10_000
    )


@pytest.fixture(scope="module")
def diarised_report(replicas, whisper_tiny_dir, tmp_path_factory):
    """A two-speaker conversation analysed with the offline (GE2E) diarisation."""
    audio = need_shared("data", "conversations", "conv1.wav")
    config = PipelineConfig(
        asr_model=str(whisper_tiny_dir),
        audio_model=str(replicas["emotion2vec"]),
        text_model=str(replicas["text-emotion"]),
        encoder_model=str(replicas["distilbert"]),
        diarize=True,
    )
    result = Pipeline(config).analyze(audio)
    out = result.save(tmp_path_factory.mktemp("diarised") / "conv1", ["html"])
    return out / "report.html", result


def test_a_diarised_report_has_a_lane_per_speaker_and_filters_the_sentences(browser, diarised_report):
    path, result = diarised_report
    speakers = list(result.diarization.speakers)
    assert len(speakers) == 2
    mine = {s: [r.sentence.index for r in result.sentences if r.sentence.speaker == s] for s in speakers}
    assert all(mine.values()) and sum(map(len, mine.values())) == len(result.sentences)
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.goto(path.as_uri())
    page.wait_for_selector("#timeline .main-svg", timeout=20_000)
    # one lane per speaker: its name on the lanes' axis and a bar per turn, in its own colour
    lanes = page.evaluate(
        "Array.from(document.querySelectorAll('#timeline .y2tick text')).map(t => t.textContent)"
    )
    assert lanes == speakers
    turns = page.evaluate(
        "document.getElementById('timeline').data.filter(t => t.meta === 'turns')"
        ".map(t => [t.name, t.x.length, t.marker.color])"
    )
    assert [t[:2] for t in turns] == [
        [s, sum(t.speaker == s for t in result.diarization.turns)] for s in speakers
    ]
    assert len({t[2] for t in turns}) == len(speakers)
    assert page.locator("#speakers tbody tr").count() == len(speakers)
    # the filter shows only the chosen speaker's sentences, then all again
    rows = page.locator("#sentences tbody tr")
    assert rows.count() == len(result.sentences)
    for s in speakers:
        page.select_option("#speaker-filter", s)
        visible = page.locator("#sentences tbody tr:visible")
        assert visible.count() == len(mine[s])
        assert {visible.nth(i).get_attribute("data-speaker") for i in range(visible.count())} == {s}
        assert f"{len(mine[s])} of {len(result.sentences)}" in page.locator("#speaker-count").inner_text()
    page.select_option("#speaker-filter", "")
    assert page.locator("#sentences tbody tr:visible").count() == len(result.sentences)
    # clicking a speaker's turn in its lane plays from that turn's start
    page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=20_000)
    second = next(t for t in result.diarization.turns if t.speaker == speakers[1])
    box = page.locator("#timeline .barlayer .trace").nth(3).locator(".point").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function(
        f"Math.abs(document.getElementById('player').currentTime - {second.start}) < 0.6", timeout=10_000
    )
