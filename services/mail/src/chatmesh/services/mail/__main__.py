"""`python -m chatmesh.services.mail [migrate | send-weekly-digests |
send-missed-messages]`: run the mail service until SIGTERM/SIGINT, apply its
migrations, or send one round of digests (for a Kubernetes CronJob) and exit."""

from chatmesh.common.service import run_service_main
from chatmesh.services.mail.app import migrate, send_missed_messages, send_weekly_digests, serve
from chatmesh.services.mail.settings import MailSettings

if __name__ == "__main__":
    run_service_main(
        MailSettings,
        serve=serve,
        migrate=migrate,
        commands={
            "send-weekly-digests": send_weekly_digests,
            "send-missed-messages": send_missed_messages,
        },
    )
