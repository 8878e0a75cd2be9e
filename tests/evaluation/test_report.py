import shutil

import pytest

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.evaluation.report import build_report
from conftest import TINY


@pytest.fixture(scope="module")
def report(tmp_path_factory, bars):
    out = tmp_path_factory.mktemp("report") / "run"
    cnnlab.train(bars, out, epochs=2, gradient_every=2, hflip=0.5, val_split=0.3, **TINY)
    return build_report(out, bars)


def test_report_is_one_self_contained_file_with_every_section(report):
    text = report.read_text()
    for heading in ("The run", "The model", "Training", "Evaluation", "Most confident mistakes", "Augmentation",
                    "Gradient flow"):
        assert f"<h2>{heading}</h2>" in text, heading
    assert 'class="metrics"' in text and 'alt="confusion matrix (counts)"' in text
    assert "Grad-CAM" in text and "hflip=0.5" in text
    assert "http://" not in text and "https://" not in text  # opens offline
    assert text.count("data:image/png;base64,") >= 6


def test_report_renders_in_a_real_browser(report, tmp_path):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", f"--user-data-dir={tmp_path / 'ud'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(report.as_uri())
        table = browser.find_element(By.CSS_SELECTOR, "table.metrics")
        assert "macro avg" in table.text and "precision" in table.text
        cm = browser.find_element(By.CSS_SELECTOR, "img[alt='confusion matrix (counts)']")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", cm) > 100
        broken = browser.execute_script("return [...document.images].filter(i => !i.naturalWidth).length")
        assert broken == 0
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        browser.quit()


def test_report_of_a_run_without_metrics_is_a_clear_error(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "metrics.csv").unlink()
    with pytest.raises(CnnlabError, match="has no metrics yet"):
        build_report(run)
