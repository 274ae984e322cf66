#!/usr/bin/env python3
"""Generate pay_vectors.json: known-answer vectors for `wechat::pay` (微信支付 API v3) from an
INDEPENDENT implementation written from WeChat Pay's documentation on top of `cryptography`
(pip install cryptography; written against v48).

    签名生成 / 签名验证 (签名认证): RSA PKCS#1 v1.5 with SHA-256 ("SHA256 with RSA"), base64.
        request  message  METHOD\\nURL(path+query)\\ntimestamp\\nnonce\\nbody\\n
        answer / notification message  timestamp\\nnonce\\nbody\\n   (over the raw body bytes)
    小程序调起支付 paySign over  appId\\ntimeStamp\\nnonceStr\\nprepay_id=...\\n
    回调报文解密 / 证书解密: AEAD_AES_256_GCM, key = the 32-byte API v3 key, nonce = the 12-byte
        `nonce` string, AAD = `associated_data`, ciphertext = base64(ct || 16-byte tag).
    平台证书 (certificate mode): X.509, serial as upper-case hex.

Run from anywhere:  python3 wechat/testdata/pay/gen_pay_vectors.py
It rewrites pay_vectors.json, the sample bill and the certificates beside it. The RSA keys are
generated only when their files are missing, so a re-run is byte-for-byte stable (PKCS#1 v1.5
and AES-GCM with fixed nonces are deterministic).

EVERY KEY HERE IS A TEST KEY, published in this repository: never use one outside tests.

Files (all PEM):
    test_merchant_key.pem            merchant API private key (PKCS#8): signs our requests
    test_merchant_public.pem         its public key (SPKI): the fake verifies our requests with it
    test_platform_pubkey_key.pem     "WeChat Pay public key" private half (PKCS#8): the fake signs
    test_platform_public.pem         WeChat Pay public key (SPKI), id = config.pub_key_id
    test_platform_cert_key.pem       private key of platform certificate 1 (PKCS#8)
    test_platform_cert.pem           platform certificate 1 (self-signed X.509)
    test_platform_cert2_key.pem      private key of platform certificate 2 (rotation)
    test_platform_cert2.pem          platform certificate 2
    test_platform_cert_expired.pem   an expired platform certificate (same key as 2)
    test_other_key.pem               an unrelated key (a wrong merchant / a wrong platform)
    tradebill_sample.csv             a trade bill (交易账单) as the download returns it

JSON layout (pay_vectors.json)
------------------------------
config: {mch_id, app_id, merchant_serial, api_v3_key, pub_key_id}
request_signatures[]: {name, method, url, timestamp, nonce, body, message, signature, authorization}
    authorization = the full `Authorization` header value.
pay_sign[]: {app_id, time_stamp, nonce_str, package, message, pay_sign}
answer_signatures[]: {name, signer ("pubkey"|"cert"), serial, timestamp, nonce, body, signature}
    signer "pubkey": the WeChat Pay public key (serial = pub_key_id); "cert": platform cert 1.
aead[]: {name, key, nonce, associated_data, plaintext, ciphertext}
    key is the API v3 key (ASCII); plaintext UTF-8; ciphertext base64.
certificates[]: {file, serial, not_before, not_after, expired, encrypt_certificate}
    not_before/not_after unix seconds; encrypt_certificate = {algorithm, nonce, associated_data,
    ciphertext} as in /v3/certificates, decrypting to the PEM file's text.
certificates_answer: {timestamp, nonce, serial, body, signature}
    a complete /v3/certificates answer body, signed by platform cert 1.
notification: {headers{...}, body, resource_plaintext, transaction{...}}
    a complete TRANSACTION.SUCCESS notification as WeChat POSTs it.
tradebill: {file, sha1, rows[], summary}
"""
import base64
import datetime
import hashlib
import json
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))

MCH_ID = "1900000109"
APP_ID = "wxfakeminiprog0001"  # the fake's mini-program AppId (wechat::fake::FakeConfig)
MERCHANT_SERIAL = "3D8B2C4F6A1E9D7C5B3A2F1E0D9C8B7A6F5E4D3C"
API_V3_KEY = "TestApiV3Key0123456789abcdefTEST"  # 32 ASCII bytes
PUB_KEY_ID = "PUB_KEY_ID_0119000001092025010100000000000001"

assert len(API_V3_KEY.encode()) == 32


def path(name):
    return os.path.join(HERE, name)


