"""Bad input gets a precise error in the one error shape, and leaves nothing behind."""

from __future__ import annotations

import pytest

PASSWORD = "correct horse battery staple"
REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"


def error_of(response):
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    return body["error"]


async def post_raw(api, path, content, content_type="application/json"):
    return await api.http.post(
        path, content=content, headers={"Content-Type": content_type, "Origin": api.origin}
    )


@pytest.mark.parametrize(
    "content",
    [b"{", b'{"login": "a",}', b"not json", b"\xff\xfe{}", b'{"login": NaN}'],
    ids=["truncated", "trailing-comma", "text", "bad-utf8", "nan"],
)
async def test_malformed_json_is_400(sqlite_api, content):
    response = await post_raw(sqlite_api, LOGIN, content)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


@pytest.mark.parametrize("content", [b"[]", b'"login"', b"42", b"null"])
async def test_a_body_that_is_not_an_object_is_400(sqlite_api, content):
    response = await post_raw(sqlite_api, LOGIN, content)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


async def test_an_empty_body_is_400_where_one_is_required(sqlite_api):
    response = await post_raw(sqlite_api, REGISTER, b"")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


async def test_a_body_that_is_not_json_media_type_is_415(sqlite_api):
    response = await post_raw(
        sqlite_api, LOGIN, b'{"login": "a", "password": "b"}', content_type="text/plain"
    )
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


async def test_missing_fields_are_listed(sqlite_api):
    response = await sqlite_api.post(REGISTER, {})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_failed"
    fields = {item["field"]: item["type"] for item in error["details"]["fields"]}
    assert fields == {
        "email": "missing",
        "username": "missing",
        "password": "missing",
        "display_name": "missing",
    }


async def test_wrong_types_are_listed_without_coercion(sqlite_api):
    response = await sqlite_api.post(
        REGISTER,
        {"email": 1, "username": True, "password": ["x"], "display_name": None},
    )
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_failed"
    fields = {item["field"] for item in error["details"]["fields"]}
    assert fields == {"email", "username", "password", "display_name"}
    assert all(item["message"] for item in error["details"]["fields"])


async def test_unknown_fields_are_rejected(sqlite_api):
    response = await sqlite_api.post(LOGIN, {"login": "a", "password": "b", "remember": True})
    assert response.status_code == 422
    fields = error_of(response)["details"]["fields"]
    assert fields == [
        {"field": "remember", "type": "extra_forbidden", "message": fields[0]["message"]}
    ]


async def test_oversized_body_with_content_length_is_413(sqlite_api):
    limit = sqlite_api.bff.settings.max_body_bytes
    user = sqlite_api.new_user(display_name="x" * (limit + 1))
    response = await sqlite_api.post(REGISTER, user)
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"max_bytes": limit}
    # Nothing was created: the same address registers normally afterwards.
    del user["display_name"]
    response = await sqlite_api.post(REGISTER, {**user, "display_name": "Fine"})
    assert response.status_code == 201


async def test_oversized_chunked_body_is_413(sqlite_api):
    limit = sqlite_api.bff.settings.max_body_bytes

    async def chunks():
        yield b'{"login": "'
        for _ in range(limit // 1024 + 2):
            yield b"a" * 1024
        yield b'", "password": "x"}'

    response = await sqlite_api.http.post(
        LOGIN,
        content=chunks(),
        headers={"Content-Type": "application/json", "Origin": sqlite_api.origin},
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


async def test_chunked_body_under_the_limit_is_read(sqlite_api):
    user, _ = await sqlite_api.register()

    async def chunks():
        yield b'{"login": "'
        yield user["username"].encode()
        yield b'", "password": "'
        yield PASSWORD.encode()
        yield b'"}'

    response = await sqlite_api.http.post(
        LOGIN,
        content=chunks(),
        headers={"Content-Type": "application/json", "Origin": sqlite_api.origin},
    )
    assert response.status_code == 200, response.text


async def test_unicode_display_names_round_trip(sqlite_api):
    name = "Zoë Łukasz 李小龍 🚀 Ⅻ"
    _, body = await sqlite_api.register(display_name=name)
    assert body["user"]["display_name"] == name
    me = await sqlite_api.http.get("/api/v1/me")
    assert me.json()["display_name"] == name


@pytest.mark.parametrize(
    "name",
    ["nul\u0000byte", "bell\u0007", "new\nline", "right\u202eto-left", "zero\u200bwidth"],
    ids=["nul", "bell", "newline", "bidi-override", "zero-width"],
)
async def test_control_and_invisible_characters_in_names_are_422(sqlite_api, name):
    user = sqlite_api.new_user(display_name=name)
    response = await sqlite_api.post(REGISTER, user)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_display_name"
    assert error["details"]["field"] == "display_name"
    # Rejected means not created.
    login = await sqlite_api.post(LOGIN, {"login": user["email"], "password": PASSWORD})
    assert login.status_code == 401


async def test_a_lone_surrogate_is_422_not_a_crash(sqlite_api):
    content = (
        b'{"email": "s@example.com", "username": "surrogate", "password": "'
        + PASSWORD.encode()
        + b'", "display_name": "half \\ud800 pair"}'
    )
    response = await post_raw(sqlite_api, REGISTER, content)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert [item["field"] for item in error["details"]["fields"]] == ["display_name"]


@pytest.mark.parametrize("username", ["zoë", "a b", "x", "<script>"])
async def test_invalid_usernames_are_422(sqlite_api, username):
    response = await sqlite_api.post(REGISTER, sqlite_api.new_user(username=username))
    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid_username"


async def test_duplicate_email_and_username_are_409(api):
    user, _ = await api.register()
    same_email = api.new_user(email=user["email"].upper())
    response = await api.post(REGISTER, same_email)
    assert response.status_code == 409
    assert error_of(response)["code"] == "email_taken"

    same_username = api.new_user(username=user["username"])
    response = await api.post(REGISTER, same_username)
    assert response.status_code == 409
    assert error_of(response)["code"] == "username_taken"


async def test_weak_password_is_422_with_reasons(api):
    response = await api.post(REGISTER, api.new_user(password="password"))
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "weak_password"
    assert error["details"]["field"] == "password"
    reasons = error["details"]["reasons"]
    assert isinstance(reasons, list)
    assert reasons
    assert all(isinstance(reason, str) and reason for reason in reasons)


async def test_rejected_registrations_leave_nothing_behind(api):
    taken, _ = await api.register()
    user = api.new_user()
    attempts = [
        {**user, "password": "short"},  # weak password
        {**user, "username": taken["username"]},  # username taken
        {**user, "display_name": "bad\u0000name"},  # invalid display name
        {**user, "email": 5},  # wrong type
    ]
    for attempt in attempts:
        response = await api.post(REGISTER, attempt)
        assert response.status_code in (409, 422), response.text
        login = await api.post(LOGIN, {"login": user["email"], "password": user["password"]})
        assert login.status_code == 401
    # The address and username are still free.
    response = await api.post(REGISTER, user)
    assert response.status_code == 201, response.text


async def test_wrong_password_and_unknown_user_look_the_same(api):
    user, _ = await api.register()
    wrong = await api.post(LOGIN, {"login": user["email"], "password": "not the password"})
    unknown = await api.post(LOGIN, {"login": "nobody@example.com", "password": PASSWORD})
    unknown_name = await api.post(LOGIN, {"login": "nobody", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == unknown_name.status_code == 401
    assert error_of(wrong) == error_of(unknown) == error_of(unknown_name)
    assert error_of(wrong)["code"] == "invalid_credentials"
