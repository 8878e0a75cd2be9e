import shutil

import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.evaluation.report import build_report, grad_cam
from conftest import TINY


@pytest.fixture(scope="module")
def report(tmp_path_factory, bars):
    out = tmp_path_factory.mktemp("report") / "run"
    cnnlab.train(bars, out, epochs=2, gradient_every=2, hflip=0.5, val_split=0.3, **TINY)
    return build_report(out, bars)


def test_report_is_one_self_contained_file_with_every_section(report):
    text = report.read_text()
    order = ["The run", "Training", "Evaluation", "Most confident mistakes", "Data health", "Augmentation",
             "Gradient flow", "Details"]
    for heading in order:
        assert f"<h2>{heading}</h2>" in text, heading
    positions = [text.index(f"<h2>{h}</h2>") for h in order]
    assert positions == sorted(positions)  # top-down: results first, details last
    assert text.index('id="headline"') < positions[0]
    assert "<h3>Calibration</h3>" in text and 'alt="reliability diagram"' in text
    # the config and the layer table come last, folded
    details = text[positions[-1]:]
    assert details.count("<details>") == 2 and "Resolved config" in details and "layer by layer" in details
    assert "schema_version" not in text[:positions[-1]]
    assert 'class="metrics"' in text and 'alt="confusion matrix (counts)"' in text
    assert text.count(" + Grad-CAM</div>") >= 1 and "hflip=0.5" in text  # cards with a heatmap drawn
    assert text.count('<div class="card">') == text.count(" + Grad-CAM</div>")  # every card, not the first three
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
        browser.set_window_size(1280, 800)
        browser.get(report.as_uri())
        headline = browser.find_element(By.ID, "headline")
        box = browser.execute_script("const r = arguments[0].getBoundingClientRect(); "
                                     "return [r.top, r.bottom, window.innerHeight, window.scrollY]", headline)
        assert box[3] == 0 and 0 <= box[0] < box[1] <= box[2]  # wholly in view before any scrolling
        accuracy = browser.find_element(By.CSS_SELECTOR, "#h-accuracy b").text
        assert 0 <= float(accuracy) <= 1 and float(browser.find_element(By.CSS_SELECTOR, "#h-ece b").text) >= 0
        assert browser.find_element(By.CSS_SELECTOR, "#h-f1 b").is_displayed()
        folded = browser.find_element(By.XPATH, "//summary[contains(., 'Resolved config')]/following-sibling::pre")
        assert not folded.is_displayed()  # folded until opened
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


class _Crafted:
    """A predictor-shaped holder of a hand-made model: a 3x3 mean filter, global average pooling, and two
    classes, the first rising with brightness and the second falling with it."""

    def __init__(self):
        conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
        torch.nn.init.constant_(conv.weight, 1 / 9)
        linear = torch.nn.Linear(1, 2, bias=False)
        linear.weight.data = torch.tensor([[1.0], [-1.0]])
        self.model = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), linear)


def test_grad_cam_peaks_on_the_region_that_decides_the_class():
    image = torch.zeros(1, 16, 16, dtype=torch.uint8)
    image[0, 10:14, 2:6] = 255  # the one bright square: all the evidence for class 0
    heat = grad_cam(_Crafted(), image, target=0)
    assert heat.shape == (16, 16) and float(heat.max()) == pytest.approx(1.0)
    row, col = divmod(int(heat.argmax()), 16)
    assert 10 <= row < 14 and 2 <= col < 6
    assert float(heat[:6, 8:].max()) == 0.0  # far from the square: no evidence
    # Class 1 falls with brightness: the square counts against it, and ReLU'd Grad-CAM shows nothing.
    assert float(grad_cam(_Crafted(), image, target=1).max()) == 0.0


def test_a_class_with_no_held_out_image_is_na_in_the_report(tmp_path):
    """The validation split has no image of class c: its precision, recall and F1 are n/a, not a TypeError."""
    from conftest import write_images

    data = tmp_path / "data"
    write_images(data / "train", {"a": 10, "b": 10, "c": 10})
    write_images(data / "val", {"a": 4, "b": 4}, seed=1)
    out = tmp_path / "run"
    cnnlab.train(data, out, epochs=1, lr=0.01, batch_size=16, **TINY)
    text = build_report(out, data).read_text()
    row = text[text.index("<td>c</td>"):].split("</tr>")[0]
    assert row.count("<td>n/a</td>") == 3 and "<td>0</td>" in row
