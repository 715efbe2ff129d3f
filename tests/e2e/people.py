"""Helpers that drive the UI like a person would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from playwright.sync_api import Page, expect

PASSWORD = "correct horse battery staple 42"


@dataclass
class Person:
    email: str
    username: str
    display_name: str
    password: str = PASSWORD


def new_person(display_name: str | None = None) -> Person:
    tag = uuid.uuid4().hex[:10]
    return Person(
        email=f"e2e-{tag}@example.test",
        username=f"e2e_{tag}",
        display_name=display_name or f"Tester {tag[:4]}",
    )


def sign_up(page: Page, who: Person) -> None:
    page.goto("/signup")
    page.get_by_label("Email").fill(who.email)
    page.get_by_label("Username").fill(who.username)
    page.get_by_label("Display name").fill(who.display_name)
    page.get_by_label("Password").fill(who.password)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/rooms**")
    expect(page.get_by_role("heading", level=1).filter(visible=True)).to_contain_text("Welcome")


def log_in(page: Page, who: Person, login: str | None = None) -> None:
    page.goto("/login")
    page.get_by_label("Email or username").fill(login or who.username)
    page.get_by_label("Password").fill(who.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/rooms**")


def log_out(page: Page) -> None:
    page.locator("summary", has_text="account menu").click()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login**")
