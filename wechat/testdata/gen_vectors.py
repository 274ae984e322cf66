#!/usr/bin/env python3
"""Generate crypto_vectors.json: known-answer vectors for the `wechat` crate from INDEPENDENT
implementations of WeChat's message signature and safe-mode encryption (消息加解密).

Two independent implementations are used and must agree on every vector:
  * wechatpy (pip install wechatpy cryptography): PrpCrypto / WeChatCrypto / check_signature,
    with the 16-byte random prefix fixed so the output is deterministic;
  * a from-the-documentation implementation below on top of `cryptography` (AES-256-CBC,
    iv = key[:16], PKCS#7 to 32-byte blocks, random(16) || be32(len) || msg || app_id).

Run from anywhere:  python3 wechat/testdata/gen_vectors.py  (rewrites crypto_vectors.json beside it)

JSON layout
-----------
signature_vectors[]: {token, timestamp, nonce, signature}
    signature = sha1(''.join(sorted([token, timestamp, nonce]))) hex, lowercase
    (接入验证 "验证消息的确来自微信服务器").
crypto_vectors[]: {name, encoding_aes_key, key_hex, app_id, random_hex, plaintext, ciphertext,
                   token, timestamp, nonce, msg_signature, full_pad_block}
    key_hex      the 32-byte AES key: base64-decode(encoding_aes_key + "=") ignoring trailing bits
    plaintext    UTF-8 text (an XML message)
    ciphertext   base64 of the AES-256-CBC output (what goes into <Encrypt>)
    msg_signature sha1 hex of sorted [token, timestamp, nonce, ciphertext]
    full_pad_block true when the framed plaintext is a multiple of 32 bytes (a whole pad block)
bad_ciphertexts[]: {name, encoding_aes_key, app_id, ciphertext, why}
    encrypted with the right key but with a broken frame: every one must be rejected.
encrypted_request: a complete safe-mode POST as WeChat sends it, for the app's webhook tests:
    token, encoding_aes_key, app_id   the account's server configuration
    query                            the URL query string parameters of POST /wechat:
                                     signature (over token/timestamp/nonce), timestamp, nonce,
                                     openid, encrypt_type=aes, msg_signature (over the four)
    body                             the request body <xml><ToUserName/><Encrypt/></xml>
    plaintext                        the decrypted inner text message
    random_hex                       the 16-byte random prefix used
"""
import base64
import hashlib
import json
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from wechatpy.crypto import PrpCrypto, WeChatCrypto, _get_signature
from wechatpy.utils import check_signature

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------- independent implementation from the documentation ----------

def doc_key(encoding_aes_key):
    # Lenient decode: the 43rd character carries 2 unused bits that are often non-zero.
    assert len(encoding_aes_key) == 43
    key = base64.b64decode(encoding_aes_key + "=")  # Python ignores non-zero trailing bits
    assert len(key) == 32
    return key


def doc_frame(random, plaintext, app_id):
    return random + struct.pack(">I", len(plaintext)) + plaintext + app_id.encode()


def doc_pad32(data):
    n = 32 - len(data) % 32  # 1..=32: a full block when already aligned
    return data + bytes([n]) * n


def doc_aes(key, data, decrypt=False):
    c = Cipher(algorithms.AES(key), modes.CBC(key[:16]))
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def doc_encrypt(key, random, plaintext, app_id):
    return base64.b64encode(doc_aes(key, doc_pad32(doc_frame(random, plaintext, app_id)))).decode()


def doc_signature(*parts):
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


# ---------- wechatpy with a fixed random prefix ----------

class FixedPrpCrypto(PrpCrypto):
    def __init__(self, key, random):
        super().__init__(key)
        self._random = random

    def get_random_string(self):
        return self._random


def wechatpy_encrypt(key, random, plaintext, app_id):
    return FixedPrpCrypto(key, random).encrypt(plaintext, app_id).decode()


def text_xml(to_user, from_user, create_time, content, msg_id):
    return (
        "<xml><ToUserName><![CDATA[%s]]></ToUserName>"
        "<FromUserName><![CDATA[%s]]></FromUserName>"
        "<CreateTime>%d</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[%s]]></Content>"
        "<MsgId>%d</MsgId></xml>" % (to_user, from_user, create_time, content, msg_id)
    )


