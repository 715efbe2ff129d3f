"""Password rules and argon2id hashing.

Hashing runs in a worker thread: argon2 is deliberately slow and would stall
every other request on the event loop.
"""

from __future__ import annotations

import asyncio
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from chatmesh.common.errors import InvalidArgument

MIN_LENGTH = 10
MAX_LENGTH = 128

# The most used passwords that are long enough to pass the length rule (from
# public breach corpora); shorter ones already fail on length.
COMMON_PASSWORDS = frozenset(
    {
        "0123456789",
        "1234567890",
        "12345678910",
        "123456789a",
        "1234567890a",
        "a123456789",
        "a1234567890",
        "123123123123",
        "1q2w3e4r5t",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "zaq12wsxcde3",
        "qwertyuiop",
        "qwertyuiop123",
        "qwerty1234",
        "qwerty12345",
        "qwerty123456",
        "asdfghjkl1",
        "asdfghjkl123",
        "zxcvbnm123",
        "abcdefghij",
        "abcd123456",
        "abc1234567",
        "password12",
        "password123",
        "password1234",
        "password12345",
        "password123!",
        "password1!",
        "passw0rd123",
        "p@ssw0rd123",
        "p@ssword123",
        "administrator",
        "admin12345",
        "admin123456",
        "letmein123",
        "letmein1234",
        "welcome123",
        "welcome1234",
        "iloveyou123",
        "iloveyou12",
        "trustno1234",
        "changeme123",
        "football123",
        "baseball123",
        "basketball",
        "basketball1",
        "sunshine123",
        "princess123",
        "superman123",
        "starwars123",
        "michael123",
        "monkey12345",
        "dragon12345",
        "master12345",
        "shadow12345",
        "whatever123",
        "chocolate1",
        "butterfly1",
        "1234qwerasdf",
        "qazwsxedcrfv",
        "q1w2e3r4t5",
        "q1w2e3r4t5y6",
    }
)


def normalize_password(password: str) -> str:
    # NFKC so the same password typed on different keyboards/OSes hashes the same.
    return unicodedata.normalize("NFKC", password)


def password_problems(password: str, *, username: str, email: str) -> list[str]:
    """Every rule the password breaks, as sentences a user can act on."""
    reasons: list[str] = []
    if len(password) < MIN_LENGTH:
        reasons.append(f"must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        reasons.append(f"must be at most {MAX_LENGTH} characters long")
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS:
        reasons.append("is one of the most commonly used passwords")
    if len(username) >= 3 and username.lower() in lowered:
        reasons.append("must not contain your username")
    local_part = email.split("@", 1)[0].lower()
    if len(local_part) >= 3 and local_part in lowered:
        reasons.append("must not contain your email address")
    if password and len(set(password)) == 1:
        reasons.append("must not be a single character repeated")
    return reasons


def check_password(password: str, *, username: str, email: str) -> str:
    """The normalised password, or InvalidArgument(weak_password) listing every reason."""
    password = normalize_password(password)
    reasons = password_problems(password, username=username, email=email)
    if reasons:
        raise InvalidArgument(
            "the password is too weak: " + "; ".join(reasons),
            code="weak_password",
            details={"field": "password", "reasons": reasons},
        )
    return password


class PasswordHashing:
    """argon2id hashes; unknown users are verified against a dummy hash so a
    login takes as long whether or not the account exists."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        # Made up front: creating it on the first unknown login would make that one slower.
        self._dummy_hash = self._hasher.hash("dummy password for unknown users")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, normalize_password(password))

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True if `password` matches; with no hash, burns the same time and fails."""
        if stored_hash is None:
            await asyncio.to_thread(self._verify, self._dummy_hash, password)
            return False
        return await asyncio.to_thread(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, normalize_password(password))
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        return self._hasher.check_needs_rehash(stored_hash)
