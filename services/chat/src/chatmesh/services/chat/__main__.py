"""`python -m chatmesh.services.chat [migrate]`: run the chat service until
SIGTERM/SIGINT, or apply its migrations and exit."""

from chatmesh.common.service import run_service_main
from chatmesh.services.chat.app import migrate, serve
from chatmesh.services.chat.settings import ChatSettings

if __name__ == "__main__":
    run_service_main(ChatSettings, serve=serve, migrate=migrate)
