#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from the repository's own test vectors and content files.

    python3 fuzz/seed.py        # writes fuzz/corpus/<target>/ (not committed; regenerate any time)
"""
import json, pathlib, hashlib

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "fuzz" / "corpus"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


crypto = json.loads((root / "wechat/testdata/crypto_vectors.json").read_text())
pay = json.loads((root / "wechat/testdata/pay/pay_vectors.json").read_text())

for f in sorted((root / "wechat/testdata/messages").glob("*.xml")):
    put("inbound_xml", f.read_bytes())
for v in crypto["crypto_vectors"]:
    put("inbound_xml", v["plaintext"])
    put("safe_mode_decrypt", v.get("ciphertext", v["plaintext"]))
for v in crypto["bad_ciphertexts"]:
    put("safe_mode_decrypt", v["ciphertext"])
put("inbound_xml", '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><xml>&e;</xml>')

n = pay["notification"]
h = n["headers"]
body = n.get("body", json.dumps(n))
parts = [h["Wechatpay-Signature"], h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], h["Wechatpay-Serial"]]
put("pay_notification", "\0".join(parts).encode() + b"\0" + (body if isinstance(body, str) else json.dumps(body)).encode())
if "transaction" in n:
    put("pay_notification", "\0\0\0\0" + json.dumps(n["transaction"]))

for line in (root / "content/sensitive_words.txt").read_text().splitlines():
    if line.strip() and not line.startswith("#"):
        put("sensitive_words", f"{line}\n我们来聊聊{line}吧")
put("sensitive_words", "刷单\n刷\u200b单 Ｓｐａｍ １２３")

put("roster_csv", "name,phone,category,monthly_income_fen,org_unit\n张三,13800000001,employed,500000,第一支部\n")
put("roster_csv", "\ufeffname,phone,category,monthly_income_fen,org_unit,id_number\n李四,13800000002,retired,300000,第二支部,110101199003070011\n坏,1,x,y,\n")

for f in sorted((root / "content").glob("*.toml")):
    put("markdown", f.read_text())
put("markdown", "# 标题\n\n<script>alert(1)</script>[x](javascript:alert(1)) <img src=x onerror=alert(1)>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
print("corpora in", out)
