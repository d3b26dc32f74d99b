"""A file keyring: one JSON file per key, mode 0600, in ``<home>/keys``.

The private key is stored unencrypted (Cosmos' ``test`` backend): fine for
localnets and bots on a locked-down host, not for cold storage.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re

import nacl.exceptions
import nacl.signing

from app.lib.address import address_from_pubkey, encode_address

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class KeyError_(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    signing_key: nacl.signing.SigningKey

    @property
    def pub_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def address(self) -> str:
        return encode_address(address_from_pubkey(self.pub_key))

    def public_info(self) -> dict:
        return {"name": self.name, "address": self.address, "pub_key": self.pub_key.hex()}


class Keyring:
    def __init__(self, directory: str | pathlib.Path) -> None:
        self.dir = pathlib.Path(directory)

    def _path(self, name: str) -> pathlib.Path:
        if not NAME_RE.match(name):
            raise KeyError_(f"invalid key name {name!r} (letters, digits, _ . - only)")
        return self.dir / f"{name}.json"

    def _write(self, name: str, sk: nacl.signing.SigningKey, overwrite: bool = False) -> Key:
        path = self._path(name)
        if path.exists() and not overwrite:
            raise KeyError_(f"key {name!r} already exists in {self.dir}")
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        key = Key(name, sk)
        doc = {**key.public_info(), "type": "ed25519", "private_key": bytes(sk).hex()}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
        os.chmod(path, 0o600)
        return key

    def add(self, name: str) -> Key:
        return self._write(name, nacl.signing.SigningKey.generate())

    def import_hex(self, name: str, private_key_hex: str) -> Key:
        try:
            seed = bytes.fromhex(private_key_hex.strip())
        except ValueError:
            raise KeyError_("private key must be 64 hex characters") from None
        if len(seed) != 32:
            raise KeyError_("private key must be 32 bytes (64 hex characters)")
        return self._write(name, nacl.signing.SigningKey(seed))

    def get(self, name: str) -> Key:
        path = self._path(name)
        if not path.exists():
            raise KeyError_(f"no key named {name!r} in {self.dir}")
        try:
            doc = json.loads(path.read_text())
            seed = bytes.fromhex(doc["private_key"])
            return Key(name, nacl.signing.SigningKey(seed))
        except (ValueError, TypeError, KeyError, nacl.exceptions.CryptoError):  # ValueError covers bad JSON/hex
            raise KeyError_(f"key file {path} is not a perpd key (want JSON with a 64-hex private_key)") from None

    def export_hex(self, name: str) -> str:
        return bytes(self.get(name).signing_key).hex()

    def list(self) -> list[Key]:
        if not self.dir.exists():
            return []
        keys = []
        for p in sorted(self.dir.glob("*.json")):
            if not NAME_RE.match(p.stem):
                raise KeyError_(f"{p} is not a key file name perpd uses (letters, digits, _ . - only)")
            keys.append(self.get(p.stem))
        return keys