def load_or_make_key(name):
    p = path(name)
    if os.path.exists(p):
        with open(p, "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(p, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return key


def write_public(key, name):
    with open(path(name), "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def sign(key, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(key, message: bytes, signature: str):
    key.public_key().verify(base64.b64decode(signature), message, padding.PKCS1v15(),
                            hashes.SHA256())  # raises on mismatch


def aead_encrypt(nonce: str, aad: str, plaintext: bytes) -> str:
    ct = AESGCM(API_V3_KEY.encode()).encrypt(nonce.encode(), plaintext, aad.encode())
    return base64.b64encode(ct).decode()


def aead_decrypt(nonce: str, aad: str, ciphertext: str) -> bytes:
    return AESGCM(API_V3_KEY.encode()).decrypt(nonce.encode(), base64.b64decode(ciphertext),
                                               aad.encode())


def make_cert(key, serial, not_before, not_after, name):
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dangjian TEST ONLY"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "fake WeChat Pay platform"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Fake Tenpay.com platform certificate (TEST)"),
    ])
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    with open(path(name), "wb") as f:
        f.write(pem)
    return cert, pem.decode()


def utc(y, m, d):
    return datetime.datetime(y, m, d, tzinfo=datetime.timezone.utc)


def request_message(method, url, ts, nonce, body):
    return f"{method}\n{url}\n{ts}\n{nonce}\n{body}\n".encode()


def answer_message(ts, nonce, body: bytes):
    return f"{ts}\n{nonce}\n".encode() + body + b"\n"


def yuan_to_fen(s):
    whole, _, frac = s.partition(".")
    frac = (frac + "00")
    assert set(frac[2:]) <= {"0"}, s
    return int(whole) * 100 + int(frac[:2])


