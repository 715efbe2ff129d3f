"""Sign up → verify email (link from the dev mailer) → log out → log in → sessions,
in a real browser against the real mesh."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import PHONE, Contexts, Mesh, shot
from .people import log_in, log_out, new_person, sign_up


def test_sign_up_verify_log_out_log_in_sessions(contexts: Contexts, mesh: Mesh) -> None:
    page = contexts.new_page()
    alice = new_person("Alice Example")

    sign_up(page, alice)
    expect(page.get_by_text("open its link to verify").filter(visible=True)).to_be_visible()
    me = page.request.get("/api/v1/me").json()
    assert me["username"] == alice.username
    assert me["email_verified"] is False

    link = mesh.mail(alice.email, "verify your email")
    assert link.startswith(f"{mesh.base_url}/verify-email?token=")
    page.goto(link)
    expect(page.get_by_text("Your email address is verified.")).to_be_visible()
    assert page.request.get("/api/v1/me").json()["email_verified"] is True

    page.get_by_role("link", name="Continue to ChatMesh").click()
    page.wait_for_url("**/rooms")
    expect(page.get_by_text("open its link to verify")).to_have_count(0)

    log_out(page)
    assert page.request.get("/api/v1/me").status == 401
    # a signed-out visit to the app goes to the log-in page and back afterwards
    page.goto("/sessions")
    page.wait_for_url("**/login?next=%2Fsessions")

    page.get_by_label("Email or username").fill(alice.email)
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("main").get_by_role("alert")).to_be_visible()

    page.get_by_label("Password").fill(alice.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/sessions")
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
    expect(page.get_by_text("This device")).to_have_count(1)

    # a second device (another browser context) shows up; revoking it signs it out
    phone = contexts.new_page(viewport=PHONE)
    log_in(phone, alice)
    page.reload()
    expect(page.get_by_role("button", name="Revoke")).to_have_count(1)
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("button", name="Revoke")).to_have_count(0)
    phone.goto("/sessions")
    phone.wait_for_url("**/login?next=**")
    shot(page, "sessions-desktop")


def test_password_reset(contexts: Contexts, mesh: Mesh) -> None:
    page = contexts.new_page()
    bob = new_person("Bob Reset")
    sign_up(page, bob)
    log_out(page)

    page.get_by_role("link", name="Forgot your password?").click()
    page.wait_for_url("**/forgot-password")
    page.get_by_label("Email", exact=True).fill(bob.email)
    page.get_by_role("button", name="Send reset link").click()
    expect(page.get_by_text("we sent it a link")).to_be_visible()

    page.goto(mesh.mail(bob.email, "reset your password"))
    bob.password = "a brand new passphrase 2026"
    page.get_by_label("New password", exact=True).fill(bob.password)
    page.get_by_label("Repeat the new password").fill(bob.password)
    page.get_by_role("button", name="Change password").click()
    page.wait_for_url("**/login?reset=1")
    expect(page.get_by_text("Your password was changed")).to_be_visible()
    log_in(page, bob)
    expect(page.get_by_role("heading", level=1).filter(visible=True)).to_contain_text("Bob Reset")


def test_weak_password_shows_the_reasons(contexts: Contexts) -> None:
    page = contexts.new_page()
    who = new_person()
    page.goto("/signup")
    page.get_by_label("Email").fill(who.email)
    page.get_by_label("Username").fill(who.username)
    page.get_by_label("Display name").fill(who.display_name)
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Sign up").click()
    alert = page.locator("main").get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("10")
    assert page.url.endswith("/signup")


def test_expired_access_cookie_is_refreshed_once(contexts: Contexts) -> None:
    page = contexts.new_page()
    carol = new_person("Carol Refresh")
    sign_up(page, carol)
    page.goto("about:blank")  # no earlier document (or its socket) left running
    refreshes: list[str] = []
    page.on(
        "request",
        lambda r: refreshes.append(r.url) if r.url.endswith("/api/v1/auth/refresh") else None,
    )
    # The access cookie lives exactly as long as its token: an expired token is a
    # missing cookie. The page must refresh once (single flight) and carry on.
    page.context.clear_cookies(name="chatmesh_access")
    page.goto("/sessions")
    expect(page.get_by_text("This device")).to_be_visible()
    assert page.url.endswith("/sessions")
    assert len(refreshes) == 1
    names = {c["name"] for c in page.context.cookies()}
    assert "chatmesh_access" in names


def test_two_tabs_refreshing_at_once_stay_signed_in(contexts: Contexts) -> None:
    """Tabs share the cookie jar: both see the access token expire at the same moment.
    If both refreshed with the same refresh token, the second use would count as reuse
    and revoke the session; the UI serialises refreshes across tabs."""
    first = contexts.new_page()
    dana = new_person("Dana Tabs")
    sign_up(first, dana)
    second = first.context.new_page()
    second.goto("/sessions")
    expect(second.get_by_text("This device")).to_be_visible()

    first.context.clear_cookies(name="chatmesh_access")
    first.goto("/sessions", wait_until="commit")
    second.reload(wait_until="commit")
    for tab in (first, second):
        expect(tab.get_by_text("This device")).to_be_visible()
        assert tab.url.endswith("/sessions")
    assert first.request.get("/api/v1/me").ok
