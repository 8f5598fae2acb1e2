"""WeCom (企业微信) callback crypto, as the official WXBizMsgCrypt does it. Pure functions.

- ``msg_signature = sha1("".join(sorted([token, timestamp, nonce, encrypt])))`` (hex).
- The key is ``base64decode(EncodingAESKey + "=")`` (43 characters -> 32 bytes, AES-256); the IV is
  ``key[:16]``; CBC mode; PKCS#7 padding to a 32-byte block (1..32 bytes of the pad length).
- The plaintext is ``random(16) + len(msg) (4 bytes, network order) + msg + receiveid`` (receiveid is the
  CorpID for corp callbacks); the ciphertext is base64.
- Callback bodies are ``<xml><ToUserName/><AgentID/><Encrypt>...</Encrypt></xml>``; the decrypted message
  is XML too. Events we use: ``change_external_contact`` / ``add_external_contact`` with ``State`` (the
  ``customer_channel`` of an acquisition link, or the ``state`` of a contact-me QR) and ``WelcomeCode``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32


class WecomCryptoError(ValueError):
    """A callback that fails verification or decryption (answer 403/400, never crash)."""


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode()).hexdigest()


def verify(token: str, timestamp: str, nonce: str, encrypt: str, msg_signature: str) -> bool:
    return hmac.compare_digest(signature(token, timestamp, nonce, encrypt), msg_signature.lower())


def aes_key(encoding_aes_key: str) -> bytes:
    if len(encoding_aes_key) != 43:
        raise WecomCryptoError(
            "EncodingAESKey must be 43 characters (OUTCALL_WECOM_CALLBACK_AES_KEY, from the admin console)"
        )
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as e:
        raise WecomCryptoError(f"EncodingAESKey is not base64: {e}") from e
    return key


def pkcs7_pad(data: bytes, block: int = BLOCK) -> bytes:
    n = block - len(data) % block
    return data + bytes([n]) * n


def pkcs7_unpad(data: bytes, block: int = BLOCK) -> bytes:
    if not data:
        raise WecomCryptoError("empty plaintext")
    n = data[-1]
    if not 1 <= n <= block or data[-n:] != bytes([n]) * n:
        raise WecomCryptoError("bad PKCS#7 padding (wrong EncodingAESKey?)")
    return data[:-n]


def encrypt(key: bytes, msg: bytes, receive_id: str, *, random16: bytes | None = None) -> str:
    """What WeCom sends (and what our tests' fake server sends)."""
    rnd = os.urandom(16) if random16 is None else random16
    plain = pkcs7_pad(rnd + struct.pack(">I", len(msg)) + msg + receive_id.encode())
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def decrypt(key: bytes, encrypted: str, receive_id: str | None) -> bytes:
    """The message inside ``encrypted``; checks the trailing receiveid when one is given."""
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except binascii.Error as e:
        raise WecomCryptoError(f"Encrypt is not base64: {e}") from e
    if not raw or len(raw) % 16:
        raise WecomCryptoError("Encrypt is not a whole number of AES blocks")
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = pkcs7_unpad(dec.update(raw) + dec.finalize())
    if len(plain) < 20:
        raise WecomCryptoError("plaintext too short")
    (n,) = struct.unpack(">I", plain[16:20])
    if 20 + n > len(plain):
        raise WecomCryptoError("message length beyond the plaintext (wrong EncodingAESKey?)")
    msg, rid = plain[20 : 20 + n], plain[20 + n :].decode(errors="replace")
    if receive_id is not None and rid != receive_id:
        raise WecomCryptoError(f"receiveid {rid!r} is not ours (OUTCALL_WECOM_CORP_ID {receive_id!r})")
    return msg


def envelope_encrypt(body: bytes) -> str:
    """The ``Encrypt`` element of a callback POST body."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise WecomCryptoError(f"callback body is not XML: {e}") from e
    node = root.find("Encrypt")
    if node is None or not node.text:
        raise WecomCryptoError("callback body has no <Encrypt>")
    return node.text


@dataclass(frozen=True)
class WecomEvent:
    """A decrypted callback message (the fields we use; ``raw`` has them all)."""

    msg_type: str
    event: str | None
    change_type: str | None
    user_id: str | None
    external_user_id: str | None
    state: str | None
    welcome_code: str | None
    create_time: int | None
    raw: dict[str, str]

    @property
    def is_add_contact(self) -> bool:
        return self.event == "change_external_contact" and self.change_type in (
            "add_external_contact",
            "add_half_external_contact",
        )


def parse_event(xml: bytes) -> WecomEvent:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise WecomCryptoError(f"decrypted message is not XML: {e}") from e
    raw = {child.tag: (child.text or "") for child in root}

    def g(k: str) -> str | None:
        v = raw.get(k)
        return v if v else None

    ct = g("CreateTime")
    return WecomEvent(
        msg_type=raw.get("MsgType", ""),
        event=g("Event"),
        change_type=g("ChangeType"),
        user_id=g("UserID"),
        external_user_id=g("ExternalUserID"),
        state=g("State"),
        welcome_code=g("WelcomeCode"),
        create_time=int(ct) if ct and ct.isdigit() else None,
        raw=raw,
    )


class CallbackCrypto:
    """Verify + decrypt for one callback app (Token, EncodingAESKey, CorpID)."""

    def __init__(self, token: str, encoding_aes_key: str, corp_id: str) -> None:
        self.token = token
        self.key = aes_key(encoding_aes_key)
        self.corp_id = corp_id

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> bytes:
        """The GET URL check: the decrypted echostr to answer with."""
        if not verify(self.token, timestamp, nonce, echostr, msg_signature):
            raise WecomCryptoError("msg_signature mismatch (OUTCALL_WECOM_CALLBACK_TOKEN?)")
        return decrypt(self.key, echostr, self.corp_id)

    def open(self, msg_signature: str, timestamp: str, nonce: str, body: bytes) -> WecomEvent:
        enc = envelope_encrypt(body)
        if not verify(self.token, timestamp, nonce, enc, msg_signature):
            raise WecomCryptoError("msg_signature mismatch (OUTCALL_WECOM_CALLBACK_TOKEN?)")
        return parse_event(decrypt(self.key, enc, self.corp_id))