def main():
    merchant = load_or_make_key("test_merchant_key.pem")
    write_public(merchant, "test_merchant_public.pem")
    platform = load_or_make_key("test_platform_pubkey_key.pem")
    write_public(platform, "test_platform_public.pem")
    cert_key = load_or_make_key("test_platform_cert_key.pem")
    cert2_key = load_or_make_key("test_platform_cert2_key.pem")
    load_or_make_key("test_other_key.pem")

    # ---------- request signatures (签名生成) ----------
    request_cases = [
        ("jsapi_prepay", "POST", "/v3/pay/transactions/jsapi", 1700000000,
         "593BEC0C930BF1AFEB40B4A08C8FB242",
         '{"appid":"wxfakeminiprog0001","mchid":"1900000109","description":"党费缴纳-2024年1月",'
         '"out_trade_no":"DJ20240101000001","time_expire":"2024-01-01T12:30:00+08:00",'
         '"notify_url":"https://dangjian.example.cn/pay/notify","amount":{"total":100,'
         '"currency":"CNY"},"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}}'),
        ("query_get_with_query", "GET",
         "/v3/pay/transactions/out-trade-no/DJ20240101000001?mchid=1900000109", 1700000001,
         "K8264ILTKCH16CQ2502SI8ZNMTM67VS1", ""),
        ("close", "POST", "/v3/pay/transactions/out-trade-no/DJ-2024_01|a*b/close", 1700000002,
         "n0nce", '{"mchid":"1900000109"}'),
        ("certificates", "GET", "/v3/certificates", 1554208460, "593BEC0C930BF1AFEB40B4A08C8FB242",
         ""),
        ("tradebill", "GET", "/v3/bill/tradebill?bill_date=2024-01-01&bill_type=ALL", 1700000003,
         "abcdefABCDEF0123456789abcdefABCD", ""),
    ]
    request_signatures = []
    for name, method, url, ts, nonce, body in request_cases:
        msg = request_message(method, url, ts, nonce, body)
        sig = sign(merchant, msg)
        verify(merchant, msg, sig)
        auth = (f'WECHATPAY2-SHA256-RSA2048 mchid="{MCH_ID}",nonce_str="{nonce}",'
                f'signature="{sig}",timestamp="{ts}",serial_no="{MERCHANT_SERIAL}"')
        request_signatures.append({"name": name, "method": method, "url": url,
                                   "timestamp": str(ts), "nonce": nonce, "body": body,
                                   "message": msg.decode(), "signature": sig,
                                   "authorization": auth})

    # ---------- 小程序调起支付 paySign ----------
    pay_sign = []
    for ts, nonce, prepay in [
        ("1414561699", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", "wx201410272009395522657a690389285100"),
        ("1700000100", "dangjianNonce0001", "wx2024010112000012345678901234567890"),
    ]:
        package = f"prepay_id={prepay}"
        msg = f"{APP_ID}\n{ts}\n{nonce}\n{package}\n".encode()
        pay_sign.append({"app_id": APP_ID, "time_stamp": ts, "nonce_str": nonce,
                         "package": package, "message": msg.decode(),
                         "pay_sign": sign(merchant, msg)})

    # ---------- platform certificates (certificate mode) ----------
    cert1_serial = 0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1 ^ 0x0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F
    cert2_serial = 0x7A3C5E9B1D2F4A6C8E0B2D4F6A8C0E2B4D6F8A0C
    expired_serial = 0x6B1D3F5A7C9E0B2D4F6A8C0E2B4D6F8A0C1E3F5B
    certs = [
        ("test_platform_cert.pem", cert_key, cert1_serial, utc(2024, 1, 1), utc(2044, 1, 1),
         "a1b2c3d4e5f6"),
        ("test_platform_cert2.pem", cert2_key, cert2_serial, utc(2025, 6, 1), utc(2045, 6, 1),
         "f6e5d4c3b2a1"),
        ("test_platform_cert_expired.pem", cert2_key, expired_serial, utc(2019, 1, 1),
         utc(2020, 1, 1), "0123456789ab"),
    ]
    certificates = []
    answer_data = []
    bj = datetime.timezone(datetime.timedelta(hours=8))
    for file, key, serial, nb, na, nonce in certs:
        cert, pem = make_cert(key, serial, nb, na, file)
        serial_hex = format(cert.serial_number, "X")
        assert len(serial_hex) == 40
        enc = {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce, "associated_data": "certificate",
               "ciphertext": aead_encrypt(nonce, "certificate", pem.encode())}
        assert aead_decrypt(nonce, "certificate", enc["ciphertext"]).decode() == pem
        certificates.append({"file": file, "serial": serial_hex,
                             "not_before": int(nb.timestamp()), "not_after": int(na.timestamp()),
                             "expired": na < utc(2025, 1, 1), "encrypt_certificate": enc})
        answer_data.append({"serial_no": serial_hex,
                            "effective_time": nb.astimezone(bj).isoformat(),
                            "expire_time": na.astimezone(bj).isoformat(),
                            "encrypt_certificate": enc})
    cert1_hex = certificates[0]["serial"]
    cert_body = json.dumps({"data": answer_data}, ensure_ascii=False, separators=(",", ":"))
    ts, nonce = 1710000500, "certanswernonce0000000000000000A"
    certificates_answer = {"timestamp": str(ts), "nonce": nonce, "serial": cert1_hex,
                           "body": cert_body,
                           "signature": sign(cert_key, answer_message(ts, nonce,
                                                                      cert_body.encode()))}

    # ---------- answer / notification signatures (签名验证) ----------
    answer_cases = [
        ("prepay_answer", "pubkey", 1710000010, "c5ac7061fccab6bf3e254dcf98995b8c",
         '{"prepay_id":"wx2024010112000012345678901234567890"}'),
        # Pretty JSON with spaces and Chinese: re-serialising changes the bytes.
        ("pretty_chinese", "pubkey", 1710000011, "e0b7d2b8a5a34f6c9e9c4b5a1d2e3f40",
         '{\n  "id": "EV-2018022511223320873",\n  "summary": "支付成功"\n}'),
        ("empty_body_204", "pubkey", 1710000012, "0b8f6bd1a7c4e2d9f5a3c1e7b9d2f4a6", ""),
        ("cert_signed", "cert", 1710000013, "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d",
         '{"code":"ORDER_PAID","message":"订单已支付"}'),
    ]
    answer_signatures = []
    for name, signer, ts, nonce, body in answer_cases:
        key, serial = (platform, PUB_KEY_ID) if signer == "pubkey" else (cert_key, cert1_hex)
        msg = answer_message(ts, nonce, body.encode())
        sig = sign(key, msg)
        verify(key, msg, sig)
        answer_signatures.append({"name": name, "signer": signer, "serial": serial,
                                  "timestamp": str(ts), "nonce": nonce, "body": body,
                                  "signature": sig})

    # ---------- AEAD_AES_256_GCM ----------
    transaction = {
        "mchid": MCH_ID, "appid": APP_ID, "out_trade_no": "DJ20240101000001",
        "transaction_id": "4200002024202401011234567890", "trade_type": "JSAPI",
        "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
        "attach": "", "success_time": "2024-01-01T12:00:05+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"},
    }
    tx_plain = json.dumps(transaction, ensure_ascii=False, separators=(",", ":"))
    aead = []
    for name, nonce, aad, pt in [
        ("transaction", "fdasflkja484", "transaction", tx_plain),
        ("empty_aad", "0123456789ab", "", '{"hello":"world"}'),
        ("chinese", "dangjian0001", "certificate", "党建 微信支付 API v3"),
    ]:
        ct = aead_encrypt(nonce, aad, pt.encode())
        assert aead_decrypt(nonce, aad, ct).decode() == pt
        aead.append({"name": name, "key": API_V3_KEY, "nonce": nonce, "associated_data": aad,
                     "plaintext": pt, "ciphertext": ct})

    # ---------- a complete notification (支付成功回调通知) ----------
    envelope = {
        "id": "EV-2018022511223320873", "create_time": "2024-01-01T12:00:06+08:00",
        "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                     "ciphertext": aead[0]["ciphertext"], "associated_data": "transaction",
                     "nonce": "fdasflkja484"},
    }
    # WeChat's bodies are compact; keep ": " spacing here so that a re-serialisation differs.
    body = json.dumps(envelope, ensure_ascii=False, separators=(",", ": "))
    ts, nonce = 1704081606, "notifynonce0123456789abcdefABCDE"
    notification = {
        "headers": {
            "Wechatpay-Timestamp": str(ts), "Wechatpay-Nonce": nonce,
            "Wechatpay-Serial": PUB_KEY_ID,
            "Wechatpay-Signature": sign(platform, answer_message(ts, nonce, body.encode())),
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
        },
        "body": body, "resource_plaintext": tx_plain, "transaction": transaction,
    }

    # ---------- 交易账单 ----------
    header = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
              "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
              "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,"
              "费率备注")
    rows = [
        ("2024-01-01 12:00:05", "4200002024202401011234567890", "DJ20240101000001",
         "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "SUCCESS", "1.00", "0.00", "", "党费缴纳-2024年1月"),
        ("2024-01-01 13:14:15", "4200002024202401011234567891", "DJ20240101000002",
         "oUpF8uMuAJO_M2pxb1Q9zNjWeS7p", "SUCCESS", "1234.56", "0.00", "", "党费, 含逗号"),
        ("2024-01-01 20:00:00", "4200002024202401011234567892", "DJ20240101000003",
         "oUpF8uMuAJO_M2pxb1Q9zNjWeS8q", "REFUND", "0.00", "0.50", "REFUND_DJ3", "党费"),
    ]

    def q(field):
        # Fields with a comma are quoted, as in the real files.
        v = "`" + field
        return '"' + v + '"' if "," in v else v

    lines = [header]
    parsed_rows = []
    for t, tx, otn, openid, state, settle, refund, refund_no, desc in rows:
        fields = [t, APP_ID, MCH_ID, "0", "", tx, otn, openid, "JSAPI", state, "OTHERS", "CNY",
                  settle, "0.00", "50300000000000000000000000" if refund_no else "0",
                  refund_no or "0", refund, "0.00", "ORIGINAL" if refund_no else "",
                  "SUCCESS" if refund_no else "", desc, "", "0.00000", "0.60%",
                  settle if state == "SUCCESS" else "1.00", refund, ""]
        assert len(fields) == 27
        lines.append(",".join(q(f) for f in fields))
        parsed_rows.append({"trade_time": t, "appid": APP_ID, "mchid": MCH_ID,
                            "transaction_id": tx, "out_trade_no": otn, "openid": openid,
                            "trade_type": "JSAPI", "trade_state": state,
                            "total_fen": yuan_to_fen(fields[24]),
                            "settlement_total_fen": yuan_to_fen(settle),
                            "refund_fen": yuan_to_fen(refund), "out_refund_no": refund_no,
                            "description": desc})
    lines.append("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额")
    settle_total = sum(r["settlement_total_fen"] for r in parsed_rows)
    refund_total = sum(r["refund_fen"] for r in parsed_rows)
    order_total = sum(r["total_fen"] for r in parsed_rows)

    def yuan(fen):
        return f"{fen // 100}.{fen % 100:02d}"

    lines.append(",".join("`" + v for v in [str(len(rows)), yuan(settle_total), yuan(refund_total),
                                             "0.00", "0.00000", yuan(order_total),
                                             yuan(refund_total)]))
    bill = ("\r\n".join(lines) + "\r\n").encode()
    with open(path("tradebill_sample.csv"), "wb") as f:
        f.write(bill)
    tradebill = {"file": "tradebill_sample.csv", "sha1": hashlib.sha1(bill).hexdigest(),
                 "rows": parsed_rows,
                 "summary": {"trade_count": len(rows), "settlement_total_fen": settle_total,
                             "refund_total_fen": refund_total, "order_total_fen": order_total}}

    out = {
        "generator": "wechat/testdata/pay/gen_pay_vectors.py (cryptography, from the WeChat Pay v3 docs)",
        "warning": "TEST KEYS ONLY: the private keys beside this file are public",
        "config": {"mch_id": MCH_ID, "app_id": APP_ID, "merchant_serial": MERCHANT_SERIAL,
                   "api_v3_key": API_V3_KEY, "pub_key_id": PUB_KEY_ID},
        "request_signatures": request_signatures,
        "pay_sign": pay_sign,
        "answer_signatures": answer_signatures,
        "aead": aead,
        "certificates": certificates,
        "certificates_answer": certificates_answer,
        "notification": notification,
        "tradebill": tradebill,
    }
    with open(path("pay_vectors.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
