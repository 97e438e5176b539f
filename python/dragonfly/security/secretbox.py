"""Seller provider keys encrypted at rest with AES-256-GCM; the record id is the associated data, so a
ciphertext copied onto another record does not decrypt."""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class SecretBox:
    def __init__(self, secret: str) -> None:
        self._aead = AESGCM(hashlib.sha256(b"dragonfly-provider-keys:" + secret.encode()).digest())

    def seal(self, plaintext: str, record_id: str) -> str:
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, plaintext.encode(), record_id.encode())
        return "v1:" + base64.urlsafe_b64encode(nonce + ct).decode()

    def open(self, sealed: str, record_id: str) -> str:
        if not sealed.startswith("v1:"):
            raise ValueError("unknown ciphertext version")
        raw = base64.urlsafe_b64decode(sealed[3:])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], record_id.encode()).decode()
        except InvalidTag:
            raise ValueError("ciphertext does not match its record") from None
