"""`impact-demo` served for real on 127.0.0.1 with the embedded default model, used from headless Chromium (Debian's
package, driven by Playwright) and loaded with 20 concurrent API requests.

Chromium is required, not optional: the README's test command installs it (`apt-get install -y chromium`). The
screenshots land in `test-artifacts/` at the repository root.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile


REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SERVER_START_TIMEOUT_S = 300
GENERATION_TIMEOUT_MS = 180_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def is_serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`impact-demo` (both heads of the default model, two requests at a time) on a free port; its URL."""
    port, folder = free_port(), tmp_path_factory.mktemp("impact-demo")
    log = open(folder / "server.log", "w")
    command = [
        sys.executable,
        "-m",
        "diffusers_impact.demo",
        "--port",
        str(port),
        "--concurrency",
        "2",
        "--max-length",
        "12",
        "--output-dir",
        str(folder / "outputs"),
    ]
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not is_serving(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"impact-demo did not start serving {url}:\n{(folder / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.fixture
def browser_page(server):
    """A page of headless Chromium on the demo; every URL it requests is recorded in `page.requested_urls`."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), (
        f"Chromium is not installed ({CHROMIUM}); install it with `apt-get update && apt-get install -y chromium` "
        "(the README's test command does)."
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.requested_urls = []
        page.on("request", lambda request: page.requested_urls.append(request.url))
        page.goto(server)
        yield page
        browser.close()


def check_wav_in_browser(page, link_selector: str, seconds: float) -> np.ndarray:
    """The WAV behind a download link: Chromium plays it (its duration), and its bytes are a finite, non-silent 16 kHz
    clip of that length. Returns the samples."""
    link = page.locator(link_selector)
    link.wait_for(state="attached", timeout=GENERATION_TIMEOUT_MS)
    url = link.get_attribute("href")
    duration = page.evaluate(
        """url => new Promise((resolve, reject) => {
            const audio = new Audio(url);
            audio.onloadedmetadata = () => resolve(audio.duration);
            audio.onerror = () => reject(new Error("Chromium cannot play " + url));
        })""",
        url,
    )
    assert duration == pytest.approx(seconds, abs=0.02)
    response = page.request.get(url)
    assert response.ok
    path = ARTIFACTS / Path(url).name
    path.write_bytes(response.body())
    samples, sampling_rate = soundfile.read(path, dtype="float32")
    assert sampling_rate == 16000 and len(samples) == round(seconds * 16000)
    assert np.isfinite(samples).all() and np.abs(samples).max() > 0.01
    return samples


def check_image_shown(page, selector: str) -> None:
    image = page.locator(f"{selector} img")
    image.wait_for(timeout=GENERATION_TIMEOUT_MS)
    page.wait_for_function(f"document.querySelector('{selector} img').naturalWidth > 100")


def test_text_to_audio_in_a_real_browser(browser_page, server):
    page = browser_page
    page.locator("#prompt textarea").fill("a dog barking")
    page.locator("#generate").click()
    first = check_wav_in_browser(page, "#candidate-0 a[data-testid=download-link]", 5.12)
    second = check_wav_in_browser(page, "#candidate-1 a[data-testid=download-link]", 5.12)
    assert not np.allclose(first, second)  # two candidates, two seeds
    check_image_shown(page, "#mel-0")
    check_image_shown(page, "#mel-1")
    page.screenshot(path=ARTIFACTS / "demo_text_to_audio.png", full_page=True)

    page.locator("#prompt textarea").fill("   ")
    page.locator("#generate").click()
    page.get_by_text("Type a prompt first").first.wait_for(timeout=30_000)  # Gradio's error toast, top right
    page.wait_for_timeout(1000)  # its slide-in, for the screenshot
    page.screenshot(path=ARTIFACTS / "demo_bad_input.png")
    assert "Traceback" not in page.content()

    # Nothing was fetched from anywhere but the demo's own server (no fonts, no analytics).
    assert page.requested_urls and all(
        url.startswith(server) or url.startswith("data:") or url.startswith("blob:") for url in page.requested_urls
    ), sorted(set(page.requested_urls))


def test_audio_to_audio_in_a_real_browser(browser_page, tmp_path):
    page = browser_page
    page.get_by_role("tab", name="Audio to audio").click()
    dog = REPO / "assets" / "animal_sounds" / "dog.mp3"
    page.locator("#input-audio input[type=file]").set_input_files(dog)
    page.locator("#audio-prompt textarea").fill("a cat meowing")
    page.get_by_role("radio", name="Continue").check()
    page.locator("#transform").click()
    check_wav_in_browser(page, "#output-audio a[data-testid=download-link]", 10.24)  # the slider's default length
    check_image_shown(page, "#input-mel")
    check_image_shown(page, "#output-mel")
    page.screenshot(path=ARTIFACTS / "demo_audio_to_audio.png", full_page=True)

    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are not samples")
    page.reload()
    page.get_by_role("tab", name="Audio to audio").click()
    page.locator("#audio-prompt textarea").fill("a cat meowing")
    page.locator("#input-audio input[type=file]").set_input_files(not_audio)
    page.locator("#transform").click()
    page.get_by_text("cannot be read as audio").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=ARTIFACTS / "demo_audio_bad_input.png")


def test_twenty_concurrent_requests_are_all_answered_and_the_server_keeps_serving(server):
    """Seeds 0–9, each asked twice at once: every answer is a real clip, and the two answers of a seed are the same
    clip (concurrent requests do not disturb each other's decoding)."""
    from gradio_client import Client

    client = Client(server, verbose=False)
    settings = ("", "diffusion", 8, 25, 5.0)  # negative prompt, head, iterations, head steps, guidance

    def request(seed):
        result = client.predict("a dog barking", *settings, seed, 5.12, 1, api_name="/text_to_audio")
        return soundfile.read(result[-1][0], dtype="float32")

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(request, [seed for seed in range(10) for _ in range(2)], timeout=600))
    assert len(answers) == 20
    for samples, sampling_rate in answers:
        assert sampling_rate == 16000 and samples.shape == (81920,)
        assert np.isfinite(samples).all() and np.abs(samples).max() > 0.01
    for seed in range(10):
        np.testing.assert_allclose(answers[2 * seed][0], answers[2 * seed + 1][0], atol=1.5 / 32768)
    assert not np.array_equal(answers[0][0], answers[2][0])
    assert is_serving(server)
    samples, _ = request(123)  # and it still generates
    assert np.abs(samples).max() > 0.01
