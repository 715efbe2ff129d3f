"""Server interceptors: request id + access log, tracing, metrics, error mapping, auth.

Each interceptor contributes one async context manager (a *scope*) that runs
around every call of every handler kind: unary or streaming, async generator or
the reader/writer API. `server_interceptors` orders them, outermost first:

    request log → tracing → metrics → errors → auth → handler

so the access log sees the final status and the trace id, metrics count the
mapped codes, and an auth failure is mapped like any other ServiceError.

grpc.aio runs every RPC in its own task, so context variables set here are
private to the RPC and vanish with it.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import Token
from functools import partial
from typing import Any, Generic, TypeAlias, TypeVar, cast

import grpc
import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from chatmesh.common import metrics
from chatmesh.common.errors import Internal, ServiceError, Unauthenticated, to_rpc_status
from chatmesh.common.grpc.context import claims_var, request_id_var
from chatmesh.common.logging import get_logger
from chatmesh.common.tokens import AccessClaims, TokenVerifier

# Strings: the grpc classes are generic only in the type stubs, not at runtime.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Scope: TypeAlias = "Callable[[Context], AbstractAsyncContextManager[None]]"
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_State = TypeVar("_State")
_SpanState: TypeAlias = "tuple[trace.Span, Token[otel_context.Context]]"

# Infrastructure every client (kubelet probes, grpcurl) must reach without a token.
OPEN_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
# An incoming id is logged verbatim, so only accept ids that cannot forge log lines.
_REQUEST_ID = re.compile(r"[\w.:/+=-]{1,128}", re.ASCII)

log = get_logger("chatmesh.grpc")


def metadata_value(metadata: Sequence[tuple[str, str | bytes]] | None, key: str) -> str | None:
    """The first text value of `key` (keys arrive lower-cased)."""
    for item_key, value in metadata or ():
        if item_key == key and isinstance(value, str):
            return value
    return None


def split_method(full_method: str) -> tuple[str, str]:
    """Split "/pkg.Service/Method" into ("pkg.Service", "Method")."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def final_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    """The status the client receives, as far as the server can know it."""
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    # code() is None until a handler aborts or calls set_code (the stub says otherwise).
    code = cast("grpc.StatusCode | None", context.code())
    if code is not None:
        return code
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


def wrap_handler(handler: Handler, scope: Scope) -> Handler:
    """The same handler (same kind and serializers) with `scope` around each call."""
    serializers: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler.unary_unary, scope), **serializers
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary(handler.stream_unary, scope), **serializers
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_streaming(handler.unary_stream, scope), **serializers
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_streaming(handler.stream_stream, scope), **serializers
        )
    return handler


def _wrap_unary(inner: Callable[..., Any], scope: Scope) -> Callable[..., Awaitable[Any]]:
    async def unary(request: Any, context: Context) -> Any:
        async with scope(context):
            result = inner(request, context)
            return await result if inspect.isawaitable(result) else result

    return unary


def _wrap_streaming(inner: Callable[..., Any], scope: Scope) -> Callable[..., Any]:
    # grpc.aio picks the streaming API from the handler's kind, so keep the kind.
    if inspect.iscoroutinefunction(inner):

        async def reader_writer(request: Any, context: Context) -> None:
            async with scope(context):
                await inner(request, context)

        return reader_writer

    async def generator(request: Any, context: Context) -> AsyncIterator[Any]:
        async with scope(context):
            responses = inner(request, context)
            if hasattr(responses, "__aiter__"):
                async for response in responses:
                    yield response
            else:
                for response in responses:
                    yield response

    return generator


class ScopeInterceptor(grpc.aio.ServerInterceptor, abc.ABC):
    """Base: wraps each handler it `applies_to` in `scope(call, context)`."""

    def applies_to(self, method: str) -> bool:
        return True

    @abc.abstractmethod
    def scope(
        self, call: grpc.HandlerCallDetails, context: Context
    ) -> AbstractAsyncContextManager[None]: ...

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None or not self.applies_to(handler_call_details.method):
            return handler
        return wrap_handler(handler, partial(self.scope, handler_call_details))


class ObservingInterceptor(ScopeInterceptor, Generic[_State]):
    """Base: `started` before each RPC, `finished` with its final status code after."""

    @abc.abstractmethod
    def started(self, call: grpc.HandlerCallDetails, context: Context) -> _State: ...

    @abc.abstractmethod
    def finished(
        self, call: grpc.HandlerCallDetails, state: _State, code: grpc.StatusCode
    ) -> None: ...

    @asynccontextmanager
    async def scope(self, call: grpc.HandlerCallDetails, context: Context) -> AsyncIterator[None]:
        state = self.started(call, context)
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.finished(call, state, final_code(context, error))


class RequestLogInterceptor(ObservingInterceptor[float]):
    """Binds the request id (from `x-request-id` or a new one) and logs each RPC.

    `component` names the service in every line: in the embedded mode several
    services share one process and so one logging configuration.
    """

    def __init__(self, component: str = "") -> None:
        self._bound: dict[str, str] = {"component": component} if component else {}

    def started(self, call: grpc.HandlerCallDetails, context: Context) -> float:
        incoming = metadata_value(call.invocation_metadata, "x-request-id")
        valid = incoming is not None and _REQUEST_ID.fullmatch(incoming)
        request_id = incoming if valid and incoming else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, **self._bound)
        request_id_var.set(request_id)
        # Echoed in the trailers; the error interceptor keeps it when it aborts.
        context.set_trailing_metadata((("x-request-id", request_id),))
        return time.perf_counter()

    def finished(self, call: grpc.HandlerCallDetails, state: float, code: grpc.StatusCode) -> None:
        # Probes hit health every few seconds: keep them out of the info stream.
        quiet = call.method.startswith(OPEN_METHOD_PREFIXES) and code is grpc.StatusCode.OK
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "rpc",
            method=call.method,
            code=code.name,
            duration_ms=round((time.perf_counter() - state) * 1000, 3),
        )


class MetricsInterceptor(ObservingInterceptor[float]):
    """grpc_server_handled_total and grpc_server_handling_seconds per method."""

    def started(self, call: grpc.HandlerCallDetails, context: Context) -> float:
        return time.perf_counter()

    def finished(self, call: grpc.HandlerCallDetails, state: float, code: grpc.StatusCode) -> None:
        service, method = split_method(call.method)
        metrics.GRPC_HANDLED.labels(service, method, code.name).inc()
        metrics.GRPC_LATENCY.labels(service, method).observe(time.perf_counter() - state)


class TracingInterceptor(ObservingInterceptor[_SpanState]):
    """A SERVER span per RPC, continuing the caller's trace from `traceparent`."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def started(self, call: grpc.HandlerCallDetails, context: Context) -> _SpanState:
        carrier = {k: v for k, v in call.invocation_metadata or () if isinstance(v, str)}
        service, method = split_method(call.method)
        span = self._tracer.start_span(
            call.method.lstrip("/"),
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        structlog.contextvars.bind_contextvars(
            trace_id=trace.format_trace_id(span.get_span_context().trace_id)
        )
        return span, token

    def finished(
        self,
        call: grpc.HandlerCallDetails,
        state: _SpanState,
        code: grpc.StatusCode,
    ) -> None:
        span, token = state
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
        span.end()
        otel_context.detach(token)


class ErrorInterceptor(ScopeInterceptor):
    """ServiceError → its status + ErrorInfo; anything else → INTERNAL, text never sent."""

    @asynccontextmanager
    async def scope(self, call: grpc.HandlerCallDetails, context: Context) -> AsyncIterator[None]:
        try:
            yield
        except grpc.aio.AbortError:
            raise  # the handler already chose a status
        except ServiceError as error:
            structlog.contextvars.bind_contextvars(error_code=error.code)
            await _abort(context, error)
        except Exception:
            log.exception("rpc_crashed", method=call.method)
            await _abort(context, Internal("internal error"))


async def _abort(context: Context, error: ServiceError) -> None:
    status = to_rpc_status(error)
    # Merge, so the x-request-id trailer survives next to grpc-status-details-bin.
    trailers = (*status.trailing_metadata, *(context.trailing_metadata() or ()))
    await context.abort(status.code, status.details, trailers)


class AuthInterceptor(ScopeInterceptor):
    """Verifies `authorization: Bearer <jwt>` and sets `claims_var`.

    Required for every method except `public_methods` and health/reflection. On a
    public method a valid token still sets the claims and a bad one is ignored
    (a stale token must not block Login). Without a verifier protected methods
    fail closed.
    """

    def __init__(self, verifier: TokenVerifier | None, public_methods: frozenset[str]) -> None:
        self._verifier = verifier
        self._public = public_methods

    def applies_to(self, method: str) -> bool:
        return not method.startswith(OPEN_METHOD_PREFIXES)

    @asynccontextmanager
    async def scope(self, call: grpc.HandlerCallDetails, context: Context) -> AsyncIterator[None]:
        claims = await self._authenticate(call)
        claims_var.set(claims)
        if claims is not None:
            structlog.contextvars.bind_contextvars(user_id=claims.user_id)
        yield

    async def _authenticate(self, call: grpc.HandlerCallDetails) -> AccessClaims | None:
        public = call.method in self._public
        header = metadata_value(call.invocation_metadata, "authorization")
        if header is None:
            if public:
                return None
            raise Unauthenticated("an access token is required", code="unauthenticated")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip() or self._verifier is None:
                raise Unauthenticated("the access token is invalid", code="invalid_token")
            return await self._verifier.verify(token.strip())
        except ServiceError:
            if public:
                return None
            raise


def server_interceptors(
    *,
    component: str = "",
    verifier: TokenVerifier | None,
    public_methods: frozenset[str],
    tracer: trace.Tracer | None = None,
) -> list[grpc.aio.ServerInterceptor]:
    """The chain every service runs, outermost first (tracing only when enabled)."""
    chain: list[grpc.aio.ServerInterceptor] = [RequestLogInterceptor(component)]
    if tracer is not None:
        chain.append(TracingInterceptor(tracer))
    chain += [MetricsInterceptor(), ErrorInterceptor(), AuthInterceptor(verifier, public_methods)]
    return chain
