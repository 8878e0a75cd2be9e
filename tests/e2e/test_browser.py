"""The web page in a real headless Chromium (Debian's chromium + chromedriver, no browser download):
load it, upload an image, read the predicted class from the page."""
import shutil
import socket
import threading
import time

import pytest
import uvicorn

import cnnlab
from cnnlab.inference.server import create_app

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
