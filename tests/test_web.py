"""``nextgpt web``: the Gradio demo driven in a real headless browser (Debian's chromium and its
driver, through selenium), as a person would use it."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio", reason="the serve extra is not installed: pip install 'nextgpt-core[serve]'")

BOT_IMAGE = '[aria-label="bot\'s message: a component of type image"] img'
BOT_AUDIO_PLAYER = "[aria-label=\"bot's message: a component of type audio\"] button[aria-label='Play']"


def browser_paths() -> tuple[str, str] | None:
    browser = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def web_page(tiny_model, tmp_path_factory):
    from nextgpt.serving.web import create_web_app

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    out = tmp_path_factory.mktemp("web_out")
    app = create_web_app(tiny_model, out)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.queue().launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, allowed_paths=[str(out)]
    )
    yield {"url": f"http://127.0.0.1:{port}/", "out": out}
    app.close()


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium", reason="the serve extra is not installed: pip install 'nextgpt-core[serve]'")
    paths = browser_paths()
    if paths is None:
        pytest.skip("no chromium and chromedriver found: apt-get install chromium chromium-driver (make install does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = paths[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    yield driver
    driver.quit()


def test_a_person_uploads_a_picture_and_gets_a_picture_and_a_sound(web_page, browser, tmp_path):
    from nextgpt_image.examples import example_image
    from nextgpt_image.media import save_image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    picture = save_image(example_image(), tmp_path / "photo.png")
    browser.get(web_page["url"])
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#message textarea"))
    assert "RANDOM weights" in browser.find_element(By.ID, "random-weights-notice").text
    browser.find_element(By.CSS_SELECTOR, "#message input[type=file]").send_keys(str(picture))
    for label in browser.find_elements(By.CSS_SELECTOR, "#generate label"):
        if label.text.strip() in ("image", "audio"):
            label.click()
    box = browser.find_element(By.CSS_SELECTOR, "#message textarea")
    box.send_keys("What is in this photo? Draw it and sing it.")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#message img, #message [class*='thumbnail']"))
    box.send_keys(Keys.ENTER)
    wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, BOT_IMAGE) and d.find_elements(By.CSS_SELECTOR, BOT_AUDIO_PLAYER)
    )
    browser.save_screenshot(str(tmp_path / "web_demo.png"))
    assert (tmp_path / "web_demo.png").stat().st_size > 0
    assert "user's message: a component of type image" in browser.page_source  # the upload is shown
    written = sorted(p.suffix for p in Path(web_page["out"]).iterdir())
    assert written == [".png", ".wav"]


def test_the_page_reads_every_installed_modality_and_knows_random_weights(tiny_model, tmp_path):
    from nextgpt.serving.web import WebChat, has_random_weights

    chat = WebChat(tiny_model, tmp_path)
    assert {chat.modality_of(f"x{ext}") for ext in (".png", ".wav", ".mp4")} == {"image", "audio", "video"}
    with pytest.raises(gr.Error, match=r"reads no \.xyz files"):
        chat.modality_of("model.xyz")
    assert has_random_weights(tiny_model)
