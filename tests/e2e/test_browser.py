"""The web page in a real headless Chromium (Debian's chromium + chromedriver, no browser download):
load it, upload an image, read the predicted class from the page."""
import shutil
import socket
import threading
import time

import pytest
import uvicorn

import cnnlab
from cnnlab.serving.app import create_app

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                                                                   "(make test installs them)")


@pytest.fixture(scope="module")
def server(tiny_run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(str(tiny_run)), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_page_uploads_an_image_and_shows_the_prediction(server, browser, tiny_run, bars):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = sorted((bars / "c").glob("*.png"))[0]
    expected = cnnlab.load(tiny_run).predict(image)[0]
    browser.get(server)
    WebDriverWait(browser, 20).until(lambda d: "classes" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys(str(image))
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "label").text not in ("–", "…"))
    assert browser.find_element(By.ID, "label").text == expected.label
    bars_shown = browser.find_elements(By.CSS_SELECTOR, "#bars .row")
    assert len(bars_shown) == 3  # three classes, each with its probability bar
    preview = browser.find_element(By.ID, "preview")
    assert preview.is_displayed() and preview.size["width"] == 224  # the 16x16 image, scaled up to be seen
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_page_shows_the_servers_error_for_a_bad_file(server, browser, tmp_path, bars):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    good = sorted((bars / "a").glob("*.png"))[0]
    browser.get(server)
    browser.find_element(By.ID, "file").send_keys(str(good))  # a prediction first, then the bad file
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#bars .row"))
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "error").text)
    assert "not a readable image" in browser.find_element(By.ID, "error").text
    # nothing of the previous prediction stays beside the error, and no broken-image icon
    assert not browser.find_elements(By.CSS_SELECTOR, "#bars .row")
    assert not browser.find_element(By.ID, "preview").is_displayed()


def _serve_in_thread(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    return srv, thread, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def gray_server(tmp_path_factory):
    """A single-channel model (a light bar on a dark ground), with a report."""
    from conftest import TINY, write_images
    from cnnlab.evaluation.report import build_report

    data = write_images(tmp_path_factory.mktemp("gray"), {"a": 12, "b": 12}, size=28, mode="L")
    run = tmp_path_factory.mktemp("grayrun") / "run"
    cnnlab.train(data, run, epochs=2, lr=0.01, batch_size=8, **TINY)
    build_report(run, data)
    srv, thread, url = _serve_in_thread(create_app(str(run)))
    yield url, run
    srv.should_exit = True
    thread.join(timeout=10)


def test_the_draw_pad_predicts_a_stroke_live_and_the_report_is_linked(gray_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, run = gray_server
    browser.get_log("browser")  # what earlier tests left in the log
    browser.get(url)
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "padbox").is_displayed())
    browser.execute_script("window.cnnlabPad.stroke([[40, 140], [140, 140], [240, 140]])")  # a horizontal bar
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "label").text not in ("–", "…", ""))
    assert browser.find_element(By.ID, "label").text in ("a", "b", "uncertain")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#bars .row")) == 2
    sent = browser.find_element(By.ID, "preview")  # what went to the model: the drawing at 28x28
    assert sent.is_displayed() and browser.execute_script("return arguments[0].naturalWidth", sent) == 28
    link = browser.find_element(By.ID, "report")
    assert link.get_attribute("href").endswith("/report")
    browser.get(link.get_attribute("href"))
    assert browser.find_element(By.ID, "headline").is_displayed()
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_several_images_become_a_gallery_each_with_its_bars(server, browser, tiny_run, bars, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    files = [sorted((bars / c).glob("*.png"))[0] for c in ("a", "b", "c")] + [bad]
    browser.get(server)
    WebDriverWait(browser, 20).until(lambda d: "classes" in d.find_element(By.ID, "model").text)
    assert not browser.find_element(By.ID, "padbox").is_displayed()  # an RGB model: no drawing pad
    browser.find_element(By.ID, "file").send_keys("\n".join(str(f) for f in files))
    WebDriverWait(browser, 20).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery .card b")) == 4
        and all(b.text not in ("…", "") for b in d.find_elements(By.CSS_SELECTOR, "#gallery .card b")))
    cards = browser.find_elements(By.CSS_SELECTOR, "#gallery .card")
    expected = [p.label for p in cnnlab.load(tiny_run).predict(files[:3])]
    labels = [c.find_element(By.TAG_NAME, "b").text for c in cards]
    assert labels[:3] == expected
    assert all(len(c.find_elements(By.CSS_SELECTOR, ".row")) == 3 for c in cards[:3])
    assert "bad" in cards[3].get_attribute("class") and "not a readable image" in labels[3]
    assert [c.find_element(By.CSS_SELECTOR, ".file").text for c in cards] == [f.name for f in files]  # each named
