#!/usr/bin/env python3
"""Vectors for the personal-data cipher (src/platform/pii.rs), made with an implementation
independent of ours: Python's `cryptography` (AESGCM) and the standard library's hmac.

    python3 testdata/pii/gen_pii_vectors.py > testdata/pii/pii_vectors.json

Format: v2:<key_id>:<base64(nonce || ciphertext || tag)>, associated data
"dangjian:<table>.<column>:<row id>", key id = hex of the first 4 bytes of
HMAC-SHA256(key, "dangjian key id v1"). Nonces are fixed here so the output is reproducible.
"""
import base64, hashlib, hmac, json
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CASES = [
    (bytes([1] * 32), "members", "phone_enc", 7, "13800000001", "000102030405060708090a0b"),
    (bytes([1] * 32), "members", "id_number_enc", 7, "110101199003077578", "0b0a09080706050403020100"),
    (bytes(range(32)), "dues_bills", "base_enc", 123456789, "523400", "ffffffffffffffffffffffff"),
    (bytes(range(32)), "development_records", "birth_date_enc", 42, "2001-09-30 党员", "101112131415161718191a1b"),
]

vectors = []
for key, table, column, row, plain, nonce_hex in CASES:
    key_id = hmac.new(key, b"dangjian key id v1", hashlib.sha256).digest()[:4].hex()
    aad = f"dangjian:{table}.{column}:{row}".encode()
    nonce = bytes.fromhex(nonce_hex)
    ct = AESGCM(key).encrypt(nonce, plain.encode(), aad)
    vectors.append({
        "key_b64": base64.b64encode(key).decode(),
        "key_id": key_id,
        "table": table,
        "column": column,
        "row": row,
        "plain": plain,
        "nonce_hex": nonce_hex,
        "stored": f"v2:{key_id}:{base64.b64encode(nonce + ct).decode()}",
    })
print(json.dumps({"generator": "testdata/pii/gen_pii_vectors.py (Python cryptography AESGCM)", "vectors": vectors}, ensure_ascii=False, indent=2))
