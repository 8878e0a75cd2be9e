"""The experiment pages in headless Chromium at 1280x800: the verdict is visible without scrolling."""
import shutil

import pytest

import cnnlab

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                                                                   "(make test installs them)")]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--window-size=1280,800", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_window_size(1280, 800)
    yield driver
    driver.quit()


@pytest.mark.parametrize("name", ["activations", "gd-modes"])
def test_verdict_is_visible_without_scrolling(name, browser, bars, tmp_path):
    from selenium.webdriver.common.by import By

    # The tiny bars set keeps the runs to seconds; the page's layout is the same as on digits.
    result = cnnlab.experiment(name, data=str(bars), quick=True, seeds=2, out=tmp_path / name)
    browser.get(result.html_path.resolve().as_uri())
    verdict = browser.find_element(By.ID, "verdict")
    height = browser.execute_script("return window.innerHeight")
    top = browser.execute_script("return arguments[0].getBoundingClientRect().bottom", verdict)
    word = verdict.text.split(":")[0]
    assert verdict.is_displayed() and word in ("Supported", "Inconclusive", "Not supported at this scale")
    assert verdict.text.count(word) == 1 and result.checks[0].claim in verdict.text  # the verdict said once
    assert 0 < top <= height, f"the verdict ends at {top}px, below the first {height}px"
    shot = tmp_path / f"{name}.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
