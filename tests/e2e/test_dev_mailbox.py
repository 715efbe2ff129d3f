"""Sign up → the dev mailbox page (/dev/mail, the embedded mail service through
the BFF) lists the verification email → its link, opened from the page,
verifies the account."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import Contexts, Mesh, shot
from .people import new_person, sign_up


def test_dev_mailbox_shows_the_verification_email_and_its_link_verifies(
    contexts: Contexts, mesh: Mesh
) -> None:
    page = contexts.new_page()
    who = new_person("Mailbox Reader")
    sign_up(page, who)

    page.goto("/dev/mail")
    expect(page.get_by_role("heading", name="Dev mailbox")).to_be_visible()
    # The page refreshes itself; the email arrives through the mail service's queue.
    mail = page.locator("li").filter(has_text=f"to {who.email}")
    mail = mail.filter(has_text="Verify your email address")
    expect(mail).to_have_count(1)
    if mail.locator("details").get_attribute("open") is None:
        mail.locator("summary").click()
    # A link into the app opens in this tab (no target), as a same-origin path.
    link = mail.locator('a[href^="/verify-email?token="]:not([target])')
    expect(link).to_be_visible()
    expect(link).to_contain_text(f"{mesh.base_url}/verify-email?token=")
    shot(page, "dev-mailbox")

    link.click()
    page.wait_for_url("**/verify-email?token=**")
    expect(page.get_by_text("Your email address is verified.")).to_be_visible()
    assert page.request.get("/api/v1/me").json()["email_verified"] is True
