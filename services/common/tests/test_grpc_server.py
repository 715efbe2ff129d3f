"""The grpc.aio bootstrap, exercised over real sockets with real clients.

A small bytes-in/bytes-out EchoService stands in for a domain service: it has a
public method, protected unary/streaming methods, one that raises a ServiceError
and one that crashes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Any

import grpc
import httpx
import jwt
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from chatmesh.common.errors import NotFound, PermissionDenied, from_rpc_error
from chatmesh.common.grpc.client import call_metadata, create_channel
from chatmesh.common.grpc.context import claims_var, current_claims, current_request_id
from chatmesh.common.grpc.server import (
    GrpcService,
    RunningServer,
    install_stop_signals,
    start_grpc_server,
)
from chatmesh.common.logging import configure_logging
from chatmesh.common.metrics import start_metrics_server
from chatmesh.common.tokens import AUDIENCE, ISSUER, TokenVerifier

SERVICE = "chatmesh.test.v1.EchoService"
PREFIX = f"/{SERVICE}/"
KID = "test-key"
SIGNING_KEY = Ed25519PrivateKey.generate()


# --- the hosted service -----------------------------------------------------


async def ping(request: bytes, context: Any) -> bytes:
    claims = claims_var.get()
    return b"pong:" + (claims.user_id if claims else "anonymous").encode()


async def whoami(request: bytes, context: Any) -> bytes:
    claims = current_claims()
    body = {"user": claims.user_id, "session": claims.session_id}
    return json.dumps(body | {"request_id": current_request_id()}).encode()


async def fail(request: bytes, context: Any) -> bytes:
    raise NotFound("room 7 does not exist", code="room_not_found", details={"room_id": "7"})


async def crash(request: bytes, context: Any) -> bytes:
    raise RuntimeError("secret detail")


async def slow(request: bytes, context: Any) -> bytes:
    await asyncio.sleep(float(request))
    return b"done"


async def count(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for i in range(int(request)):
        yield str(i).encode()
    raise PermissionDenied("you left the room", code="not_a_member")


async def write_two(request: bytes, context: Any) -> None:
    # The reader/writer API: a coroutine that writes instead of yielding.
    await context.write(b"first")
    await context.write(b"second")


async def chat(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    user = current_claims().user_id
    async for message in requests:
        if message == b"leave":
            raise PermissionDenied("you left the room", code="not_a_member")
        yield f"{user}:{message.decode()}".encode()


async def total(requests: AsyncIterator[bytes], context: Any) -> bytes:
    return str(sum([int(r) async for r in requests])).encode()


def register(server: grpc.aio.Server) -> None:
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Ping": grpc.unary_unary_rpc_method_handler(ping),
        "Whoami": grpc.unary_unary_rpc_method_handler(whoami),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Crash": grpc.unary_unary_rpc_method_handler(crash),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "WriteTwo": grpc.unary_stream_rpc_method_handler(write_two),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
        "Total": grpc.stream_unary_rpc_method_handler(total),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])


ECHO = GrpcService(name=SERVICE, register=register, public_methods=frozenset({PREFIX + "Ping"}))
OTHER = GrpcService(name="chatmesh.test.v1.OtherService", register=lambda server: None)


# --- tokens -----------------------------------------------------------------


class StaticJwks:
    """A real JwksSource publishing the test signing key."""

    async def fetch(self) -> list[dict[str, str]]:
        raw = SIGNING_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": KID, "alg": "EdDSA"}]


def mint(
    *, key: Ed25519PrivateKey = SIGNING_KEY, kid: str = KID, ttl: int = 900, **claims: Any
) -> str:
    now = int(time.time())
    payload = {"sub": "user-1", "sid": "session-1", "iat": now - 1, "exp": now + ttl}
    payload |= {"iss": ISSUER, "aud": AUDIENCE} | claims
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": kid})


def tampered() -> str:
    header, payload, signature = mint().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def alg_none() -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": "admin", "sid": "s", "iat": now, "exp": now + 60}
    claims |= {"iss": ISSUER, "aud": AUDIENCE}
    return f"{part({'alg': 'none', 'kid': KID})}.{part(claims)}."


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return call_metadata(access_token=token)


# --- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def json_logs() -> Iterator[None]:
    """The services' real logging setup, undone afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("echo", level="info", fmt="json")
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


async def start(*services: GrpcService, **kwargs: Any) -> RunningServer:
    kwargs.setdefault("verifier", TokenVerifier(StaticJwks()))
    return await start_grpc_server(
        services or (ECHO, OTHER), host="127.0.0.1", port=0, component="echo-component", **kwargs
    )


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[RunningServer]:
    running = await start()
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with create_channel(f"127.0.0.1:{server.port}") as chan:
        yield chan


