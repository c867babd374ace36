"""The page ``softmoa serve`` shows at /, in headless Chromium (selenium): a real server on
loopback, an FSDD clip uploaded through the file input, and what the page shows (labels,
scores, multi-label marks, a timeline's plot and segments, an error) against what
``POST /v1/tasks/NAME/predict`` answers for the same file. Skips without Chromium and
chromedriver (Debian: ``apt-get install chromium chromium-driver``; .ci/run installs them)."""

from __future__ import annotations

import json
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="the page test drives headless Chromium and finds no "
                                       f"{'chromium' if CHROMIUM is None else 'chromedriver'} on PATH "
                                       "(Debian: apt-get install chromium chromium-driver)")
WAIT = 60  # seconds any one step may take


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory) -> dict:
    """Two tiny runs on one random backbone taking 1 s windows of real audio: ``digits``, a
    single-label Soft-MoA run, and ``tags``, a multi-label LoRA run (the toy features are noise:
    untrained in effect; the API is the reference either way)."""
    from helpers import toy_config, toy_table

    from softmoa_cli.engine.data.features import FeatureConfig
    from softmoa_cli.engine.data.table import FeatureTable
    from softmoa_cli.engine.train import finetune

    toy = toy_table()
    table = FeatureTable("toy", toy.features.repeat(2, axis=1).repeat(4, axis=2), toy.labels, toy.label_names,
                         toy.split, toy.fold, FeatureConfig(num_mel_bins=128, max_length=96))
    base = tmp_path_factory.mktemp("page-runs")
    configs = {"digits": toy_config("soft", epochs=1, data={"max_length": 96}),
               "tags": toy_config("lora", epochs=1, data={"max_length": 96, "task": "multilabel"})}
    return {name: finetune(config, base / name, table=table)[0] for name, config in configs.items()}


