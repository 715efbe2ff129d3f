"""`python -m chatmesh.services.auth [migrate]`: run the auth service until
SIGTERM/SIGINT, or apply its migrations and exit."""

from chatmesh.common.service import run_service_main
from chatmesh.services.auth.app import migrate, serve
from chatmesh.services.auth.settings import AuthSettings

if __name__ == "__main__":
    run_service_main(AuthSettings, serve=serve, migrate=migrate)
