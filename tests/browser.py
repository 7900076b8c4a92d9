"""Headless Debian chromium driven through selenium and Debian's chromium-driver (both installed by
`make setup`; selenium is pinned in the dev extra). Used by tests/test_demo.py and by
bench/demo_screenshot.py, which takes docs/demo.png."""

from __future__ import annotations

import base64
import os
import shutil

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium(width: int = 1500, height: int = 1200) -> webdriver.Chrome:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)}: `make setup` installs Debian's chromium and chromium-driver")
    os.environ.setdefault("SE_OFFLINE", "true")  # the Debian driver is given: selenium must fetch nothing
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def search(driver: webdriver.Chrome, url: str, query: str, timeout: float = 120) -> None:
    """Open the store, type the query, press Enter and wait until the page has rendered the answer."""
    driver.get(url)
    box = WebDriverWait(driver, 30).until(EC.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid=query]")))
    box.clear()
    box.send_keys(query, Keys.ENTER)
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))


def expand_dropped(driver: webdriver.Chrome) -> None:
    driver.find_element(By.CSS_SELECTOR, "[data-testid=dropped] summary").click()
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=dropped]").get_attribute("open") is not None)


def full_page_screenshot(driver: webdriver.Chrome, path: str) -> None:
    """The whole page, not only the window (Chrome DevTools' captureBeyondViewport)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
