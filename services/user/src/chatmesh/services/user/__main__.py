"""`python -m chatmesh.services.user [migrate]`: run the user service until
SIGTERM/SIGINT, or apply its migrations and exit."""

from chatmesh.common.service import run_service_main
from chatmesh.services.user.app import migrate, serve
from chatmesh.services.user.settings import UserSettings

if __name__ == "__main__":
    run_service_main(UserSettings, serve=serve, migrate=migrate)
