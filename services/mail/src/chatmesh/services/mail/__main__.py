"""`python -m chatmesh.services.mail [migrate]`: run the mail service until
SIGTERM/SIGINT, or apply its migrations and exit."""

from chatmesh.common.service import run_service_main
from chatmesh.services.mail.app import migrate, serve
from chatmesh.services.mail.settings import MailSettings

if __name__ == "__main__":
    run_service_main(MailSettings, serve=serve, migrate=migrate)
