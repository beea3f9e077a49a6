"""Pseudonyms and sealed addresses: a copied database file names nobody.

A participant is HMAC-SHA256(secret, channel + platform id). The address needed
to reply (a chat id) is encrypted with Fernet under a key derived from the same
secret. The secret itself comes from KT_SECRET_KEY or a 0600 file in the data folder.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger(__name__)

SECRET_FILE = "secret.key"


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


MEMO = 20_000  # sealed addresses remembered opened: about 4 MB at most


class Identity:
    """Turns platform identities into pseudonyms and seals the addresses we reply to.

    Sealing and opening cost about 8 µs each, several times per answer, so the
    addresses of people active lately are remembered opened (in memory only, where
    they are anyway while being answered): a message from someone already known
    keeps their sealed address, and delivery opens it without decrypting.
    """

    def __init__(self, secret: bytes) -> None:
        self._pseudonym_key = _derive(secret, b"kitchen-table/pseudonym")
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret, b"kitchen-table/address")))
        self._opened: dict[bytes, str] = {}

    def pseudonym(self, channel: str, platform_id: str) -> str:
        message = f"{channel}\x00{platform_id}".encode()
        return hmac.new(self._pseudonym_key, message, hashlib.sha256).hexdigest()[:32]

    def seal(self, address: str) -> bytes:
        return self._fernet.encrypt(address.encode("utf-8"))

    def unseal(self, sealed: bytes) -> str:
        address = self._opened.get(sealed)
        if address is None:
            address = self._fernet.decrypt(sealed).decode("utf-8")
        return address

    def reseal(self, address: str, sealed: bytes | None) -> bytes:
        """`sealed` if it is this address sealed already (and now remembered), else a new seal."""
        if sealed is not None:
            try:
                if self.unseal(sealed) == address:
                    self._remember(sealed, address)
                    return sealed
            except InvalidToken:
                pass  # sealed under another secret: seal it again under ours
        sealed = self.seal(address)
        self._remember(sealed, address)
        return sealed

    def _remember(self, sealed: bytes, address: str) -> None:
        if sealed not in self._opened and len(self._opened) >= MEMO:
            del self._opened[next(iter(self._opened))]  # the longest remembered goes first
        self._opened[sealed] = address


def load_or_create_secret(configured: str | None, data_dir: Path) -> bytes:
    """The configured secret, else the one in the data folder, else a new one saved there."""
    if configured:
        return configured.encode("utf-8")
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_hex(32).encode("ascii")
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(secret + b"\n")
    log.warning(
        "No KT_SECRET_KEY set: generated one in %s. Back it up: without it, nobody can be "
        "replied to and pseudonyms change.",
        path,
    )
    return secret
