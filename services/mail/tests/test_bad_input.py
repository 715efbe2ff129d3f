"""Input a caller must not get through: bad addresses, header injection, unknown
templates, missing variables, oversized bodies, missing API keys."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from chatmesh.common.errors import from_rpc_error
from chatmesh.mail.v1 import mail_pb2

ALERT = {"title": "t", "message": "m", "severity": "info"}


async def _rejected(mail: Any, *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await mail.send(*args, **kwargs)
    return error.value.code(), from_rpc_error(error.value).code


@pytest.mark.parametrize(
    "recipient",
    [
        "",
        "not-an-address",
        "a@b",
        "a@@example.com",
        "a@example.com, b@example.com",
        "a@example.com\r\nBcc: victim@example.com",
        "Eve\r\nBcc: victim@example.com <eve@example.com>",
        "x" * 300 + "@example.com",
    ],
)
async def test_invalid_recipients_are_rejected(recipient: str, tmp_path: Any, kit: Any) -> None:
    settings = kit.settings_for(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    async with kit.start(settings) as mail:
        status, code = await _rejected(mail, "system_alert", recipient, ALERT)
        assert status == grpc.StatusCode.INVALID_ARGUMENT
        assert code in ("invalid_address", "header_injection")
        assert (await mail.http.get("/dev/mail")).json() == {"messages": []}


async def test_bad_requests_change_nothing(db_url: str, kit: Any) -> None:
    async with kit.start(kit.settings_for(db_url)) as mail:
        cases = [
            (("nope", "a@example.com", {}), grpc.StatusCode.NOT_FOUND, "unknown_template"),
            (
                ("verify_email", "a@example.com", {"display_name": "A"}),
                grpc.StatusCode.INVALID_ARGUMENT,
                "missing_variables",
            ),
            (
                ("system_alert", "a@example.com", {**ALERT, "title": "x\r\nBcc: v@example.com"}),
                grpc.StatusCode.INVALID_ARGUMENT,
                "header_injection",
            ),
            (
                ("system_alert", "a@example.com", {**ALERT, "message": "x" * 70_000}),
                grpc.StatusCode.INVALID_ARGUMENT,
                "variables_too_large",
            ),
        ]
        for args, status, code in cases:
            assert await _rejected(mail, *args) == (status, code)
        status, code = await _rejected(
            mail, "system_alert", "a@example.com", ALERT, key="k\r\nX: y"
        )
        assert code == "header_injection"
        assert (await mail.http.get("/dev/mail")).json() == {"messages": []}
        dead = await mail.stub.ListDeadLetters(mail_pb2.ListDeadLettersRequest())
        assert list(dead.emails) == []


async def test_rest_api_requires_key_and_limits_body(db_url: str, kit: Any) -> None:
    async with kit.start(kit.settings_for(db_url)) as mail:
        body = {"template_id": "system_alert", "to": "ops@example.com", "variables": ALERT}
        response = await mail.http.post("/v1/emails", json=body)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        response = await mail.http.post(
            "/v1/emails", json=body, headers={"Authorization": "Bearer wrong"}
        )
        assert response.status_code == 401

        auth = {"Authorization": f"Bearer {kit.api_key}"}
        huge = {**body, "variables": {**ALERT, "message": "x" * 300_000}}
        response = await mail.http.post("/v1/emails", json=huge, headers=auth)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"
        response = await mail.http.post("/v1/emails", content=b"{not json", headers=auth)
        assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_json")
        response = await mail.http.post(
            "/v1/emails", json={**body, "to": "a@example.com\nBcc: b@example.com"}, headers=auth
        )
        assert (response.status_code, response.json()["error"]["code"]) == (
            422,
            "header_injection",
        )
        response = await mail.http.post(
            "/v1/emails", json={**body, "template_id": "missing"}, headers=auth
        )
        assert (response.status_code, response.json()["error"]["code"]) == (
            404,
            "unknown_template",
        )

        response = await mail.http.post(
            "/v1/emails", json={**body, "idempotency_key": "rest-1"}, headers=auth
        )
        assert response.status_code == 202
        email_id = response.json()["email"]["id"]
        again = await mail.http.post(
            "/v1/emails", json={**body, "idempotency_key": "rest-1"}, headers=auth
        )
        assert again.status_code == 200
        assert again.json()["email"]["id"] == email_id
        await mail.wait_state(email_id, mail_pb2.EMAIL_STATE_SENT)
        status = await mail.http.get(f"/v1/emails/{email_id}", headers=auth)
        assert status.json()["email"]["state"] == "sent"
        box = (await mail.http.get("/dev/mail")).json()["messages"]
        assert [m["email_id"] for m in box] == [email_id]
        assert box[0]["subject"] == "[INFO] t"
        assert "m" in box[0]["text"]


async def test_system_alert_goes_to_every_operator_once(db_url: str, kit: Any) -> None:
    settings = kit.settings_for(
        db_url, operator_emails="ops1@example.com, Ops Two <ops2@example.com>"
    )
    auth = {"Authorization": f"Bearer {kit.api_key}"}
    body = {
        "title": "queue backlog",
        "message": "<b>1200</b> jobs",
        "severity": "critical",
        "idempotency_key": "alert-7",
    }
    async with kit.start(settings) as mail:
        assert (await mail.http.post("/v1/alerts", json=body)).status_code == 401
        bad = await mail.http.post("/v1/alerts", json={**body, "severity": "meh"}, headers=auth)
        assert bad.json()["error"]["code"] == "invalid_severity"
        first = await mail.http.post("/v1/alerts", json=body, headers=auth)
        again = await mail.http.post("/v1/alerts", json=body, headers=auth)
        assert first.status_code == 202
        ids = [e["id"] for e in first.json()["emails"]]
        assert [e["id"] for e in again.json()["emails"]] == ids
        for email_id in ids:
            await mail.wait_state(email_id, mail_pb2.EMAIL_STATE_SENT)
        box = (await mail.http.get("/dev/mail")).json()["messages"]
    assert sorted(m["to"] for m in box) == ["Ops Two <ops2@example.com>", "ops1@example.com"]
    assert {m["subject"] for m in box} == {"[CRITICAL] queue backlog"}
    assert all("&lt;b&gt;1200&lt;/b&gt;" in m["html"] for m in box)
