"""`chatmesh dev`: the whole mesh in one process, on the embedded defaults.

Every service is still a real gRPC server on its own port and the BFF talks to
it over gRPC exactly as in production; only the shared state is swapped for
embedded equivalents (SQLite files, the in-process event bus and rate limiter).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from chatmesh.bff.app import create_app
from chatmesh.bff.settings import BffSettings
from chatmesh.common.bus import InProcessEventBus
from chatmesh.common.grpc.client import create_channel
from chatmesh.common.grpc.health import wait_until_serving
from chatmesh.common.grpc.server import install_stop_signals
from chatmesh.common.logging import configure_logging, get_logger
from chatmesh.common.pubsub import InProcessPubSub
from chatmesh.common.ratelimit import InMemoryRateLimiter
from chatmesh.services.auth.app import AuthServer, serve
from chatmesh.services.auth.settings import AuthSettings
from chatmesh.services.chat.app import ChatServer
from chatmesh.services.chat.app import serve as serve_chat
from chatmesh.services.chat.settings import ChatSettings
from chatmesh.services.mail.app import MailServer
from chatmesh.services.mail.app import serve as serve_mail
from chatmesh.services.mail.settings import MailSettings
from chatmesh.services.user.app import UserServer
from chatmesh.services.user.app import serve as serve_user
from chatmesh.services.user.settings import UserSettings

log = get_logger("chatmesh.dev")

AUTH_SERVICE = "chatmesh.auth.v1.AuthService"
USER_SERVICE = "chatmesh.user.v1.UserService"
CHAT_SERVICE = "chatmesh.chat.v1.ChatService"
MAIL_SERVICE = "chatmesh.mail.v1.MailService"


class DevSettings(BaseSettings):
    """Where `chatmesh dev` listens (CHATMESH_DEV_* or the command's flags)."""

    model_config = SettingsConfigDict(env_prefix="CHATMESH_DEV_", extra="ignore")

    host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    auth_port: int = Field(default=50051, ge=0, le=65535)
    user_port: int = Field(default=50052, ge=0, le=65535)
    chat_port: int = Field(default=50053, ge=0, le=65535)
    mail_port: int = Field(default=50054, ge=0, le=65535)
    # The mail service's REST API (its dev mailbox, which the BFF proxies).
    mail_http_port: int = Field(default=8025, ge=1, le=65535)
    data_dir: Path = Path(".chatmesh")
    log_level: str = "info"
    web_dir: Path = Path("clients/web/out")
    # Seconds to wait for every service to report SERVING.
    start_timeout: float = Field(default=30.0, gt=0)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: `chatmesh dev` owns SIGINT/SIGTERM
    and stops the BFF and every service in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _start_chat(
    settings: DevSettings,
    *,
    auth_address: str,
    user_address: str,
    public_url: str,
    bus: InProcessEventBus,
    pubsub: InProcessPubSub,
    limiter: InMemoryRateLimiter,
) -> ChatServer:
    """The chat service on SQLite, sharing the bus (it learns users from auth's
    events) and the in-process pub/sub; returns once it reports SERVING."""
    chat = await serve_chat(
        ChatSettings(
            database_url=f"sqlite+aiosqlite:///{settings.data_dir / 'chat.db'}",
            grpc_host=settings.host,
            grpc_port=settings.chat_port,
            metrics_port=0,
            auth_address=auth_address,
            user_address=user_address,  # blocks are enforced in DMs
            public_url=public_url,
        ),
        bus=bus,
        pubsub=pubsub,
        limiter=limiter,
    )
    try:
        address = f"{settings.host}:{chat.port}"
        async with create_channel(address) as channel, asyncio.timeout(settings.start_timeout):
            await wait_until_serving(channel, CHAT_SERVICE)
    except BaseException:
        await chat.stop(drain=0.0, grace=1.0)
        raise
    return chat


async def _start_mail(
    settings: DevSettings,
    *,
    auth_address: str,
    user_address: str,
    public_url: str,
    bus: InProcessEventBus,
    limiter: InMemoryRateLimiter,
) -> MailServer:
    """The mail service on SQLite with the dev mailbox provider: it consumes auth's
    events from the shared bus as in production, stores each email (shown at
    /dev/mail) and prints its subject and links; returns once it reports SERVING."""
    mail = await serve_mail(
        MailSettings(
            database_url=f"sqlite+aiosqlite:///{settings.data_dir / 'mail.db'}",
            # The database-backed in-process queue, whatever CHATMESH_REDIS_URL says.
            redis_url="",
            grpc_host=settings.host,
            grpc_port=settings.mail_port,
            rest_host=settings.host,
            rest_port=settings.mail_http_port,
            metrics_port=0,
            auth_address=auth_address,
            # Who is offline, for the missed-messages digest.
            user_address=user_address,
            public_url=public_url,
            provider="dev",
            dev_mail_console=True,
        ),
        bus=bus,
        limiter=limiter,
    )
    try:
        address = f"{settings.host}:{mail.port}"
        async with create_channel(address) as channel, asyncio.timeout(settings.start_timeout):
            await wait_until_serving(channel, MAIL_SERVICE)
    except BaseException:
        await mail.stop(drain=0.0, grace=1.0)
        raise
    return mail


async def run_dev(settings: DevSettings) -> int:
    configure_logging("chatmesh-dev", level=settings.log_level, fmt="console")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    public_url = f"http://{settings.host}:{settings.http_port}"
    stop = asyncio.Event()
    install_stop_signals(stop)

    bus = InProcessEventBus()
    limiter = InMemoryRateLimiter()
    pubsub = InProcessPubSub()
    auth: AuthServer | None = None
    user: UserServer | None = None
    chat: ChatServer | None = None
    mail: MailServer | None = None
    try:
        auth = await serve(
            AuthSettings(
                database_url=f"sqlite+aiosqlite:///{settings.data_dir / 'auth.db'}",
                grpc_host=settings.host,
                grpc_port=settings.auth_port,
                public_url=public_url,
            ),
            bus=bus,
            limiter=limiter,
        )
        auth_address = f"{settings.host}:{auth.port}"
        async with create_channel(auth_address) as channel, asyncio.timeout(settings.start_timeout):
            await wait_until_serving(channel, AUTH_SERVICE)

        user = await serve_user(
            UserSettings(
                database_url=f"sqlite+aiosqlite:///{settings.data_dir / 'user.db'}",
                grpc_host=settings.host,
                grpc_port=settings.user_port,
                metrics_port=0,
                auth_address=auth_address,
                public_url=public_url,
            ),
            bus=bus,
            pubsub=pubsub,
        )
        user_address = f"{settings.host}:{user.port}"
        async with create_channel(user_address) as channel, asyncio.timeout(settings.start_timeout):
            await wait_until_serving(channel, USER_SERVICE)

        chat = await _start_chat(
            settings,
            auth_address=auth_address,
            user_address=user_address,
            public_url=public_url,
            bus=bus,
            pubsub=pubsub,
            limiter=limiter,
        )
        chat_address = f"{settings.host}:{chat.port}"

        mail = await _start_mail(
            settings,
            auth_address=auth_address,
            user_address=user_address,
            public_url=public_url,
            bus=bus,
            limiter=limiter,
        )

        bff_settings = BffSettings(
            http_host=settings.host,
            http_port=settings.http_port,
            auth_address=auth_address,
            user_address=user_address,
            chat_address=chat_address,
            mail_http_url=f"http://{settings.host}:{mail.rest_port}",
            dev_mailbox=True,
            public_url=public_url,
            web_dir=settings.web_dir,
        )
        server = _EmbeddedServer(
            uvicorn.Config(
                create_app(bff_settings, limiter=limiter),
                host=settings.host,
                port=settings.http_port,
                log_config=None,
                access_log=False,
                # The BFF resolves client IPs from X-Forwarded-For itself (trusted hops).
                proxy_headers=False,
                lifespan="on",
                ws="websockets-sansio",
                # No per-connection zlib state (see chatmesh.bff.__main__).
                ws_per_message_deflate=False,
            )
        )
        bff_task = asyncio.create_task(server.serve())
        # uvicorn offers no start-up event to await, only this flag.
        while not server.started and not bff_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if bff_task.done():
            bff_task.result()
            log.error("bff failed to start")
            return 1
        log.info(
            "chatmesh is ready", url=public_url, auth=auth_address, data_dir=str(settings.data_dir)
        )
        print(f"\n  ChatMesh is running at {public_url}  (Ctrl-C to stop)\n", flush=True)

        await stop.wait()
        log.info("stopping")
        server.should_exit = True
        await bff_task
        return 0
    finally:
        stop.set()
        # The reverse of the start order.
        for service in (mail, chat, user, auth):
            if service is not None:
                await service.stop(drain=0.0, grace=2.0)
        await pubsub.close()
        await bus.close()
        log.info("stopped")
