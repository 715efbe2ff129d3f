"""`python -m chatmesh.services.mail [migrate | worker | send-weekly-digests |
send-missed-messages]`: run the mail service until SIGTERM/SIGINT, apply its
migrations, run a delivery-only worker, or send one round of digests (for a
Kubernetes CronJob) and exit."""

import sys


def _worker_main() -> None:
    # Decided before anything else is imported: the worker must not load the
    # service's gRPC server, protobufs and templates (see worker.py).
    import asyncio  # noqa: PLC0415

    from chatmesh.common.logging import configure_logging  # noqa: PLC0415
    from chatmesh.common.settings import load_settings  # noqa: PLC0415
    from chatmesh.services.mail.settings import MailSettings  # noqa: PLC0415
    from chatmesh.services.mail.worker import run_worker  # noqa: PLC0415

    settings = load_settings(MailSettings)  # exits 2 with one line on bad config
    configure_logging(settings.service_name, level=settings.log_level, fmt=settings.log_format)
    asyncio.run(run_worker(settings))


def _service_main() -> None:
    from chatmesh.common.service import run_service_main  # noqa: PLC0415
    from chatmesh.services.mail.app import (  # noqa: PLC0415
        migrate,
        send_missed_messages,
        send_weekly_digests,
        serve,
    )
    from chatmesh.services.mail.settings import MailSettings  # noqa: PLC0415

    run_service_main(
        MailSettings,
        serve=serve,
        migrate=migrate,
        commands={
            "send-weekly-digests": send_weekly_digests,
            "send-missed-messages": send_missed_messages,
        },
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        _worker_main()
    else:
        _service_main()
