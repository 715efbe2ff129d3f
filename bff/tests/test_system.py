"""Operations and the edges of the API: probes, metrics, JWKS, OpenAPI, the JSON
404/405, and what a client sees when the auth service is down."""

from __future__ import annotations

import asyncio

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from starlette.routing import Route

from chatmesh.auth.v1 import auth_pb2, auth_pb2_grpc
from chatmesh.bff.openapi import ApiRoute
from chatmesh.common.testing import free_port

PASSWORD = "correct horse battery staple"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert isinstance(error["details"], dict)
    return error


async def test_healthz_needs_no_dependencies(sqlite_auth, start_bff):
    bff = await start_bff(auth_address=f"127.0.0.1:{free_port()}")  # nothing listens there
    async with bff.client() as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readyz_follows_the_auth_service(sqlite_auth, sqlite_deps, start_bff):
    bff = await start_bff(auth_address=sqlite_auth.address, **sqlite_deps)
    async with bff.client() as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "checks": {"auth": "ok", "user": "ok", "chat": "ok"},
        }

        await sqlite_auth.server.stop()
        down = await client.get("/readyz")
        error = assert_error(down, 503, "not_ready")
        assert error["details"]["checks"] == {"auth": "not_serving", "user": "ok", "chat": "ok"}


async def test_readyz_checks_redis_when_configured(sqlite_auth, sqlite_deps, start_bff, redis_url):
    bff = await start_bff(auth_address=sqlite_auth.address, redis_url=redis_url, **sqlite_deps)
    async with bff.client() as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"auth": "ok", "user": "ok", "chat": "ok", "redis": "ok"}


async def test_auth_down_is_503_in_the_error_shape(sqlite_api):
    user, registered = await sqlite_api.register()
    assert (await sqlite_api.http.get("/api/v1/me")).status_code == 200  # keys now cached
    await sqlite_api.auth.server.stop()

    login = await sqlite_api.post(
        "/api/v1/auth/login", {"login": user["email"], "password": PASSWORD}
    )
    assert_error(login, 503, "service_unavailable")
    # The token still verifies offline, but the account lives in the auth service.
    me = await sqlite_api.http.get("/api/v1/me")
    assert_error(me, 503, "service_unavailable")
    # Published keys keep being served from the cache during the outage.
    jwks = await sqlite_api.http.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    kid = jwt.get_unverified_header(registered["access_token"])["kid"]
    assert kid in {key["kid"] for key in jwks.json()["keys"]}


async def test_a_bff_that_never_reached_auth_answers_503(start_bff):
    bff = await start_bff(auth_address=f"127.0.0.1:{free_port()}")
    async with bff.client() as client:
        me = await client.get("/api/v1/me", headers={"Authorization": "Bearer a.b.c"})
        # A malformed token is the caller's fault whatever the backend state...
        assert_error(me, 401, "invalid_token")
        token = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256", headers={"kid": "k"})
        forged = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert_error(forged, 401, "invalid_token")
        # ...but a well-formed token cannot be judged without the keys: not a 401.
        key = Ed25519PrivateKey.generate()
        plausible = jwt.encode({"sub": "x"}, key, algorithm="EdDSA", headers={"kid": "k1"})
        unknown = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {plausible}"})
        assert_error(unknown, 503, "service_unavailable")
        register = await client.post(
            "/api/v1/auth/register",
            json={
                "email": "a@example.com",
                "username": "abc",
                "password": PASSWORD,
                "display_name": "A",
            },
        )
        assert_error(register, 503, "service_unavailable")
        assert_error(await client.get("/.well-known/jwks.json"), 503, "service_unavailable")


async def test_jwks_is_the_auth_services_key_set(sqlite_api):
    response = await sqlite_api.http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "max-age" in response.headers["cache-control"]
    served = response.json()["keys"]

    async with grpc.aio.insecure_channel(sqlite_api.auth.address) as channel:
        reply = await auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest())
    assert {key["kid"] for key in served} == {key.kid for key in reply.keys}
    for key in served:
        assert key["kty"] == "OKP"
        assert key["crv"] == "Ed25519"
        assert key["alg"] == "EdDSA"
        assert "d" not in key  # public halves only

    _, registered = await sqlite_api.register()
    kid = jwt.get_unverified_header(registered["access_token"])["kid"]
    assert kid in {key["kid"] for key in served}


async def test_metrics_count_requests_by_route_template(sqlite_api):
    _, registered = await sqlite_api.register()
    await sqlite_api.http.delete("/api/v1/auth/sessions/some-id", headers={"Origin": "x://y"})
    await sqlite_api.http.get("/api/v1/me")
    await sqlite_api.http.get("/api/v1/nothing/here/123")

    response = await sqlite_api.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'http_requests_total{method="POST",route="/api/v1/auth/register",status="201"}' in text
    assert 'http_requests_total{method="GET",route="/api/v1/me",status="200"}' in text
    assert (
        'http_requests_total{method="DELETE",route="/api/v1/auth/sessions/{session_id}",'
        'status="403"}' in text
    )
    assert 'route="<unmatched>",status="404"' in text
    assert "some-id" not in text
    assert "/api/v1/nothing" not in text
    assert (
        'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/v1/me"}' in text
    )
    assert registered["user"]["id"] not in text


