"""Parsing recipient addresses and header values so nothing a caller sends can
add a header or a recipient (CR/LF, NUL, several addresses in one field)."""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.utils import getaddresses

from chatmesh.common.errors import InvalidArgument

MAX_ADDRESS_LENGTH = 254
# A dot-atom local part and a DNS domain: what providers accept without quoting.
_ADDR_SPEC = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_header_value(value: str, *, field: str) -> str:
    """`value` unchanged if it holds no control characters (CR/LF would start a
    new header), else InvalidArgument `header_injection`."""
    if _CONTROL.search(value):
        raise InvalidArgument(
            f"{field} must not contain line breaks or control characters",
            code="header_injection",
            details={"field": field},
        )
    return value


def parse_address(value: str, *, field: str = "recipient") -> Address:
    """One mailbox (`a@b.c` or `Name <a@b.c>`), domain lowercased."""
    check_header_value(value, field=field)
    found = getaddresses([value])
    name, addr = found[0] if len(found) == 1 else ("", "")
    if not addr or not _ADDR_SPEC.match(addr):
        raise InvalidArgument(
            f"{field} is not a valid email address",
            code="invalid_address",
            details={"field": field},
        )
    if len(addr) > MAX_ADDRESS_LENGTH:
        raise InvalidArgument(f"{field} is too long", code="invalid_address")
    local, _, domain = addr.rpartition("@")
    return Address(display_name=name, username=local, domain=domain.lower())


def normalized(address: Address) -> str:
    """The bare address used for suppression and rate-limit keys."""
    return f"{address.username}@{address.domain}".lower()
