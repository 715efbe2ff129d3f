"""User content is text: markup in a display name never becomes HTML."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import Contexts
from .people import new_person, sign_up

# Display names have at most 64 characters.
PAYLOAD = "<img src=x onerror=window.__xss=1><script>__xss=2</script>"


def test_xss_in_display_name_is_rendered_as_text(contexts: Contexts) -> None:
    page = contexts.new_page()
    mallory = new_person(PAYLOAD)
    sign_up(page, mallory)

    heading = page.get_by_role("heading", level=1).filter(visible=True)
    expect(heading).to_have_text(f"Welcome, {PAYLOAD}")
    # the name in the header menu is text too
    expect(page.locator("summary")).to_contain_text("<img src=x")
    page.set_viewport_size({"width": 360, "height": 740})
    expect(page.get_by_role("heading", level=1).filter(visible=True)).to_have_text(
        f"Welcome, {PAYLOAD}"
    )
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, header img").count() == 0
    assert page.locator("script:not([src])", has_text="__xss").count() == 0

    page.goto("/sessions")
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
    assert page.evaluate("window.__xss") is None