async def test_openapi_is_a_valid_3_1_document_of_every_route(sqlite_api):
    response = await sqlite_api.http.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)  # raises on any violation

    app_routes = {
        (route.path, route.method.lower())
        for route in sqlite_api.bff.server.config.app.routes
        if isinstance(route, ApiRoute)
    }
    documented = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    assert documented == app_routes
    operation_ids = [
        operation["operationId"]
        for operations in document["paths"].values()
        for operation in operations.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))
    for path in (
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/me",
        "/api/v1/auth/sessions/{session_id}",
        "/readyz",
        "/.well-known/jwks.json",
    ):
        assert path in document["paths"]

    schemas = document["components"]["schemas"]
    register = schemas["RegisterRequest"]
    assert set(register["required"]) == {"email", "username", "password", "display_name"}
    assert register["additionalProperties"] is False
    assert set(schemas["User"]["properties"]) == {
        "id",
        "username",
        "email",
        "display_name",
        "email_verified",
        "created_at",
    }
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    register_op = document["paths"]["/api/v1/auth/register"]["post"]
    assert register_op["responses"]["409"]["content"]["application/json"]["schema"] == error_ref
    assert "Retry-After" in register_op["responses"]["429"]["headers"]
    me_op = document["paths"]["/api/v1/me"]["get"]
    assert {"bearerAuth": []} in me_op["security"]
    assert {"accessCookie": []} in me_op["security"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["accessCookie"] == {"type": "apiKey", "in": "cookie", "name": "chatmesh_access"}


async def test_unknown_api_paths_and_methods_get_json_errors(sqlite_api):
    missing = await sqlite_api.http.get("/api/v1/does-not-exist")
    assert_error(missing, 404, "not_found")
    wrong_method = await sqlite_api.http.put("/api/v1/me", headers={"Origin": sqlite_api.origin})
    error = assert_error(wrong_method, 405, "method_not_allowed")
    assert error["details"] == {}
    assert "GET" in wrong_method.headers["allow"]
    get_login = await sqlite_api.http.get("/api/v1/auth/login")
    assert_error(get_login, 405, "method_not_allowed")


async def test_placeholder_page_when_the_ui_is_not_built(sqlite_api):
    response = await sqlite_api.http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "not been built" in response.text
    assert "make web" in response.text
    assert_error(await sqlite_api.http.get("/some/page"), 404, "not_found")


@pytest.fixture
def web_build(tmp_path):
    out = tmp_path / "out"
    (out / "_next" / "static" / "chunks").mkdir(parents=True)
    (out / "index.html").write_text("<!doctype html><title>ChatMesh</title>home page")
    (out / "rooms.html").write_text("<!doctype html>rooms page")
    (out / "settings").mkdir()
    (out / "settings" / "index.html").write_text("<!doctype html>settings page")
    (out / "404.html").write_text("<!doctype html>custom not found")
    (out / "_next" / "static" / "chunks" / "app-3f2a.js").write_text("console.log('hi')")
    return out


async def test_the_built_ui_is_served(sqlite_auth, start_bff, web_build):
    bff = await start_bff(auth_address=sqlite_auth.address, web_dir=web_build)
    async with bff.client() as client:
        home = await client.get("/")
        assert home.status_code == 200
        assert "home page" in home.text
        assert "content-security-policy" in home.headers

        rooms = await client.get("/rooms")  # Next.js export: rooms.html
        assert rooms.status_code == 200
        assert "rooms page" in rooms.text
        settings_page = await client.get("/settings/")
        assert "settings page" in settings_page.text

        asset = await client.get("/_next/static/chunks/app-3f2a.js")
        assert asset.status_code == 200
        assert "immutable" in asset.headers["cache-control"]
        assert home.headers["cache-control"] == "no-cache"

        missing = await client.get("/no/such/page")
        assert missing.status_code == 404
        assert "custom not found" in missing.text

        # The API keeps its JSON errors even with a UI that has its own 404 page.
        assert_error(await client.get("/api/v1/nope"), 404, "not_found")
        assert (await client.get("/healthz")).json()["status"] == "ok"


async def test_an_unexpected_error_is_a_generic_500(sqlite_auth, start_bff):
    secret = "database password is hunter2"

    async def broken(_):
        raise RuntimeError(secret)

    def add_broken_route(app):
        app.router.routes.insert(0, Route("/api/v1/broken", broken))

    bff = await start_bff(auth_address=sqlite_auth.address, prepare=add_broken_route)
    async with bff.client() as client:
        response = await client.get("/api/v1/broken", headers={"X-Request-ID": "req-500"})
        error = assert_error(response, 500, "internal")
        assert secret not in response.text
        assert error["details"] == {}
        # Still a well-formed response of ours: headers, request id, metrics.
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-request-id"] == "req-500"
        metrics = (await client.get("/metrics")).text
        assert 'route="/api/v1/broken",status="500"' in metrics
        # And the server keeps serving.
        assert (await client.get("/healthz")).status_code == 200


async def test_readyz_is_503_while_auth_drains(sqlite_auth, sqlite_deps, start_bff):
    bff = await start_bff(auth_address=sqlite_auth.address, **sqlite_deps)
    stopping = asyncio.create_task(sqlite_auth.server.stop(drain=2.0))
    try:
        async with bff.client() as client:
            for _ in range(50):
                response = await client.get("/readyz")
                if response.status_code == 503:
                    break
                await asyncio.sleep(0.02)
        error = assert_error(response, 503, "not_ready")
        assert error["details"]["checks"]["auth"] == "not_serving"
    finally:
        await stopping
