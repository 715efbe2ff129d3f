"""The email templates: Jinja2 (HTML autoescaped, text not), one shared layout,
subjects checked for header injection, links built from the public URL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2

from chatmesh.common.errors import InvalidArgument, NotFound
from chatmesh.services.mail.addresses import check_header_value

TEMPLATE_DIR = Path(__file__).parent / "templates"
PRODUCT = "ChatMesh"

# Categories. ACCOUNT mail is always sent; the others follow preferences.
ACCOUNT = "account"
SECURITY = "security"
MISSED_MESSAGES = "missed_messages"
WEEKLY_DIGEST = "weekly_digest"
SYSTEM = "system"
# Categories a user can turn off (and unsubscribe from in one click).
OPTIONAL_CATEGORIES = (SECURITY, MISSED_MESSAGES, WEEKLY_DIGEST)

MAX_VARIABLE_BYTES = 64 * 1024
MAX_RENDERED_BYTES = 512 * 1024
MAX_SUBJECT_LENGTH = 200


@dataclass(frozen=True)
class TemplateSpec:
    id: str
    category: str
    subject: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = field(default=())


TEMPLATES: dict[str, TemplateSpec] = {
    spec.id: spec
    for spec in (
        TemplateSpec(
            "verify_email", ACCOUNT, "Verify your email address", ("display_name", "token")
        ),
        TemplateSpec(
            "password_reset",
            ACCOUNT,
            "Reset your password",
            ("display_name", "token"),
            ("ip_address",),
        ),
        TemplateSpec(
            "password_changed",
            SECURITY,
            "Your password was changed",
            ("display_name",),
            ("change_time",),
        ),
        TemplateSpec(
            "new_device_login",
            SECURITY,
            "New sign-in to your account",
            ("display_name",),
            ("ip_address", "user_agent", "login_time"),
        ),
        TemplateSpec(
            "refresh_token_reused",
            SECURITY,
            "We signed out a device to protect your account",
            ("display_name",),
            ("ip_address", "user_agent"),
        ),
        TemplateSpec(
            "missed_messages",
            MISSED_MESSAGES,
            "You have {{ count }} unread message{{ '' if count == 1 else 's' }}",
            ("display_name", "count", "rooms"),
            ("more",),
        ),
        TemplateSpec(
            "weekly_digest",
            WEEKLY_DIGEST,
            "Your week in ChatMesh: {{ total_messages }}"
            " message{{ '' if total_messages == 1 else 's' }}, {{ total_unread }} unread",
            ("display_name", "period", "total_messages", "total_unread", "rooms"),
        ),
        TemplateSpec(
            "system_alert",
            SYSTEM,
            "[{{ severity | upper }}] {{ title }}",
            ("title", "message", "severity"),
        ),
    )
}


@dataclass(frozen=True)
class Rendered:
    template_id: str
    category: str
    subject: str
    text: str
    html: str


class TemplateRenderer:
    def __init__(self, *, public_url: str) -> None:
        self._public_url = public_url.rstrip("/")
        options: dict[str, Any] = {
            "loader": jinja2.FileSystemLoader(TEMPLATE_DIR),
            "undefined": jinja2.StrictUndefined,
            "trim_blocks": True,
            "lstrip_blocks": True,
            "auto_reload": False,
        }
        self._html = jinja2.Environment(autoescape=True, **options)
        self._text = jinja2.Environment(autoescape=False, **options)  # noqa: S701 - plain text
        # Subjects are header values, not HTML: checked for CR/LF instead of escaped.
        self._subject = jinja2.Environment(
            autoescape=False,  # noqa: S701
            undefined=jinja2.StrictUndefined,
        )
        for env in (self._html, self._text):
            env.globals["url"] = self.url
            env.globals["product"] = PRODUCT
        self._subjects = {
            spec.id: self._subject.from_string(spec.subject) for spec in TEMPLATES.values()
        }

    def url(self, path: str, **query: str) -> str:
        """An absolute link into the product (query values URL-encoded)."""
        suffix = "?" + urlencode(query) if query else ""
        return f"{self._public_url}{path}{suffix}"

    def category_of(self, template_id: str) -> str:
        return _spec(template_id).category

    def render(
        self, template_id: str, variables: Mapping[str, Any], *, unsubscribe_url: str = ""
    ) -> Rendered:
        spec = _spec(template_id)
        missing = [name for name in spec.required if name not in variables]
        if missing:
            raise InvalidArgument(
                "missing template variables: " + ", ".join(missing),
                code="missing_variables",
                details={"missing": missing},
            )
        context: dict[str, Any] = dict.fromkeys(spec.optional, "")
        context.update(variables)
        context["unsubscribe_url"] = unsubscribe_url
        try:
            subject = self._subjects[template_id].render(context).strip()
            context["subject"] = subject
            html = self._html.get_template(f"{template_id}.html").render(context)
            text = self._text.get_template(f"{template_id}.txt").render(context)
        except jinja2.UndefinedError as exc:
            raise InvalidArgument("missing template variables", code="missing_variables") from exc
        check_header_value(subject, field="subject")
        if len(subject) > MAX_SUBJECT_LENGTH:
            raise InvalidArgument("the subject is too long", code="subject_too_long")
        if len(html.encode()) + len(text.encode()) > MAX_RENDERED_BYTES:
            raise InvalidArgument(
                f"the email is larger than {MAX_RENDERED_BYTES} bytes", code="email_too_large"
            )
        return Rendered(template_id, spec.category, subject, text.strip() + "\n", html)


def _spec(template_id: str) -> TemplateSpec:
    spec = TEMPLATES.get(template_id)
    if spec is None:
        raise NotFound(
            "unknown template",
            code="unknown_template",
            details={"template_id": template_id[:64], "known": sorted(TEMPLATES)},
        )
    return spec
