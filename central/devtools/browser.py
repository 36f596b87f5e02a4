"""Headless Debian Chromium through Selenium 4 and Debian's chromedriver (no downloads):
what the tests and bench/central.py drive the console with."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required")


@contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A Chromium WebDriver with a fresh profile, quit afterwards."""
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver_path):
        raise FileNotFoundError("apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ronda-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def login(driver: Any, base: str, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "signin").click()
    # Returns once the sign-in has landed (a page past /login, or /login?failed): a
    # navigation started while its POST is in flight can be overtaken by its redirect.
    wait_js(driver, "document.readyState === 'complete' && (location.pathname !== '/login'"
            " || location.search.includes('failed'))", 30, f"{user}'s sign-in to land")


def wait_js(driver: Any, script: str, timeout: float = 15.0, what: str = "page condition") -> Any:
    """Poll a JavaScript expression until it is truthy (AssertionError after `timeout`)."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.02).until(
            lambda d: d.execute_script(f"return {script}"))
    except Exception as exc:
        raise AssertionError(f"timed out waiting for {what}: {script}") from exc
