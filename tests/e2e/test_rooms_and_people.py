"""The public room directory, group DMs, member management and avatars through
the UI, against the real mesh; every page these tests leave is also axe-checked."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import Page, expect

from .conftest import PHONE, Contexts, Mesh, shot
from .people import Person, new_person, sign_up
from .test_accessibility import assert_axe_clean
from .test_chat import message, need, send

DIRECTORY = ("/api/v1/rooms/public", "/api/v1/dms", "/api/v1/users")
MEMBERS = ("/api/v1/rooms/{room_id}/members", "/api/v1/users")
# 1x1 transparent PNG: what the fake avatar host serves.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001a5f645400000000049454e44ae426082"
)


def create_room_in_ui(page: Page, name: str, *, private: bool = False) -> str:
    page.goto("/browse")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Topic").fill("end-to-end tests")
    if private:
        page.get_by_label("Private (invite only)").check()
    page.get_by_role("button", name="Create room").click()
    page.wait_for_url("**/room?id=*")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"# {name}")
    return page.url


def pick(page: Page, label: str, who: Person, button: str) -> None:
    """Search for someone in a UserSearch box and press their action button."""
    page.get_by_role("searchbox", name=label, exact=True).fill(who.username)
    page.get_by_role("button", name=button).click()


def test_browse_search_and_join_a_public_room(contexts: Contexts, mesh: Mesh) -> None:
    need(mesh, *DIRECTORY)
    a = contexts.new_page()
    b = contexts.new_page(viewport=PHONE, dark=True)
    alice, bob = new_person("Alice Directory"), new_person("Bob Directory")
    sign_up(a, alice)
    sign_up(b, bob)
    tag = uuid.uuid4().hex[:6]
    create_room_in_ui(a, f"dir{tag} alpha")
    create_room_in_ui(a, f"dir{tag} beta")
    create_room_in_ui(a, f"other{tag}")

    b.goto("/browse")
    b.get_by_label("Search public rooms").fill(f"DIR{tag}")
    rooms = b.get_by_role("list", name="Public rooms").get_by_role("listitem")
    expect(rooms).to_have_count(2)
    expect(rooms.first).to_contain_text(f"dir{tag} alpha")
    expect(rooms.first).to_contain_text("1 member")
    assert_axe_clean(b, "/browse with search results (dark, phone)")

    b.get_by_role("button", name=f"Join dir{tag} alpha").click()
    b.wait_for_url("**/room?id=*")
    expect(b.get_by_role("heading", level=1)).to_have_text(f"# dir{tag} alpha")
    send(b, "hello from the directory")

    # Back in the directory the joined room opens instead, and counts bob.
    b.goto("/browse")
    b.get_by_label("Search public rooms").fill(f"dir{tag} a")
    expect(rooms).to_have_count(1)
    expect(rooms.first).to_contain_text("2 members")
    expect(b.get_by_role("link", name=f"Open dir{tag} alpha")).to_be_visible()
    b.get_by_label("Search public rooms").fill(f"nothing{tag}")
    expect(b.get_by_text(f"No public room name starts with “nothing{tag}”.")).to_be_visible()
    b.get_by_label("Search public rooms").fill(f"dir{tag}")
    expect(rooms).to_have_count(2)
    shot(b, "directory-phone-dark")


def test_group_dm_from_a_multi_select(contexts: Contexts, mesh: Mesh) -> None:
    need(mesh, *DIRECTORY)
    a, b, c = contexts.new_page(), contexts.new_page(), contexts.new_page(viewport=PHONE)
    alice, bob = new_person("Alice Group"), new_person("Bob Group")
    carol = new_person("Carol Group")
    for page, who in ((a, alice), (b, bob), (c, carol)):
        sign_up(page, who)

    a.get_by_role("link", name="New message").filter(visible=True).click()
    a.wait_for_url("**/new-message")
    pick(a, "Find people", bob, f"Select {bob.display_name}")
    pick(a, "Find people", carol, f"Select {carol.display_name}")
    selected = a.get_by_role("region", name="Selected people")
    expect(selected).to_contain_text(bob.display_name)
    expect(selected).to_contain_text(carol.display_name)
    assert_axe_clean(a, "/new-message with two people selected")
    a.get_by_role("button", name="Start group DM (3 people)").click()
    a.wait_for_url("**/room?id=*")
    heading = a.get_by_role("heading", level=1)
    expect(heading).to_contain_text(bob.display_name)
    expect(heading).to_contain_text(carol.display_name)
    send(a, "hi both of you")

    # The others find the new conversation in their room list, live.
    for page in (b, c):
        page.goto("/rooms")
        nav = page.get_by_role("navigation", name="Rooms and direct messages")
        link = nav.get_by_role("link", name=re.compile(alice.display_name))
        if page is c:  # on a phone the list is the /rooms page itself
            link = page.get_by_role("main").get_by_role("link", name=re.compile(alice.display_name))
        link.click()
        page.wait_for_url("**/room?id=*")
        expect(message(page, "hi both of you")).to_be_visible()
    send(c, f"hello from {carol.display_name}")
    expect(message(a, f"hello from {carol.display_name}")).to_be_visible()
    expect(message(b, f"hello from {carol.display_name}")).to_be_visible()

    # The same three people always get the same room.
    room_url = a.url
    a.goto("/new-message")
    pick(a, "Find people", carol, f"Select {carol.display_name}")
    pick(a, "Find people", bob, f"Select {bob.display_name}")
    a.get_by_role("button", name="Start group DM (3 people)").click()
    a.wait_for_url("**/room?id=*")
    assert a.url == room_url
    shot(a, "group-dm")


def test_members_add_role_remove_and_avatars(contexts: Contexts, mesh: Mesh) -> None:
    need(mesh, *MEMBERS)
    a = contexts.new_page()
    b = contexts.new_page()
    alice, bob = new_person("Alice Owner"), new_person("Bob Member")
    # The avatar hosts, faked at the browser: one serves a picture, one is down.
    for page in (a, b):
        page.context.route(
            "https://avatars.example/**",
            lambda route: route.fulfill(status=200, content_type="image/png", body=PNG),
        )
        page.context.route("https://broken.example/**", lambda route: route.abort())
    sign_up(a, alice)
    sign_up(b, bob)
    set_avatar(a, "https://avatars.example/alice.png")
    set_avatar(b, "https://broken.example/bob.png")

    name = f"team-{uuid.uuid4().hex[:6]}"
    url = create_room_in_ui(a, name, private=True)
    a.get_by_role("button", name=re.compile("^Members")).click()
    panel = a.get_by_role("complementary", name=re.compile("^Members"))
    expect(panel.locator("li[data-member-id]")).to_have_count(1)
    expect(panel).to_contain_text("Owner")

    pick(a, "Add people", bob, f"Add {bob.display_name} to the room")
    bob_row = panel.locator("li[data-member-id]", has_text=bob.display_name)
    expect(bob_row.locator("p")).to_have_text("Member · online")
    expect(panel.get_by_role("heading", name="Members (2)")).to_be_visible()

    # Avatars: alice's picture loads (CSP allows https images); bob's host is down,
    # so his initials show instead.
    alice_row = panel.locator("li[data-member-id]", has_text=alice.display_name)
    picture = alice_row.locator("img")
    expect(picture).to_have_attribute("src", "https://avatars.example/alice.png")
    a.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    expect(bob_row.locator("[data-avatar=initials]")).to_have_text("BM")

    # Bob was added: the private room is in his list, live.
    b.goto("/rooms")
    b.get_by_role("navigation", name="Rooms and direct messages").get_by_role(
        "link", name=re.compile(name)
    ).click()
    expect(b.get_by_role("heading", level=1)).to_have_text(f"# {name}")
    send(b, "thanks for adding me")
    expect(message(a, "thanks for adding me")).to_be_visible()

    panel.get_by_label(f"Role of {bob.display_name}").select_option("admin")
    expect(bob_row.locator("p")).to_have_text("Admin · online")
    expect(panel.get_by_label(f"Role of {bob.display_name}")).to_have_value("admin")
    assert_axe_clean(a, "room with the members panel open")
    shot(a, "members-panel")

    a.on("dialog", lambda d: d.accept())
    panel.get_by_role("button", name=f"Remove {bob.display_name}").click()
    expect(panel.locator("li[data-member-id]")).to_have_count(1)
    expect(panel.get_by_role("heading", name="Members (1)")).to_be_visible()
    # Bob loses the room at once.
    expect(
        b.get_by_role("navigation", name="Rooms and direct messages").get_by_role(
            "link", name=re.compile(name)
        )
    ).to_have_count(0)
    b.goto(url.replace(mesh.base_url, ""))
    expect(b.get_by_role("alert")).to_be_visible()


def set_avatar(page: Page, url: str) -> None:
    page.goto("/profile")
    page.get_by_label("Avatar URL").fill(url)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Profile saved.")).to_be_visible()