def _same(data: bytes) -> bytes:
    return data


def unary(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(
        PREFIX + method, request_serializer=_same, response_deserializer=_same
    )


def server_stream(
    channel: grpc.aio.Channel, method: str
) -> grpc.aio.UnaryStreamMultiCallable[bytes, bytes]:
    return channel.unary_stream(
        PREFIX + method, request_serializer=_same, response_deserializer=_same
    )


async def collect(stream: AsyncIterable[bytes], *, into: list[bytes]) -> None:
    async for item in stream:
        into.append(item)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def health_status(channel: grpc.aio.Channel, service: str) -> int:
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    response = await check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return response.status


# --- health and reflection --------------------------------------------------


async def test_health_is_serving_for_each_hosted_service_and_overall(
    channel: grpc.aio.Channel,
) -> None:
    for service in (SERVICE, "chatmesh.test.v1.OtherService", ""):
        assert await health_status(channel, service) == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health_status(channel, "chatmesh.nope.v1.Missing")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_set_serving_reports_a_real_status(server: RunningServer) -> None:
    async with create_channel(f"127.0.0.1:{server.port}") as channel:
        await server.set_serving(False)
        try:
            assert (
                await health_status(channel, SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
            )
            assert await health_status(channel, "") == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            await server.set_serving(True)
        assert await health_status(channel, "") == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_hosted_services_without_a_token(
    channel: grpc.aio.Channel,
) -> None:
    reflect = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names: set[str] = set()
    async for response in reflect(iter([request]), timeout=2):
        names |= {s.name for s in response.list_services_response.service}
    assert {SERVICE, "chatmesh.test.v1.OtherService", "grpc.health.v1.Health"} <= names


# --- shutdown ---------------------------------------------------------------


async def test_stop_reports_not_serving_while_draining_then_stops() -> None:
    running = await start()
    async with create_channel(f"127.0.0.1:{running.port}") as channel:
        started = time.monotonic()
        stopping = asyncio.create_task(running.stop(drain=0.6, grace=1))
        await asyncio.sleep(0.1)
        for service in (SERVICE, ""):
            status = await health_status(channel, service)
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        # Draining still serves: the load balancer has not moved every client yet.
        assert await unary(channel, "Ping")(b"", timeout=2) == b"pong:anonymous"
        assert not stopping.done()
        await asyncio.gather(stopping, running.stop(drain=5, grace=5))  # idempotent
        assert time.monotonic() - started == pytest.approx(0.6, abs=0.4)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_status(channel, "")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_stop_lets_in_flight_rpcs_finish_within_grace() -> None:
    running = await start()
    async with create_channel(f"127.0.0.1:{running.port}") as channel:
        call = unary(channel, "Slow")(b"0.3", metadata=bearer(mint()), timeout=5)
        await asyncio.sleep(0.1)
        await running.stop(drain=0, grace=3)
        assert await call == b"done"


async def test_a_taken_port_fails_start_up(server: RunningServer) -> None:
    with pytest.raises(RuntimeError):
        await start_grpc_server(
            [ECHO], host="127.0.0.1", port=server.port, verifier=None, component="echo"
        )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signals_set_the_stop_event(signum: signal.Signals) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    install_stop_signals(stop)
    try:
        os.kill(os.getpid(), signum)
        await asyncio.wait_for(stop.wait(), timeout=2)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)


# --- authentication ---------------------------------------------------------


async def test_a_valid_token_identifies_the_caller(channel: grpc.aio.Channel) -> None:
    token = mint(sub="user-42", sid="session-9")
    body = await unary(channel, "Whoami")(b"", metadata=bearer(token), timeout=2)
    assert json.loads(body)["user"] == "user-42"
    assert json.loads(body)["session"] == "session-9"


UNAUTHENTICATED_CALLS: dict[str, tuple[tuple[tuple[str, str], ...], str]] = {
    "no token": ((), "unauthenticated"),
    "expired": (
        bearer(mint(iat=int(time.time()) - 999, exp=int(time.time()) - 5)),
        "token_expired",
    ),
    "tampered": (bearer(tampered()), "invalid_token"),
    "alg none": (bearer(alg_none()), "invalid_token"),
    "unknown kid": (bearer(mint(key=Ed25519PrivateKey.generate(), kid="k9")), "invalid_token"),
    "not bearer": ((("authorization", "Basic dXNlcjpwYXNz"),), "invalid_token"),
}


@pytest.mark.parametrize("case", UNAUTHENTICATED_CALLS)
async def test_protected_methods_reject_missing_and_bad_tokens(
    case: str, channel: grpc.aio.Channel
) -> None:
    metadata, code = UNAUTHENTICATED_CALLS[case]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await unary(channel, "Whoami")(b"", metadata=metadata, timeout=2)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert from_rpc_error(caught.value).code == code


async def test_public_methods_work_without_a_token_and_use_a_valid_one(
    channel: grpc.aio.Channel,
) -> None:
    ping_rpc = unary(channel, "Ping")
    assert await ping_rpc(b"", timeout=2) == b"pong:anonymous"
    assert await ping_rpc(b"", metadata=bearer(mint(sub="u7")), timeout=2) == b"pong:u7"
    # A stale token must not block a public method such as Login.
    assert await ping_rpc(b"", metadata=bearer(tampered()), timeout=2) == b"pong:anonymous"


async def test_no_verifier_fails_closed() -> None:
    running = await start(verifier=None)
    try:
        async with create_channel(f"127.0.0.1:{running.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await unary(channel, "Whoami")(b"", metadata=bearer(mint()))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert await unary(channel, "Ping")(b"") == b"pong:anonymous"
    finally:
        await running.stop()


# --- error mapping ----------------------------------------------------------


async def test_a_service_error_arrives_with_its_code_and_details(
    channel: grpc.aio.Channel,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await unary(channel, "Fail")(b"", metadata=bearer(mint()), timeout=2)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    error = from_rpc_error(caught.value)
    assert isinstance(error, NotFound)
    assert (error.code, error.message, error.details) == (
        "room_not_found",
        "room 7 does not exist",
        {"room_id": "7"},
    )


async def test_a_crash_is_internal_and_never_leaks_the_exception_text(
    channel: grpc.aio.Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    metadata = (*bearer(mint()), ("x-request-id", "crash-1"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await unary(channel, "Crash")(b"", metadata=metadata, timeout=2)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error"
    assert from_rpc_error(caught.value).code == "internal"
    sent = repr(caught.value.trailing_metadata()) + repr(caught.value.initial_metadata())
    assert "secret detail" not in sent
    assert "secret detail" not in (caught.value.debug_error_string() or "")
    # The operator still gets the full story, tied to the request.
    crash_logs = [e for e in json_lines(capsys.readouterr().err) if e["event"] == "rpc_crashed"]
    assert len(crash_logs) == 1
    assert crash_logs[0]["request_id"] == "crash-1"
    assert "RuntimeError: secret detail" in crash_logs[0]["exception"]


# --- streaming --------------------------------------------------------------


async def test_bidi_stream_is_authenticated_and_maps_errors_mid_stream(
    channel: grpc.aio.Channel,
) -> None:
    chat_rpc = channel.stream_stream(
        PREFIX + "Chat", request_serializer=_same, response_deserializer=_same
    )
    call = chat_rpc(iter([b"hi", b"there"]), metadata=bearer(mint(sub="ann")), timeout=2)
    assert [message async for message in call] == [b"ann:hi", b"ann:there"]

    received: list[bytes] = []
    call = chat_rpc(iter([b"hi", b"leave"]), metadata=bearer(mint(sub="ann")), timeout=2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(call, into=received)
    assert received == [b"ann:hi"]
    assert from_rpc_error(caught.value).code == "not_a_member"

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(chat_rpc(iter([b"hi"]), timeout=2), into=[])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_server_streams_and_client_streams_go_through_the_chain(
    channel: grpc.aio.Channel,
) -> None:
    metadata = bearer(mint())
    received: list[bytes] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(server_stream(channel, "Count")(b"2", metadata=metadata), into=received)
    assert received == [b"0", b"1"]
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert from_rpc_error(caught.value).code == "not_a_member"

    writes = server_stream(channel, "WriteTwo")(b"", metadata=metadata, timeout=2)
    assert [item async for item in writes] == [b"first", b"second"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(server_stream(channel, "WriteTwo")(b"", timeout=2), into=[])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

    total_rpc = channel.stream_unary(
        PREFIX + "Total", request_serializer=_same, response_deserializer=_same
    )
    assert await total_rpc(iter([b"1", b"2", b"3"]), metadata=metadata, timeout=2) == b"6"


# --- request id, logs, metrics ----------------------------------------------


async def test_the_request_id_is_bound_echoed_and_logged(
    channel: grpc.aio.Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    metadata = call_metadata(access_token=mint(sub="user-5"), request_id="req-123")
    call = unary(channel, "Whoami")(b"", metadata=metadata, timeout=2)
    assert json.loads(await call)["request_id"] == "req-123"
    assert ("x-request-id", "req-123") in tuple(await call.trailing_metadata() or ())
    access = [e for e in json_lines(capsys.readouterr().err) if e["event"] == "rpc"]
    assert access[-1]["request_id"] == "req-123"
    assert access[-1]["method"] == PREFIX + "Whoami"
    assert access[-1]["code"] == "OK"
    assert access[-1]["user_id"] == "user-5"
    assert access[-1]["service"] == "echo"
    assert access[-1]["component"] == "echo-component"
    assert isinstance(access[-1]["duration_ms"], float)


async def test_a_missing_or_unsafe_request_id_is_replaced_by_a_fresh_one(
    channel: grpc.aio.Channel,
) -> None:
    seen: list[str] = []
    for metadata in ((), (("x-request-id", "has spaces; and=junk"),), ()):
        call = unary(channel, "Whoami")(b"", metadata=(*bearer(mint()), *metadata), timeout=2)
        request_id = json.loads(await call)["request_id"]
        assert ("x-request-id", request_id) in tuple(await call.trailing_metadata() or ())
        seen.append(request_id)
    assert all(uuid.UUID(hex=request_id) for request_id in seen)
    assert len(set(seen)) == 3


async def test_an_error_keeps_the_request_id_trailer(channel: grpc.aio.Channel) -> None:
    metadata = (*bearer(mint()), ("x-request-id", "fail-9"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await unary(channel, "Fail")(b"", metadata=metadata, timeout=2)
    assert ("x-request-id", "fail-9") in tuple(caught.value.trailing_metadata() or ())


def handled(method: str, code: str) -> float:
    labels = {"grpc_service": SERVICE, "grpc_method": method, "grpc_code": code}
    return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0


async def test_metrics_count_each_rpc_by_code_and_are_served_over_http(
    channel: grpc.aio.Channel,
) -> None:
    ok_before, failed_before = handled("Ping", "OK"), handled("Fail", "NOT_FOUND")
    denied_before = handled("Whoami", "UNAUTHENTICATED")
    await unary(channel, "Ping")(b"", timeout=2)
    with pytest.raises(grpc.aio.AioRpcError):
        await unary(channel, "Fail")(b"", metadata=bearer(mint()), timeout=2)
    with pytest.raises(grpc.aio.AioRpcError):
        await unary(channel, "Whoami")(b"", timeout=2)
    assert handled("Ping", "OK") == ok_before + 1
    assert handled("Fail", "NOT_FOUND") == failed_before + 1
    assert handled("Whoami", "UNAUTHENTICATED") == denied_before + 1

    port = start_metrics_server("127.0.0.1", 0)
    assert port > 0
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    line = (
        f'grpc_server_handled_total{{grpc_code="OK",grpc_method="Ping",grpc_service="{SERVICE}"}}'
    )
    assert f"{line} {handled('Ping', 'OK')}" in response.text
    assert 'grpc_server_handling_seconds_bucket{grpc_method="Ping"' in response.text


# --- tracing ----------------------------------------------------------------


async def test_each_rpc_gets_a_server_span_in_the_callers_trace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    running = await start(tracer_provider=provider)
    try:
        async with create_channel(f"127.0.0.1:{running.port}") as channel:
            capsys.readouterr()
            with provider.get_tracer("bff").start_as_current_span("GET /api/v1/me") as parent:
                metadata = call_metadata(access_token=mint())
                await unary(channel, "Whoami")(b"", metadata=metadata, timeout=2)
            with pytest.raises(grpc.aio.AioRpcError):
                await unary(channel, "Fail")(b"", metadata=metadata, timeout=2)
    finally:
        await running.stop()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    ok, failed = spans[f"{SERVICE}/Whoami"], spans[f"{SERVICE}/Fail"]
    trace_id = parent.get_span_context().trace_id
    assert ok.kind == SpanKind.SERVER
    assert ok.context is not None
    assert ok.context.trace_id == trace_id
    assert ok.parent is not None
    assert ok.parent.span_id == parent.get_span_context().span_id
    assert ok.status.status_code == StatusCode.UNSET
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    logged = [
        e for e in json_lines(capsys.readouterr().err) if e.get("method", "").endswith("/Whoami")
    ]
    assert logged[-1]["trace_id"] == f"{trace_id:032x}"
