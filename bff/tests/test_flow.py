"""The account lifecycle through the BFF over real HTTP, on SQLite and PostgreSQL:
register → verify email → login → me → refresh → reuse detection → logout →
password reset."""

from __future__ import annotations

import httpx

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a completely different passphrase"


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name (the raw header, attributes included)."""
    found = {}
    for header in response.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0]
        found[name] = header
    return found


async def test_full_account_lifecycle(api, auth_service):
    # --- register: 201, tokens in the body, the session in httpOnly cookies ---
    user, registered = await api.register(display_name="Zoë 🚀")
    assert registered["user"]["email"] == user["email"]
    assert registered["user"]["username"] == user["username"]
    assert registered["user"]["display_name"] == "Zoë 🚀"
    assert registered["user"]["email_verified"] is False
    assert registered["user"]["created_at"]
    assert registered["expires_in"] == 900
    assert registered["access_token"].count(".") == 2
    assert registered["refresh_token"]

    me = await api.http.get("/api/v1/me")  # the cookie alone authenticates
    assert me.status_code == 200
    assert me.json() == registered["user"]

    # --- verify email with the token the verification mail would carry ---
    token = await auth_service.events.verification_token(user["email"])
    verified = await api.post("/api/v1/auth/verify-email", {"token": token})
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified"] is True
    again = await api.post("/api/v1/auth/verify-email", {"token": token})
    assert again.status_code in (409, 422)
    assert again.json()["error"]["code"]

    # --- login by email and by username, from a fresh browser each time ---
    async with api.bff.client() as browser:
        origin = {"Origin": api.origin}
        by_email = await browser.post(
            "/api/v1/auth/login",
            json={"login": user["email"], "password": PASSWORD},
            headers=origin,
        )
        assert by_email.status_code == 200, by_email.text
        assert by_email.json()["user"]["email_verified"] is True
        by_username = await browser.post(
            "/api/v1/auth/login",
            json={"login": user["username"], "password": PASSWORD},
            headers=origin,
        )
        assert by_username.status_code == 200
        assert by_username.json()["user"]["id"] == registered["user"]["id"]

        # --- me with a Bearer token and no cookies at all ---
        bearer = {"Authorization": f"Bearer {by_username.json()['access_token']}"}
        async with api.bff.client() as bare:
            me_bearer = await bare.get("/api/v1/me", headers=bearer)
        assert me_bearer.status_code == 200
        assert me_bearer.json()["id"] == registered["user"]["id"]
        assert me_bearer.json()["email_verified"] is True

        # --- refresh with the cookie: a new pair, the old refresh token is dead ---
        old_refresh = by_username.json()["refresh_token"]
        refreshed = await browser.post("/api/v1/auth/refresh", headers=origin)
        assert refreshed.status_code == 200, refreshed.text
        new_refresh = refreshed.json()["refresh_token"]
        assert new_refresh != old_refresh
        assert refreshed.json()["access_token"] != by_username.json()["access_token"]
        assert set(set_cookies(refreshed)) == {"chatmesh_access", "chatmesh_refresh"}
        assert browser.cookies.get("chatmesh_refresh") == new_refresh

        # --- presenting the rotated token again revokes the whole family ---
        async with api.bff.client() as thief:
            reuse = await thief.post("/api/v1/auth/refresh", json={"refresh_token": old_refresh})
        assert reuse.status_code == 401
        assert reuse.json()["error"]["code"] == "refresh_token_reused"
        after_reuse = await browser.post("/api/v1/auth/refresh", headers=origin)
        assert after_reuse.status_code == 401
        # The dead session's cookies are dropped.
        cleared = set_cookies(after_reuse)
        assert "Max-Age=0" in cleared["chatmesh_access"]
        assert "Max-Age=0" in cleared["chatmesh_refresh"]

    # --- the registration session is unaffected; logout ends it ---
    sessions = await api.http.get("/api/v1/auth/sessions")
    assert sessions.status_code == 200
    current = [s for s in sessions.json()["sessions"] if s["current"]]
    assert len(current) == 1
    assert current[0]["ip_address"] == "127.0.0.1"
    assert current[0]["user_agent"].startswith("python-httpx/")
    refresh_before_logout = api.http.cookies.get("chatmesh_refresh")
    assert refresh_before_logout == registered["refresh_token"]

    logout = await api.post("/api/v1/auth/logout")
    assert logout.status_code == 204
    cleared = set_cookies(logout)
    assert "Max-Age=0" in cleared["chatmesh_access"]
    assert "Max-Age=0" in cleared["chatmesh_refresh"]
    assert "chatmesh_access" not in api.http.cookies
    assert (await api.http.get("/api/v1/me")).status_code == 401
    dead = await api.post("/api/v1/auth/refresh", {"refresh_token": refresh_before_logout})
    assert dead.status_code == 401

    # --- password reset: request (202), confirm with the mailed token, sign in ---
    requested = await api.post("/api/v1/auth/password-reset/request", {"email": user["email"]})
    assert requested.status_code == 202
    reset_token = (await auth_service.events.reset_tokens(user["email"]))[-1]
    confirmed = await api.post(
        "/api/v1/auth/password-reset/confirm", {"token": reset_token, "password": NEW_PASSWORD}
    )
    assert confirmed.status_code == 204, confirmed.text
    old = await api.post("/api/v1/auth/login", {"login": user["email"], "password": PASSWORD})
    assert old.status_code == 401
    new = await api.post("/api/v1/auth/login", {"login": user["email"], "password": NEW_PASSWORD})
    assert new.status_code == 200
    reused = await api.post(
        "/api/v1/auth/password-reset/confirm", {"token": reset_token, "password": PASSWORD}
    )
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "invalid_token"


async def test_register_sets_http_only_session_cookies(api):
    user = api.new_user()
    response = await api.post("/api/v1/auth/register", user)
    assert response.status_code == 201
    cookies = set_cookies(response)

    access = cookies["chatmesh_access"].lower()
    assert "httponly" in access
    assert "samesite=lax" in access
    assert "path=/;" in access or access.endswith("path=/")
    assert "max-age=900" in access
    assert "secure" not in access  # plain http here

    refresh = cookies["chatmesh_refresh"].lower()
    assert "httponly" in refresh
    assert "samesite=strict" in refresh
    assert "path=/api/v1/auth" in refresh
    max_age = int(refresh.split("max-age=")[1].split(";")[0])
    assert 29 * 86400 < max_age <= 30 * 86400


async def test_cookies_are_secure_when_served_over_https(auth_service, start_bff):
    bff = await start_bff(auth_address=auth_service.address, public_url="https://chat.example")
    async with bff.client() as http:
        response = await http.post(
            "/api/v1/auth/register",
            json={
                "email": "secure@example.com",
                "username": "secure",
                "password": PASSWORD,
                "display_name": "Secure",
            },
        )
    assert response.status_code == 201, response.text
    for header in set_cookies(response).values():
        assert "secure" in header.lower()


async def test_sessions_can_be_listed_and_revoked(api):
    user, registered = await api.register()
    async with api.bff.client(headers={"User-Agent": "phone/1.0"}) as phone:
        login = await phone.post(
            "/api/v1/auth/login",
            json={"login": user["username"], "password": PASSWORD},
        )
        assert login.status_code == 200

    listed = await api.http.get("/api/v1/auth/sessions")
    assert listed.status_code == 200
    sessions = listed.json()["sessions"]
    assert len(sessions) == 2
    phone_session = next(s for s in sessions if s["user_agent"] == "phone/1.0")
    assert phone_session["current"] is False
    assert {"id", "ip_address", "created_at", "last_used_at"} <= set(phone_session)

    revoked = await api.http.delete(
        f"/api/v1/auth/sessions/{phone_session['id']}", headers={"Origin": api.origin}
    )
    assert revoked.status_code == 204
    phone_refresh = await api.post(
        "/api/v1/auth/refresh", {"refresh_token": login.json()["refresh_token"]}
    )
    assert phone_refresh.status_code == 401
    remaining = (await api.http.get("/api/v1/auth/sessions")).json()["sessions"]
    assert [s["current"] for s in remaining] == [True]
    assert phone_session["id"] not in {s["id"] for s in remaining}

    unknown = await api.http.delete(
        "/api/v1/auth/sessions/does-not-exist", headers={"Origin": api.origin}
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "session_not_found"

    # Revoking the current session signs this browser out too.
    mine = remaining[0]["id"]
    gone = await api.http.delete(f"/api/v1/auth/sessions/{mine}", headers={"Origin": api.origin})
    assert gone.status_code == 204
    assert "chatmesh_access" not in api.http.cookies
    old_token = {"Authorization": f"Bearer {registered['access_token']}"}
    assert (await api.http.get("/api/v1/auth/sessions", headers=old_token)).status_code == 401


async def test_logout_with_a_bearer_token_ends_that_session(api):
    _, registered = await api.register()
    async with api.bff.client() as client:
        bearer = {"Authorization": f"Bearer {registered['access_token']}"}
        logout = await client.post("/api/v1/auth/logout", headers=bearer)
        assert logout.status_code == 204
    refresh = await api.post("/api/v1/auth/refresh", {"refresh_token": registered["refresh_token"]})
    assert refresh.status_code == 401


async def test_password_reset_request_is_accepted_for_unknown_addresses(api, auth_service):
    known, _ = await api.register()
    unknown = await api.post("/api/v1/auth/password-reset/request", {"email": "nobody@example.com"})
    known_reply = await api.post("/api/v1/auth/password-reset/request", {"email": known["email"]})
    assert unknown.status_code == known_reply.status_code == 202
    assert unknown.json() == known_reply.json()
    assert await auth_service.events.reset_tokens(known["email"])
    assert not [
        e for e in auth_service.events.received if b"nobody@example.com" in e.SerializeToString()
    ]