def full_block_plaintext(app_id):
    """A Chinese XML plaintext whose framed length is an exact multiple of 32 bytes."""
    base = text_xml("gh_9f2c1a7b3e5d", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", 1700000000,
                    "党费缴纳提醒：本月党费已生成。", 23456789012345678)
    pt = base.encode()
    filler = 0
    while (16 + 4 + len(pt) + len(app_id.encode())) % 32 != 0:
        filler += 1
        pt = base.replace("。", "。" + "x" * filler).encode()
    return pt.decode()


def main():
    signature_vectors = []
    for token, ts, nonce in [
        ("pamtest", "1409304348", "xxxxxx"),
        ("dangjian-token", "1700000000", "1514711492"),
        ("Token_With-Mixed9", "1234567890", "nonce-abc"),
    ]:
        sig = doc_signature(token, ts, nonce)
        assert check_signature(token, sig, ts, nonce) is None  # raises on mismatch
        signature_vectors.append({"token": token, "timestamp": ts, "nonce": nonce, "signature": sig})

    cases = [
        # WeChat's own demo configuration (消息加解密 sample code): key ends in 'G' (unused bits 10).
        dict(name="wechat_demo_key", key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
             app_id="wxb11529c136998cb6", token="pamtest", timestamp="1409304348", nonce="xxxxxx",
             random=bytes.fromhex("000102030405060708090a0b0c0d0e0f"),
             plaintext=text_xml("toUser", "fromUser", 1348831860, "this is a test", 1234567890123456)),
        # Real-looking key ending in 'Z' (unused bits 01): strict decoders reject it.
        dict(name="key_ending_Z_chinese", key="q8Vv3tKx0JmR7pLw2Hn5Ys9Dc4Fb6Ge1Ua8Ti0Ok3MZ",
             app_id="wx5823bf96d3bd56c7", token="dangjian-token", timestamp="1700000000",
             nonce="1514711492", random=bytes.fromhex("8f1e2d3c4b5a69788796a5b4c3d2e1f0"),
             plaintext=text_xml("gh_9f2c1a7b3e5d", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", 1700000000,
                                "投稿 学习贯彻党的二十大精神心得体会", 24123456789012345)),
        # Key ending in 'z' (unused bits 11).
        dict(name="key_ending_z_event", key="Zx0cV9bN8mA7sD6fG5hJ4kL3qW2eR1tY0uI9oP8aS7z",
             app_id="wx4f3a2b1c0d9e8f7a", token="Token_With-Mixed9", timestamp="1234567890",
             nonce="nonce-abc", random=bytes.fromhex("ffffffffffffffffffffffffffffffff"),
             plaintext=("<xml><ToUserName><![CDATA[gh_9f2c1a7b3e5d]]></ToUserName>"
                        "<FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>"
                        "<CreateTime>1700000100</CreateTime><MsgType><![CDATA[event]]></MsgType>"
                        "<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[党建动态]]></EventKey></xml>")),
        # Key ending in 'A' (unused bits 00: canonical) and a plaintext needing a whole 32-byte pad block.
        dict(name="key_ending_A_full_pad_block", key="Hk2Lm4Np6Qr8St0Uv2Wx4Yz6Ab8Cd0Ef2Gh4Ij6KlmA",
             app_id="wx1234567890abcdef", token="dangjian-token", timestamp="1700000200",
             nonce="387196724", random=bytes.fromhex("0123456789abcdeffedcba9876543210"),
             plaintext=full_block_plaintext("wx1234567890abcdef")),
        # Empty plaintext (WeChat's "success"-free empty echo is never encrypted, but the frame allows it).
        dict(name="empty_plaintext", key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
             app_id="wxb11529c136998cb6", token="pamtest", timestamp="1409304348", nonce="xxxxxx",
             random=bytes(16), plaintext=""),
    ]

    crypto_vectors = []
    for c in cases:
        key = doc_key(c["key"])
        pt = c["plaintext"].encode()
        framed = len(doc_frame(c["random"], pt, c["app_id"]))
        ours = doc_encrypt(key, c["random"], pt, c["app_id"])
        theirs = wechatpy_encrypt(key, c["random"], pt, c["app_id"])
        assert ours == theirs, c["name"]
        assert PrpCrypto(key).decrypt(ours, c["app_id"]) == c["plaintext"]
        msg_sig = doc_signature(c["token"], c["timestamp"], c["nonce"], ours)
        assert msg_sig == _get_signature(c["token"], c["timestamp"], c["nonce"], ours)
        crypto_vectors.append({
            "name": c["name"], "encoding_aes_key": c["key"], "key_hex": key.hex(),
            "app_id": c["app_id"], "random_hex": c["random"].hex(), "plaintext": c["plaintext"],
            "ciphertext": ours, "token": c["token"], "timestamp": c["timestamp"],
            "nonce": c["nonce"], "msg_signature": msg_sig, "full_pad_block": framed % 32 == 0,
        })
    assert any(v["full_pad_block"] for v in crypto_vectors)
    assert {v["encoding_aes_key"][-1] for v in crypto_vectors} >= {"Z", "z", "A", "G"}

    # Well-formed AES, broken frame: each must be rejected by a correct decrypter.
    key_b64 = "q8Vv3tKx0JmR7pLw2Hn5Ys9Dc4Fb6Ge1Ua8Ti0Ok3MZ"
    key = doc_key(key_b64)
    app_id = "wx5823bf96d3bd56c7"
    rnd = bytes(range(16))
    msg = "<xml><Content><![CDATA[hi]]></Content></xml>".encode()
    frame = doc_frame(rnd, msg, app_id)

    def raw(data):
        assert len(data) % 16 == 0
        return base64.b64encode(doc_aes(key, data)).decode()

    def with_pad(data, pad_bytes):
        body = data + pad_bytes
        assert len(body) % 16 == 0
        return raw(body)

    n = 32 - len(frame) % 32
    bad = [
        ("pad_zero", with_pad(frame, bytes([n]) * (n - 1) + b"\x00"), "last byte 0 is not a PKCS#7 pad"),
        ("pad_33", raw(doc_pad32(frame)[:-1] + b"\x21"), "pad value 33 is above the 32-byte block"),
        ("pad_inconsistent", raw(doc_pad32(frame)[:-2] + bytes([7, n])) if n >= 2 else None,
         "pad bytes are not all equal"),
        ("wrong_app_id", doc_encrypt(key, rnd, msg, "wx0000000000000000"), "AppId in the frame is not ours"),
        ("length_too_long", raw(doc_pad32(rnd + struct.pack(">I", 10_000) + msg + app_id.encode())),
         "length field beyond the frame"),
        ("too_short", raw(doc_pad32(rnd[:10])), "frame shorter than random + length"),
    ]
    bad_ciphertexts = [
        {"name": name, "encoding_aes_key": key_b64, "app_id": app_id, "ciphertext": ct, "why": why}
        for name, ct, why in bad if ct is not None
    ]

    # A full safe-mode request, checked with wechatpy's own decrypt_message.
    token, aes_key, app_id = "dangjian-token", "q8Vv3tKx0JmR7pLw2Hn5Ys9Dc4Fb6Ge1Ua8Ti0Ok3MZ", "wx5823bf96d3bd56c7"
    openid, timestamp, nonce = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "1700000300", "1320562132"
    rnd = bytes.fromhex("5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a")
    inner = text_xml("gh_9f2c1a7b3e5d", openid, 1700000300, "留言 支部活动安排在周五下午吗？", 24234567890123456)
    encrypt = doc_encrypt(doc_key(aes_key), rnd, inner.encode(), app_id)
    assert encrypt == wechatpy_encrypt(doc_key(aes_key), rnd, inner.encode(), app_id)
    body = ("<xml><ToUserName><![CDATA[gh_9f2c1a7b3e5d]]></ToUserName>"
            "<Encrypt><![CDATA[%s]]></Encrypt></xml>" % encrypt)
    msg_signature = doc_signature(token, timestamp, nonce, encrypt)
    assert WeChatCrypto(token, aes_key, app_id).decrypt_message(body, msg_signature, timestamp, nonce) == inner
    encrypted_request = {
        "token": token, "encoding_aes_key": aes_key, "app_id": app_id,
        "query": {"signature": doc_signature(token, timestamp, nonce), "timestamp": timestamp,
                  "nonce": nonce, "openid": openid, "encrypt_type": "aes",
                  "msg_signature": msg_signature},
        "body": body, "plaintext": inner, "random_hex": rnd.hex(),
    }

    out = {
        "generator": "wechat/testdata/gen_vectors.py (wechatpy + cryptography, cross-checked)",
        "signature_vectors": signature_vectors,
        "crypto_vectors": crypto_vectors,
        "bad_ciphertexts": bad_ciphertexts,
        "encrypted_request": encrypted_request,
    }
    with open(os.path.join(HERE, "crypto_vectors.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