@pytest.fixture(scope="module")
def server(page_runs, tmp_path_factory):
    """``softmoa serve digits=RUN tags=RUN --port 0`` on 127.0.0.1: its URL; stopped by SIGTERM."""
    log = tmp_path_factory.mktemp("page-server") / "stderr.txt"
    with log.open("w") as errors:
        process = subprocess.Popen([sys.executable, "-c", "from softmoa_cli.cli.app import main; main()", "serve",
                                    *(f"{name}={run}" for name, run in page_runs.items()), "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        url, deadline = None, time.monotonic() + 120
        while url is None and time.monotonic() < deadline and process.poll() is None:
            if select.select([process.stdout], [], [], 1)[0]:
                text = process.stdout.readline()
                url = text.split()[2] if text.startswith("serving on ") else None
        assert url is not None, f"softmoa serve did not start: {log.read_text()}"
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium at 1280x800, with a fake microphone it may use without asking."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=DriverService(CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


def api_predict(url: str, task: str, path: Path, **query) -> tuple[int, dict]:
    """What ``POST /v1/tasks/TASK/predict`` answers for the file: its status and JSON."""
    params = urllib.parse.urlencode({"filename": path.name, **query})
    request = urllib.request.Request(f"{url}/v1/tasks/{task}/predict?{params}", data=path.read_bytes(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def open_page(driver, url: str, task: str) -> None:
    driver.get(f"{url}/")
    until_state(driver, "ready")
    Select(driver.find_element(By.ID, "task")).select_by_value(task)


def until_state(driver, *states: str) -> str:
    """Wait for the status line to reach one of ``states``; the one it reached."""
    status = driver.find_element(By.ID, "status")
    WebDriverWait(driver, WAIT).until(lambda _: status.get_attribute("data-state") in states)
    return status.get_attribute("data-state")


def upload(driver, path: Path) -> str:
    """Choose ``path`` in the file input (the page sends it at once); the state it ends in."""
    driver.find_element(By.ID, "file").send_keys(str(path))
    return until_state(driver, "done", "error")


def shown(driver, rows: str, *fields: str) -> list[list[str]]:
    """The text of ``fields`` (classes) in each element matching ``rows``."""
    return [[row.find_element(By.CLASS_NAME, field).text for field in fields]
            for row in driver.find_elements(By.CSS_SELECTOR, rows)]


def same_score(text: str, score: float) -> bool:
    """Whether ``text`` is ``score`` to the precision it shows."""
    decimals = len(text.partition(".")[2])
    return abs(float(text) - score) <= 0.5 * 10 ** -decimals + 1e-9


def assert_predictions_shown(driver, answer: dict) -> None:
    rows = shown(driver, "#predictions .prediction", "label", "score")
    assert [label for label, _ in rows] == [p["label"] for p in answer["predictions"]]
    assert all(same_score(score, p["score"]) for (_, score), p in zip(rows, answer["predictions"])), rows


def test_a_clip_shows_the_labels_scores_and_marks_the_api_gives(browser, server, fsdd_clips):
    open_page(browser, server, "tags")
    facts = [fact.text for fact in browser.find_elements(By.CSS_SELECTOR, "#task-info dd")]
    assert facts == ["4", "multi-label", "lora", "0.96 s"]
    clip = fsdd_clips[0]
    assert upload(browser, clip) == "done"
    status, answer = api_predict(server, "tags", clip)
    assert status == 200 and "timeline" not in answer
    assert browser.find_element(By.ID, "result-title").text == f"{clip.name} · tags"
    assert_predictions_shown(browser, answer)
    marked = [row.get_attribute("class") == "prediction positive"
              for row in browser.find_elements(By.CSS_SELECTOR, "#predictions .prediction")]
    positive = {p["label"] for p in answer["positive"]}
    assert marked == [p["label"] in positive for p in answer["predictions"]]
    assert not browser.find_element(By.ID, "timeline").is_selected()
    assert not browser.find_element(By.ID, "timeline-view").is_displayed()


def test_a_long_file_shows_the_timeline_and_segments_the_api_gives(browser, server, fsdd_clips, tmp_path):
    """Eight clips end to end (3.2 s, over the 0.96 s window): the page turns the timeline on;
    with threshold 0 every stretch of it has a segment."""
    import soundfile as sf

    long = tmp_path / "long.wav"
    waves = [sf.read(clip, dtype="int16") for clip in fsdd_clips * 2]
    sf.write(long, np.concatenate([wave for wave, _ in waves]), waves[0][1], subtype="PCM_16")
    open_page(browser, server, "digits")
    assert upload(browser, long) == "done"
    assert browser.find_element(By.ID, "timeline").is_selected()
    browser.find_element(By.ID, "threshold").send_keys("0")
    browser.find_element(By.ID, "send").click()
    assert until_state(browser, "done", "error") == "done"
    status, answer = api_predict(server, "digits", long, timeline="true", threshold="0")
    assert status == 200 and answer["segments"]
    assert_predictions_shown(browser, answer)
    segments = shown(browser, "#segments .segment", "start", "end", "label", "score")
    assert len(segments) == len(answer["segments"])
    for (start, end, label, score), expected in zip(segments, answer["segments"]):
        assert label == expected["label"] and same_score(score, expected["score"])
        assert same_score(start, expected["start"]) and same_score(end, expected["end"])
    plot = browser.find_element(By.CSS_SELECTOR, "#plot svg")
    assert plot.is_displayed() and plot.find_elements(By.CSS_SELECTOR, "path.line")
    assert len(plot.find_elements(By.TAG_NAME, "rect")) == len(answer["segments"])


def test_an_error_of_the_api_is_shown_in_one_line(browser, server, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio at all\n")
    open_page(browser, server, "digits")
    assert upload(browser, notes) == "error"
    status, answer = api_predict(server, "digits", notes)
    assert status == 400
    assert browser.find_element(By.ID, "error").text == answer["error"]
    assert not browser.find_element(By.ID, "output").is_displayed()


def test_a_recording_from_the_microphone_is_sent_as_a_wav(browser, server):
    """Chromium's fake microphone (a beep): record a second, stop, and the server scores it."""
    open_page(browser, server, "digits")
    record = browser.find_element(By.ID, "record")
    record.click()
    WebDriverWait(browser, WAIT).until(lambda _: record.text.startswith("Stop (") and float(record.text[6:-3]) >= 1)
    record.click()
    assert until_state(browser, "done", "error") == "done", browser.find_element(By.ID, "error").text
    assert browser.find_element(By.ID, "result-title").text == "recording.wav · digits"
    assert len(shown(browser, "#predictions .prediction", "label", "score")) == 4
