"""The explorer as a person uses it: a headless Chromium opens the page served by ``Executors/explore.py`` on a
tiny trained DiffAE, types a wrong subject ID (a readable error line, the page still works), loads a subject,
moves the frame slider and a direction slider, and sees the picture change without any error.

Screenshots go to the test's temporary folder. Every request the page makes must go to the local server: the page
works offline. Skipped, with the reason, where Chromium, chromedriver, selenium or gradio is missing (.ci/run
installs all of them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DDIM_STEPS = 2
WAIT_S = 120  # generous: the CI machine has 2 busy cores


def _missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing (apt-get install chromium chromium-driver; .ci/run installs them)"
    for module, extra in (("selenium", "dev"), ("gradio", "explore")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[{extra}]')"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_serving(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"explore.py exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"explore.py did not serve {url} within {WAIT_S} s:\n{log.read_text()}")


@pytest.fixture
def explorer_url(diffae_runs, tmp_path, repo_root) -> Iterator[str]:
    """The URL of explore.py serving the tiny 3D run; the server is always stopped afterwards."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "server.log"
    cmd = [sys.executable, "Executors/explore.py", "--run_dir", str(diffae_runs.run3d)]
    cmd += ["--ddim_steps", str(DDIM_STEPS), "--port", str(port), "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=repo_root, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_until_serving(proc, url, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # the network log
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _requested_urls(driver) -> set[str]:
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return urls


def _nifti_of(run_dir: Path, subject: str, folder: Path) -> Path:
    """The subject's cine from the run's demo data as a NIfTI file (x, y, 1, t), as a user would upload it."""
    import h5py
    import nibabel as nib
    import numpy as np

    from Engineering.configuration.resolve import load_resolved
    from Engineering.data.demo import FIELD, SERIES

    hparams = load_resolved(run_dir / "resolved_config.yaml").hparams
    with h5py.File(Path(hparams.datadir) / (hparams.datafile or "data.h5"), "r") as f:
        cine = f[f"{subject}/{FIELD}/2_0/{SERIES}"][0]  # (T, S, X, Y)
    path = folder / f"{subject}.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(cine, (2, 3, 1, 0)), np.eye(4)), path)
    return path


def test_a_person_loads_a_subject_and_moves_the_sliders(explorer_url, browser, diffae_runs, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)

    def css(selector: str):
        return browser.find_elements(By.CSS_SELECTOR, selector)

    def status() -> str:
        return css("#explorer-status")[0].text

    def picture() -> bytes:  # the panels as the person sees them
        return css("#explorer-panels img")[0].screenshot_as_png

    def choose_subject(subject: str) -> None:
        box = css("#explorer-subject input")[0]
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(subject, Keys.ENTER)
        css("#explorer-load")[0].click()

    def drag(slider: str, pixels: int, until: Callable[[], bool]) -> None:
        handle = css(f"{slider} input[type=range]")[0]
        ActionChains(browser).click_and_hold(handle).move_by_offset(pixels, 0).release().perform()
        wait.until(lambda _: until())

    browser.get(explorer_url)
    wait.until(lambda _: css("#explorer-load"))
    assert f"DDIM steps: {DDIM_STEPS}" in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(tmp_path / "0_opened.png"))

    choose_subject("999999")
    wait.until(lambda _: css(".explorer-error"))
    assert "subject 999999 is not in" in status()
    browser.save_screenshot(str(tmp_path / "1_wrong_subject.png"))

    subject = diffae_runs.patients[0]
    choose_subject(subject)
    wait.until(lambda _: status().startswith(f"Loaded {subject}/") and css("#explorer-panels img"))
    assert f"with {DDIM_STEPS} steps each" in status()
    browser.save_screenshot(str(tmp_path / "2_loaded.png"))

    first_frame = picture()
    drag("#explorer-frame", 60, lambda: picture() != first_frame)
    loaded = picture()
    drag("#explorer-direction-0", 70, lambda: status().startswith("Decoded the moved latent"))
    wait.until(lambda _: picture() != loaded)
    browser.save_screenshot(str(tmp_path / "3_moved.png"))

    css("#explorer-upload input[type=file]")[0].send_keys(
        str(_nifti_of(diffae_runs.run3d, diffae_runs.patients[1], tmp_path))
    )
    css("#explorer-load-upload")[0].click()
    wait.until(lambda _: status().startswith("Loaded upload/"))
    browser.save_screenshot(str(tmp_path / "4_uploaded.png"))

    assert not css(".explorer-error"), status()
    assert not css(".toast-body.error"), "Gradio showed an error toast"
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text
    foreign = sorted(u for u in _requested_urls(browser) if not u.startswith((explorer_url, "data:", "blob:")))
    assert not foreign, f"the page requested outside resources: {foreign[:5]}"
