"""axe-core finds no violations on the public pages and the signed-in app, in the
light and dark themes, at phone and desktop widths."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import Page, expect

from .conftest import DESKTOP, PHONE, Contexts, shot
from .people import new_person, sign_up

axe = Axe()


def assert_axe_clean(page: Page, what: str) -> None:
    results = axe.run(page)
    assert results.violations_count == 0, f"{what}:\n{results.generate_report()}"


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_public_pages_are_axe_clean(
    contexts: Contexts, dark: bool, viewport: dict[str, int]
) -> None:
    page = contexts.new_page(viewport=viewport, dark=dark)
    tag = f"{'dark' if dark else 'light'}-{viewport['width']}"
    for path, heading in (
        ("/login", "Log in"),
        ("/signup", "Create your account"),
        ("/forgot-password", "Reset your password"),
    ):
        page.goto(path)
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
        assert_axe_clean(page, f"{path} ({tag})")
    page.goto("/login")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("main").get_by_role("alert")).to_be_visible()
    assert_axe_clean(page, f"/login with an error ({tag})")
    shot(page, f"login-{tag}")


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_app_pages_are_axe_clean(contexts: Contexts, dark: bool, viewport: dict[str, int]) -> None:
    page = contexts.new_page(viewport=viewport, dark=dark)
    tag = f"{'dark' if dark else 'light'}-{viewport['width']}"
    sign_up(page, new_person("Ada Lovelace"))
    assert_axe_clean(page, f"/rooms ({tag})")
    shot(page, f"rooms-{tag}")
    page.goto("/sessions")
    expect(page.get_by_text("This device")).to_be_visible()
    assert_axe_clean(page, f"/sessions ({tag})")
    shot(page, f"sessions-{tag}")
    # the page is usable at this width: nothing scrolls sideways
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_theme_toggle_persists(contexts: Contexts) -> None:
    page = contexts.new_page()
    sign_up(page, new_person())
    toggle = page.get_by_role("button", name="Dark theme")
    assert page.evaluate("document.documentElement.classList.contains('dark')") is False
    toggle.click()
    assert page.evaluate("document.documentElement.classList.contains('dark')") is True
    page.reload()
    expect(page.get_by_role("heading", level=1).filter(visible=True)).to_be_visible()
    assert page.evaluate("document.documentElement.classList.contains('dark')") is True
    expect(page.get_by_role("button", name="Dark theme")).to_have_attribute("aria-pressed", "true")
