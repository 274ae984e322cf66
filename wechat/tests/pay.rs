//! WeChat Pay v3: known-answer tests against vectors of an independent implementation
//! (wechat/testdata/pay/gen_pay_vectors.py, Python `cryptography` written from WeChat Pay's docs),
//! every tampering the verifier must refuse, and (feature `fake`) the client against the fake
//! WeChat Pay over real HTTP.

use serde::Deserialize;
use wechat::pay::{
    answer_message, authorization, decrypt_aes_256_gcm, encrypt_aes_256_gcm, format_beijing_time,
    parse_notification, parse_trade_bill, request_message, yuan_to_fen, ApiV3Key, BillInfo,
    JsapiOrder, MerchantKey, MiniProgramPayParams, Notification, NotifyAnswer, PayError,
    PlatformKey, PlatformKeyKind, PlatformKeys, RsaPublicKey, SignatureHeaders, TradeState,
    Transaction, VerifyError,
};

const MERCHANT_KEY: &str = include_str!("../testdata/pay/test_merchant_key.pem");
const MERCHANT_PUBLIC: &str = include_str!("../testdata/pay/test_merchant_public.pem");
const PLATFORM_PUBLIC: &str = include_str!("../testdata/pay/test_platform_public.pem");
const CERT1: &str = include_str!("../testdata/pay/test_platform_cert.pem");
const CERT2: &str = include_str!("../testdata/pay/test_platform_cert2.pem");
const CERT_EXPIRED: &str = include_str!("../testdata/pay/test_platform_cert_expired.pem");
const OTHER_KEY: &str = include_str!("../testdata/pay/test_other_key.pem");
const BILL: &[u8] = include_bytes!("../testdata/pay/tradebill_sample.csv");

#[derive(Deserialize)]
struct Vectors {
    config: Config,
    request_signatures: Vec<RequestSig>,
    pay_sign: Vec<PaySignV>,
    answer_signatures: Vec<AnswerSig>,
    aead: Vec<Aead>,
    certificates: Vec<CertV>,
    certificates_answer: CertAnswer,
    notification: NotificationV,
    tradebill: TradeBillV,
}

#[derive(Deserialize)]
struct Config {
    mch_id: String,
    app_id: String,
    merchant_serial: String,
    api_v3_key: String,
    pub_key_id: String,
}

#[derive(Deserialize)]
struct RequestSig {
    name: String,
    method: String,
    url: String,
    timestamp: String,
    nonce: String,
    body: String,
    message: String,
    signature: String,
    authorization: String,
}

#[derive(Deserialize)]
struct PaySignV {
    app_id: String,
    time_stamp: String,
    nonce_str: String,
    package: String,
    pay_sign: String,
}

#[derive(Deserialize, Clone)]
struct AnswerSig {
    name: String,
    signer: String,
    serial: String,
    timestamp: String,
    nonce: String,
    body: String,
    signature: String,
}

#[derive(Deserialize)]
struct Aead {
    name: String,
    key: String,
    nonce: String,
    associated_data: String,
    plaintext: String,
    ciphertext: String,
}

#[derive(Deserialize)]
struct EncCert {
    algorithm: String,
    nonce: String,
    associated_data: String,
    ciphertext: String,
}

#[derive(Deserialize)]
struct CertV {
    file: String,
    serial: String,
    not_before: i64,
    not_after: i64,
    expired: bool,
    encrypt_certificate: EncCert,
}

#[derive(Deserialize)]
struct CertAnswer {
    timestamp: String,
    nonce: String,
    serial: String,
    body: String,
    signature: String,
}

#[derive(Deserialize)]
struct NotificationV {
    headers: std::collections::BTreeMap<String, String>,
    body: String,
    resource_plaintext: String,
    transaction: serde_json::Value,
}

#[derive(Deserialize)]
struct BillRowV {
    trade_time: String,
    appid: String,
    mchid: String,
    transaction_id: String,
    out_trade_no: String,
    openid: String,
    trade_type: String,
    trade_state: String,
    total_fen: i64,
    settlement_total_fen: i64,
    refund_fen: i64,
    out_refund_no: String,
    description: String,
}

#[derive(Deserialize)]
struct BillSummaryV {
    trade_count: u64,
    settlement_total_fen: i64,
    refund_total_fen: i64,
    order_total_fen: i64,
}

#[derive(Deserialize)]
struct TradeBillV {
    sha1: String,
    rows: Vec<BillRowV>,
    summary: BillSummaryV,
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("../testdata/pay/pay_vectors.json"))
        .expect("pay_vectors.json")
}

fn merchant() -> MerchantKey {
    MerchantKey::from_pkcs8_pem(MERCHANT_KEY).unwrap()
}

/// Public key + certificate 1, as a merchant in either mode would have.
fn platform_keys(v: &Vectors) -> PlatformKeys {
    let mut keys = PlatformKeys::new();
    keys.add_public_key(&v.config.pub_key_id, PLATFORM_PUBLIC)
        .unwrap();
    keys.add_certificate_pem(CERT1).unwrap();
    keys
}

fn headers(a: &AnswerSig) -> SignatureHeaders {
    SignatureHeaders {
        signature: a.signature.clone(),
        timestamp: a.timestamp.clone(),
        nonce: a.nonce.clone(),
        serial: a.serial.clone(),
    }
}

fn ts(a: &AnswerSig) -> i64 {
    a.timestamp.parse().unwrap()
}

// ---------- signing ----------

#[test]
fn request_signatures_match_the_vectors_byte_for_byte() {
    let v = vectors();
    let key = merchant();
    assert!(v.request_signatures.len() >= 5);
    for r in &v.request_signatures {
        let ts: i64 = r.timestamp.parse().unwrap();
        let msg = request_message(&r.method, &r.url, ts, &r.nonce, r.body.as_bytes());
        assert_eq!(
            String::from_utf8(msg.clone()).unwrap(),
            r.message,
            "{}",
            r.name
        );
        assert_eq!(key.sign(&msg).unwrap(), r.signature, "{}", r.name);
        let auth = authorization(
            &v.config.mch_id,
            &v.config.merchant_serial,
            &key,
            &r.method,
            &r.url,
            ts,
            &r.nonce,
            r.body.as_bytes(),
        )
        .unwrap();
        assert_eq!(auth, r.authorization, "{}", r.name);
    }
}

#[test]
fn the_jsapi_body_we_send_is_the_vector_body() {
    let v = vectors();
    let r = &v.request_signatures[0];
    let mut order = JsapiOrder::new(
        "党费缴纳-2024年1月",
        "DJ20240101000001",
        100,
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        "https://dangjian.example.cn/pay/notify",
    );
    // 04:30 UTC is 12:30 in Beijing: the offset is converted, not just relabelled.
    order.time_expire = Some(time::macros::datetime!(2024-01-01 04:30:00 UTC));
    let body = order.to_body(&v.config.app_id, &v.config.mch_id).unwrap();
    assert_eq!(String::from_utf8(body).unwrap(), r.body);
}

#[test]
fn the_merchant_public_key_matches_the_private_key() {
    let from_pem = RsaPublicKey::from_spki_pem(MERCHANT_PUBLIC).unwrap();
    assert_eq!(merchant().public_key(), from_pem);
    let v = vectors();
    let r = &v.request_signatures[0];
    use base64::Engine as _;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(&r.signature)
        .unwrap();
    assert!(from_pem.verify(r.message.as_bytes(), &sig));
    assert!(!from_pem.verify(b"other", &sig));
}

#[test]
fn pay_sign_matches_the_vectors_and_serialises_with_the_exact_keys() {
    let v = vectors();
    let key = merchant();
    for p in &v.pay_sign {
        let prepay = p.package.strip_prefix("prepay_id=").unwrap();
        let params = MiniProgramPayParams::sign(
            &p.app_id,
            prepay,
            p.time_stamp.parse().unwrap(),
            &p.nonce_str,
            &key,
        )
        .unwrap();
        assert_eq!(params.pay_sign, p.pay_sign);
        let json = serde_json::to_value(&params).unwrap();
        let obj = json.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["nonceStr", "package", "paySign", "signType", "timeStamp"]
        );
        assert_eq!(obj["timeStamp"], serde_json::json!(p.time_stamp));
        assert_eq!(obj["signType"], "RSA");
        assert_eq!(obj["package"], serde_json::json!(p.package));
    }
}

// ---------- verification ----------

#[test]
fn answer_signatures_verify() {
    let v = vectors();
    let keys = platform_keys(&v);
    assert!(v.answer_signatures.iter().any(|a| a.signer == "cert"));
    for a in &v.answer_signatures {
        keys.verify(&headers(a), a.body.as_bytes(), ts(a))
            .unwrap_or_else(|e| panic!("{}: {e}", a.name));
    }
}

#[test]
fn a_body_changed_by_one_byte_is_refused() {
    let v = vectors();
    let keys = platform_keys(&v);
    for a in v.answer_signatures.iter().filter(|a| !a.body.is_empty()) {
        let mut body = a.body.clone().into_bytes();
        for i in [0, body.len() / 2, body.len() - 1] {
            let mut b = body.clone();
            b[i] ^= 0x01;
            assert_eq!(
                keys.verify(&headers(a), &b, ts(a)),
                Err(VerifyError::BadSignature),
                "{} byte {i}",
                a.name
            );
        }
        body.push(b' ');
        assert_eq!(
            keys.verify(&headers(a), &body, ts(a)),
            Err(VerifyError::BadSignature)
        );
    }
    // The empty 204 body: any byte breaks it.
    let empty = v
        .answer_signatures
        .iter()
        .find(|a| a.body.is_empty())
        .unwrap();
    assert_eq!(
        keys.verify(&headers(empty), b"{}", ts(empty)),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn a_reserialised_json_body_is_refused() {
    let v = vectors();
    let keys = platform_keys(&v);
    let a = v
        .answer_signatures
        .iter()
        .find(|a| a.name == "pretty_chinese")
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let compact = serde_json::to_string(&value).unwrap();
    assert_ne!(compact, a.body);
    assert_eq!(
        keys.verify(&headers(a), compact.as_bytes(), ts(a)),
        Err(VerifyError::BadSignature)
    );
    // The notification too.
    let n = &v.notification;
    let h = |k: &str| n.headers[k].as_str();
    let hd = SignatureHeaders::from_pairs(n.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .unwrap();
    let now: i64 = h("Wechatpay-Timestamp").parse().unwrap();
    keys.verify(&hd, n.body.as_bytes(), now).unwrap();
    let re = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&n.body).unwrap())
        .unwrap();
    assert_eq!(
        keys.verify(&hd, re.as_bytes(), now),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn a_wrong_or_unknown_serial_is_refused() {
    let v = vectors();
    let keys = platform_keys(&v);
    let a = &v.answer_signatures[0];
    assert_eq!(a.signer, "pubkey");
    // The certificate's serial names a real key, but not the one that signed.
    let mut h = headers(a);
    h.serial = v.certificates[0].serial.clone();
    assert_eq!(
        keys.verify(&h, a.body.as_bytes(), ts(a)),
        Err(VerifyError::BadSignature)
    );
    // A serial we do not know.
    h.serial = "PUB_KEY_ID_0000000000000000000000000000000000".into();
    assert_eq!(
        keys.verify(&h, a.body.as_bytes(), ts(a)),
        Err(VerifyError::UnknownSerial(h.serial.clone()))
    );
    // The public key id is exact; a certificate serial matches in any letter case.
    h.serial = v.config.pub_key_id.to_lowercase();
    assert!(matches!(
        keys.verify(&h, a.body.as_bytes(), ts(a)),
        Err(VerifyError::UnknownSerial(_))
    ));
    let c = v
        .answer_signatures
        .iter()
        .find(|a| a.signer == "cert")
        .unwrap();
    let mut h = headers(c);
    h.serial = h.serial.to_lowercase();
    keys.verify(&h, c.body.as_bytes(), ts(c)).unwrap();
    // No keys at all.
    assert!(matches!(
        PlatformKeys::new().verify(&headers(a), a.body.as_bytes(), ts(a)),
        Err(VerifyError::UnknownSerial(_))
    ));
}

#[test]
fn the_timestamp_window_is_five_minutes_either_way() {
    let v = vectors();
    let keys = platform_keys(&v);
    let a = &v.answer_signatures[0];
    let t = ts(a);
    for now in [t - 300, t, t + 300] {
        keys.verify(&headers(a), a.body.as_bytes(), now).unwrap();
    }
    for now in [t - 301, t + 301, i64::MIN, i64::MAX, 0] {
        assert_eq!(
            keys.verify(&headers(a), a.body.as_bytes(), now),
            Err(VerifyError::StaleTimestamp { timestamp: t, now }),
            "now {now}"
        );
    }
    for bad in [
        "",
        "-1700000010",
        "+1700000010",
        "1700000010.0",
        "99999999999999999999",
        " 1",
    ] {
        let mut h = headers(a);
        h.timestamp = bad.into();
        assert!(
            matches!(
                keys.verify(&h, a.body.as_bytes(), t),
                Err(VerifyError::InvalidTimestamp | VerifyError::StaleTimestamp { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn headers_are_matched_case_insensitively_and_each_one_is_required() {
    let v = vectors();
    let keys = platform_keys(&v);
    let a = &v.answer_signatures[1];
    let pairs = [
        ("wechatpay-signature", a.signature.as_str()),
        ("WECHATPAY-TIMESTAMP", a.timestamp.as_str()),
        ("Wechatpay-Nonce", a.nonce.as_str()),
        ("wEcHaTpAy-SeRiAl", a.serial.as_str()),
        ("content-type", "application/json"),
    ];
    keys.verify_pairs(pairs, a.body.as_bytes(), ts(a)).unwrap();
    for skip in 0..4 {
        let partial: Vec<(&str, &str)> = pairs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, p)| *p)
            .collect();
        assert!(
            matches!(
                keys.verify_pairs(partial, a.body.as_bytes(), ts(a)),
                Err(VerifyError::MissingHeader(_))
            ),
            "without {}",
            pairs[skip].0
        );
    }
    // An empty value is as good as missing; a repeated header is ambiguous.
    let mut empty = pairs;
    empty[2].1 = "";
    assert_eq!(
        keys.verify_pairs(empty, a.body.as_bytes(), ts(a)),
        Err(VerifyError::MissingHeader("Wechatpay-Nonce"))
    );
    let mut dup = pairs.to_vec();
    dup.push(("Wechatpay-Signature", a.signature.as_str()));
    assert_eq!(
        keys.verify_pairs(dup, a.body.as_bytes(), ts(a)),
        Err(VerifyError::DuplicateHeader("Wechatpay-Signature"))
    );
    // The same through an http::HeaderMap.
    let mut map = reqwest::header::HeaderMap::new();
    for (k, val) in pairs {
        map.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            val.parse().unwrap(),
        );
    }
    keys.verify_header_map(&map, a.body.as_bytes(), ts(a))
        .unwrap();
    map.remove("wechatpay-serial");
    assert_eq!(
        keys.verify_header_map(&map, a.body.as_bytes(), ts(a)),
        Err(VerifyError::MissingHeader("Wechatpay-Serial"))
    );
}

#[test]
fn the_signature_type_defaults_and_nothing_else_is_accepted() {
    let v = vectors();
    let keys = platform_keys(&v);
    let a = &v.answer_signatures[0];
    let base = [
        ("Wechatpay-Signature", a.signature.as_str()),
        ("Wechatpay-Timestamp", a.timestamp.as_str()),
        ("Wechatpay-Nonce", a.nonce.as_str()),
        ("Wechatpay-Serial", a.serial.as_str()),
    ];
    let with = |t: &'static str| {
        let mut p = base.to_vec();
        p.push(("Wechatpay-Signature-Type", t));
        p
    };
    keys.verify_pairs(base, a.body.as_bytes(), ts(a)).unwrap();
    keys.verify_pairs(with("WECHATPAY2-SHA256-RSA2048"), a.body.as_bytes(), ts(a))
        .unwrap();
    for t in [
        "WECHATPAY2-SM2-WITH-SM3",
        "wechatpay2-sha256-rsa2048",
        "HMAC-SHA256",
        "",
    ] {
        assert_eq!(
            keys.verify_pairs(with(t), a.body.as_bytes(), ts(a)),
            Err(VerifyError::UnsupportedSignatureType(t.into())),
            "{t:?}"
        );
    }
}

#[test]
fn probes_and_garbage_signatures_fail_cleanly() {
    let v = vectors();
    let keys = platform_keys(&v);
    let a = &v.answer_signatures[0];
    let check = |sig: &str| {
        let mut h = headers(a);
        h.signature = sig.into();
        keys.verify(&h, a.body.as_bytes(), ts(a))
    };
    assert_eq!(
        check(&format!("WECHATPAY/SIGNTEST/{}", a.signature)),
        Err(VerifyError::ProbeSignature)
    );
    assert_eq!(
        check("WECHATPAY/SIGNTEST/Jp6T4dl8ZoXyc7aa"),
        Err(VerifyError::ProbeSignature)
    );
    for garbage in ["!!!not base64!!!", "abc", "====", "\u{4e2d}\u{6587}", "A"] {
        assert_eq!(
            check(garbage),
            Err(VerifyError::MalformedSignature),
            "{garbage:?}"
        );
    }
    // Valid base64 of the wrong length or content.
    for wrong in [
        "AAAA",
        "QUJD",
        &a.signature[4..],
        &format!("AAAA{}", a.signature),
    ] {
        assert!(check(wrong).is_err(), "{wrong:?}");
    }
    // Another valid signature (other body) does not transfer.
    assert_eq!(
        check(&v.answer_signatures[1].signature),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn a_forger_with_another_key_is_refused() {
    let v = vectors();
    let keys = platform_keys(&v);
    let forger = MerchantKey::from_pkcs8_pem(OTHER_KEY).unwrap();
    let a = &v.answer_signatures[0];
    let mut h = headers(a);
    h.signature = forger
        .sign(&answer_message(&a.timestamp, &a.nonce, a.body.as_bytes()))
        .unwrap();
    assert_eq!(
        keys.verify(&h, a.body.as_bytes(), ts(a)),
        Err(VerifyError::BadSignature)
    );
}

// ---------- AES-256-GCM ----------

#[test]
fn aead_vectors_decrypt_and_encrypt() {
    let v = vectors();
    for x in &v.aead {
        let key = ApiV3Key::new(&x.key).unwrap();
        let plain = decrypt_aes_256_gcm(&key, &x.nonce, &x.associated_data, &x.ciphertext)
            .unwrap_or_else(|e| panic!("{}: {e}", x.name));
        assert_eq!(String::from_utf8(plain).unwrap(), x.plaintext, "{}", x.name);
        assert_eq!(
            encrypt_aes_256_gcm(&key, &x.nonce, &x.associated_data, x.plaintext.as_bytes())
                .unwrap(),
            x.ciphertext
        );
        // Wrong AAD, nonce, key or one flipped ciphertext bit: authentication fails.
        assert!(decrypt_aes_256_gcm(&key, &x.nonce, "other", &x.ciphertext).is_err());
        assert!(
            decrypt_aes_256_gcm(&key, "000000000000", &x.associated_data, &x.ciphertext).is_err()
        );
        let other = ApiV3Key::new("00000000000000000000000000000000").unwrap();
        assert!(decrypt_aes_256_gcm(&other, &x.nonce, &x.associated_data, &x.ciphertext).is_err());
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ct = b64.decode(&x.ciphertext).unwrap();
        ct[0] ^= 1;
        assert!(decrypt_aes_256_gcm(&key, &x.nonce, &x.associated_data, &b64.encode(ct)).is_err());
    }
    let key = ApiV3Key::new(&v.config.api_v3_key).unwrap();
    for (nonce, ct) in [
        ("short", "AAAA"),
        ("0123456789ab", "not base64"),
        ("0123456789ab", "AAAA"),
    ] {
        assert!(matches!(
            decrypt_aes_256_gcm(&key, nonce, "", ct),
            Err(PayError::Crypto(_))
        ));
    }
    assert!(ApiV3Key::new("too short").is_err());
    assert!(!format!("{key:?}").contains(&v.config.api_v3_key));
}

// ---------- notification ----------

#[test]
fn the_notification_verifies_decrypts_and_deserialises() {
    let v = vectors();
    let keys = platform_keys(&v);
    let n = &v.notification;
    let now: i64 = n.headers["Wechatpay-Timestamp"].parse().unwrap();
    let h = SignatureHeaders::from_pairs(n.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .unwrap();
    let notification: Notification = parse_notification(&keys, &h, n.body.as_bytes(), now).unwrap();
    assert_eq!(notification.event_type, Notification::TRANSACTION_SUCCESS);
    assert_eq!(notification.resource_type, "encrypt-resource");
    assert_eq!(notification.id, "EV-2018022511223320873");
    assert_eq!(notification.resource.original_type, "transaction");
    let key = ApiV3Key::new(&v.config.api_v3_key).unwrap();
    assert_eq!(
        String::from_utf8(notification.resource.decrypt(&key).unwrap()).unwrap(),
        n.resource_plaintext
    );
    let tx: Transaction = notification.transaction(&key).unwrap();
    let expected: Transaction = serde_json::from_value(n.transaction.clone()).unwrap();
    assert_eq!(tx, expected);
    assert_eq!(tx.trade_state, TradeState::Success);
    assert!(tx.is_paid());
    assert_eq!(tx.out_trade_no, "DJ20240101000001");
    assert_eq!(
        tx.transaction_id.as_deref(),
        Some("4200002024202401011234567890")
    );
    assert_eq!(tx.trade_type.as_deref(), Some("JSAPI"));
    assert_eq!(tx.trade_state_desc, "支付成功");
    assert_eq!(
        tx.success_time.as_deref(),
        Some("2024-01-01T12:00:05+08:00")
    );
    assert_eq!(
        tx.payer.as_ref().unwrap().openid,
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    );
    assert_eq!(tx.amount.total, 100);
    assert_eq!(tx.amount.payer_total, Some(100));
    assert_eq!(tx.amount.currency.as_deref(), Some("CNY"));
    assert_eq!(tx.amount.payer_currency.as_deref(), Some("CNY"));
    assert_eq!(tx.mchid, v.config.mch_id);
    assert_eq!(tx.appid, v.config.app_id);

    // Stale: refused before anything is parsed.
    assert!(matches!(
        parse_notification(&keys, &h, n.body.as_bytes(), now + 301),
        Err(PayError::Verify(VerifyError::StaleTimestamp { .. }))
    ));
    // A wrong API v3 key cannot decrypt.
    let wrong = ApiV3Key::new("00000000000000000000000000000000").unwrap();
    assert!(matches!(
        notification.transaction(&wrong),
        Err(PayError::Crypto(_))
    ));
}

#[test]
fn every_trade_state_deserialises() {
    for (s, state) in [
        ("SUCCESS", TradeState::Success),
        ("REFUND", TradeState::Refund),
        ("NOTPAY", TradeState::Notpay),
        ("CLOSED", TradeState::Closed),
        ("REVOKED", TradeState::Revoked),
        ("USERPAYING", TradeState::Userpaying),
        ("PAYERROR", TradeState::Payerror),
        ("SOMETHING_NEW", TradeState::Unknown),
    ] {
        assert_eq!(
            serde_json::from_value::<TradeState>(serde_json::json!(s)).unwrap(),
            state
        );
        if state != TradeState::Unknown {
            assert_eq!(state.as_str(), s);
        }
    }
    // A NOTPAY query answer has no transaction_id, payer or success_time.
    let tx: Transaction = serde_json::from_str(
        r#"{"appid":"wx1","mchid":"1900000109","out_trade_no":"DJ000001","trade_state":"NOTPAY","trade_state_desc":"订单未支付","amount":{"total":100,"currency":"CNY","payer_currency":"CNY"}}"#,
    )
    .unwrap();
    assert!(!tx.is_paid());
    assert_eq!(tx.transaction_id, None);
    assert_eq!(tx.payer, None);
}

#[test]
fn notify_answers() {
    let ok = NotifyAnswer::success();
    assert_eq!((ok.status, ok.body.as_str()), (200, ""));
    let fail = NotifyAnswer::failure("验签失败");
    assert_eq!(fail.status, 500);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&fail.body).unwrap(),
        serde_json::json!({"code": "FAIL", "message": "验签失败"})
    );
    assert_eq!(NotifyAnswer::failure_with_status(401, "x").status, 401);
}

// ---------- certificates ----------

#[test]
fn certificates_parse_with_serial_and_validity() {
    let v = vectors();
    let files = [CERT1, CERT2, CERT_EXPIRED];
    for (c, pem) in v.certificates.iter().zip(files) {
        let k = PlatformKey::certificate_pem(pem).unwrap();
        assert_eq!(k.serial, c.serial, "{}", c.file);
        assert_eq!(
            k.kind,
            PlatformKeyKind::Certificate {
                not_before: c.not_before,
                not_after: c.not_after
            }
        );
        assert_eq!(k.not_after(), Some(c.not_after));
        assert_eq!(
            k.valid_at(1_750_000_000),
            !c.expired && c.not_before <= 1_750_000_000
        );
        // The encrypted form decrypts to the same PEM.
        let key = ApiV3Key::new(&v.config.api_v3_key).unwrap();
        assert_eq!(c.encrypt_certificate.algorithm, "AEAD_AES_256_GCM");
        assert_eq!(c.encrypt_certificate.associated_data, "certificate");
        let plain = decrypt_aes_256_gcm(
            &key,
            &c.encrypt_certificate.nonce,
            &c.encrypt_certificate.associated_data,
            &c.encrypt_certificate.ciphertext,
        )
        .unwrap();
        assert_eq!(String::from_utf8(plain).unwrap(), pem);
    }
    // Not a certificate / not a key.
    assert!(PlatformKey::certificate_pem(PLATFORM_PUBLIC).is_err());
    assert!(PlatformKey::certificate_pem(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
    )
    .is_err());
    assert!(RsaPublicKey::from_spki_pem(CERT1).is_err());
    assert!(MerchantKey::from_pkcs8_pem(PLATFORM_PUBLIC).is_err());
    let pkcs1 = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----";
    assert!(
        matches!(MerchantKey::from_pkcs8_pem(pkcs1), Err(PayError::Config(m)) if m.contains("PKCS#1"))
    );
}

#[test]
fn the_certificates_answer_verifies_with_its_own_certificate() {
    let v = vectors();
    let a = &v.certificates_answer;
    let mut keys = PlatformKeys::new();
    keys.add_certificate_pem(CERT1).unwrap();
    let h = SignatureHeaders {
        signature: a.signature.clone(),
        timestamp: a.timestamp.clone(),
        nonce: a.nonce.clone(),
        serial: a.serial.clone(),
    };
    let now: i64 = a.timestamp.parse().unwrap();
    keys.verify(&h, a.body.as_bytes(), now).unwrap();
    // Outside the certificate's validity (2024-2044) the same answer is refused.
    let before = time::macros::datetime!(2023-12-31 00:00 UTC).unix_timestamp();
    let mut h2 = h.clone();
    h2.timestamp = before.to_string();
    assert_eq!(
        keys.verify(&h2, a.body.as_bytes(), before),
        Err(VerifyError::CertificateNotValid(a.serial.clone()))
    );
    // An expired certificate is dropped.
    let mut keys = PlatformKeys::new();
    keys.add_certificate_pem(CERT_EXPIRED).unwrap();
    keys.add_public_key(&v.config.pub_key_id, PLATFORM_PUBLIC)
        .unwrap();
    keys.remove_expired(now);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys.public_key_id(), Some(v.config.pub_key_id.as_str()));
}

// ---------- bill ----------

#[test]
fn the_sample_trade_bill_parses_and_its_hash_checks() {
    let v = vectors();
    let b = &v.tradebill;
    let info = BillInfo {
        hash_type: "SHA1".into(),
        hash_value: b.sha1.to_uppercase(),
        download_url: String::new(),
    };
    wechat::pay::check_bill_hash(&info, BILL).unwrap();
    let mut bad = BILL.to_vec();
    bad[10] ^= 1;
    assert!(matches!(
        wechat::pay::check_bill_hash(&info, &bad),
        Err(PayError::BillHash { .. })
    ));
    let bill = parse_trade_bill(BILL).unwrap();
    assert_eq!(bill.rows.len(), b.rows.len());
    for (row, want) in bill.rows.iter().zip(&b.rows) {
        assert_eq!(row.trade_time, want.trade_time);
        assert_eq!(row.appid, want.appid);
        assert_eq!(row.mchid, want.mchid);
        assert_eq!(row.transaction_id, want.transaction_id);
        assert_eq!(row.out_trade_no, want.out_trade_no);
        assert_eq!(row.openid, want.openid);
        assert_eq!(row.trade_type, want.trade_type);
        assert_eq!(row.trade_state, want.trade_state);
        assert_eq!(row.total_fen, want.total_fen);
        assert_eq!(row.settlement_total_fen, want.settlement_total_fen);
        assert_eq!(row.refund_fen, want.refund_fen);
        assert_eq!(row.out_refund_no, want.out_refund_no);
        assert_eq!(row.description, want.description);
    }
    assert_eq!(bill.rows[1].total_fen, 123_456);
    assert_eq!(bill.rows[1].description, "党费, 含逗号");
    let s = bill.summary.unwrap();
    assert_eq!(s.trade_count, b.summary.trade_count);
    assert_eq!(s.settlement_total_fen, b.summary.settlement_total_fen);
    assert_eq!(s.refund_total_fen, b.summary.refund_total_fen);
    assert_eq!(s.order_total_fen, b.summary.order_total_fen);
    // A BOM and an empty file are fine; a bad amount is an error, not a guess.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(BILL);
    assert_eq!(parse_trade_bill(&bom).unwrap().rows.len(), 3);
    assert!(parse_trade_bill(b"").unwrap().rows.is_empty());
    let text = String::from_utf8(BILL.to_vec())
        .unwrap()
        .replacen("`1.00", "`1.005", 1);
    assert!(parse_trade_bill(text.as_bytes()).is_err());
    assert_eq!(yuan_to_fen("1234.56").unwrap(), 123_456);
}

#[test]
fn beijing_time_and_order_validation() {
    let t = time::macros::datetime!(2024-01-01 16:30:00 UTC);
    assert_eq!(format_beijing_time(t).unwrap(), "2024-01-02T00:30:00+08:00");
    let t = time::macros::datetime!(2024-01-01 12:00:00 -05:00);
    assert_eq!(format_beijing_time(t).unwrap(), "2024-01-02T01:00:00+08:00");
    let ok = JsapiOrder::new("党费", "DJ-2024_01|a*b", 1, "o1", "https://x.cn/pay/notify");
    ok.validate().unwrap();
    let bad = |f: &dyn Fn(&mut JsapiOrder)| {
        let mut o = ok.clone();
        f(&mut o);
        assert!(
            matches!(o.validate(), Err(PayError::InvalidRequest(_))),
            "{o:?}"
        );
    };
    bad(&|o| o.description = "党".repeat(128));
    bad(&|o| o.description = String::new());
    bad(&|o| o.out_trade_no = "12345".into());
    bad(&|o| o.out_trade_no = "1".repeat(33));
    bad(&|o| o.out_trade_no = "DJ 2024 01".into());
    bad(&|o| o.out_trade_no = "DJ/2024/01".into());
    bad(&|o| o.out_trade_no = "订单号123456".into());
    bad(&|o| o.total_fen = 0);
    bad(&|o| o.payer_openid = String::new());
    bad(&|o| o.notify_url = "http://x.cn/pay/notify".into());
    bad(&|o| o.notify_url = "https://x.cn/pay/notify?a=1".into());
    bad(&|o| o.attach = Some("a".repeat(129)));
    let mut max = ok.clone();
    max.description = "党".repeat(127);
    max.out_trade_no = "A".repeat(32);
    max.validate().unwrap();
}

#[test]
fn merchant_config_debug_hides_the_secrets() {
    let v = vectors();
    let cfg = wechat::pay::MerchantConfig::new(
        &v.config.mch_id,
        &v.config.app_id,
        MERCHANT_KEY,
        &v.config.merchant_serial,
        &v.config.api_v3_key,
    )
    .unwrap()
    .with_platform_public_key(&v.config.pub_key_id, PLATFORM_PUBLIC)
    .unwrap();
    assert_eq!(cfg.base_url, "https://api.mch.weixin.qq.com");
    let dbg = format!("{cfg:?}");
    assert!(dbg.contains(&v.config.pub_key_id));
    assert!(!dbg.contains(&v.config.api_v3_key));
    assert!(!dbg.contains("MII"));
    assert!(wechat::pay::MerchantConfig::new("1", "wx", MERCHANT_KEY, "S", "short").is_err());
    let client = wechat::pay::PayClient::new(cfg.clone()).unwrap();
    assert!(!format!("{client:?}").contains(&v.config.api_v3_key));
    assert!(wechat::pay::PayClient::new(cfg.with_base_url("not a url")).is_err());
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn verification_of_arbitrary_headers_and_bodies(
            sig in ".{0,400}",
            ts in ".{0,24}",
            nonce in ".{0,40}",
            serial in prop::sample::select(vec!["PUB_KEY_ID_0119000001092025010100000000000001", "5E58FF91F2CF99D11AE4E715480A757D3DFEB7EE", "x", ""]),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            now in any::<i64>(),
        ) {
            let v = vectors();
            let keys = platform_keys(&v);
            let pairs = [
                ("Wechatpay-Signature", sig.as_str()),
                ("Wechatpay-Timestamp", ts.as_str()),
                ("Wechatpay-Nonce", nonce.as_str()),
                ("Wechatpay-Serial", serial),
            ];
            prop_assert!(keys.verify_pairs(pairs, &body, now).is_err());
        }

        #[test]
        fn bill_parsing_and_decryption_of_junk(bytes in proptest::collection::vec(any::<u8>(), 0..1024), text in "\\PC{0,300}") {
            let _ = parse_trade_bill(&bytes);
            let _ = parse_trade_bill(text.as_bytes());
            let _ = yuan_to_fen(&text);
            let key = ApiV3Key::new("00000000000000000000000000000000").unwrap();
            let _ = decrypt_aes_256_gcm(&key, &text, &text, &text);
            let _ = PlatformKey::certificate_der(&bytes);
            let _ = RsaPublicKey::from_spki_der(&bytes);
        }
    }
}

// ---------- the client against the fake ----------

#[cfg(feature = "fake")]
mod against_the_fake {
    use super::*;
    use wechat::fake::{FakeServer, FakeWechat, NotificationTamper, PayFault};
    use wechat::pay::{api, PayClient};

    async fn setup() -> (FakeWechat, FakeServer, PayClient) {
        let fake = FakeWechat::new(Default::default());
        let server = fake.spawn().await;
        let client = PayClient::new(fake.pay_merchant_config(&server.base_url)).unwrap();
        (fake, server, client)
    }

    fn order(no: &str) -> JsapiOrder {
        let mut o = JsapiOrder::new(
            "党费缴纳-2024年1月",
            no,
            100,
            "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
            "https://dangjian.example.cn/pay/notify",
        );
        // One expiry for the whole run: repeating an order must repeat its parameters exactly
        // (a fresh `now` per call would differ across a second boundary and be refused as a
        // changed order, as WeChat Pay does).
        static EXPIRE: std::sync::OnceLock<time::OffsetDateTime> = std::sync::OnceLock::new();
        o.time_expire = Some(*EXPIRE.get_or_init(|| {
            let now = time::OffsetDateTime::now_utc();
            now.replace_nanosecond(0).unwrap_or(now) + time::Duration::minutes(30)
        }));
        o
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[tokio::test]
    async fn prepay_is_idempotent_and_refuses_changed_parameters() {
        let (fake, _server, client) = setup().await;
        let o = order("DJ20240101000001");
        let id1 = client.jsapi_prepay(&o).await.unwrap();
        let id2 = client.jsapi_prepay(&o).await.unwrap();
        assert_eq!(id1, id2);
        assert!(id1.starts_with("wx"));
        let mut changed = o.clone();
        changed.total_fen = 200;
        match client.jsapi_prepay(&changed).await {
            Err(PayError::Api {
                status: 400, code, ..
            }) => assert_eq!(code, "INVALID_REQUEST"),
            other => panic!("{other:?}"),
        }
        let calls = fake.calls_to(api::JSAPI);
        assert_eq!(calls.len(), 3);
        assert!(calls.iter().all(|c| c.query["_signature"] == "valid"));
        let body = &calls[0].body;
        assert_eq!(body["mchid"], "1900000109");
        assert_eq!(body["appid"], fake.config().mp_app_id.as_str());
        assert_eq!(
            body["amount"],
            serde_json::json!({"total": 100, "currency": "CNY"})
        );
        assert!(body["time_expire"].as_str().unwrap().ends_with("+08:00"));
        // Invalid orders never leave the process.
        let mut long = o.clone();
        long.description = "x".repeat(128);
        assert!(matches!(
            client.jsapi_prepay(&long).await,
            Err(PayError::InvalidRequest(_))
        ));
        let mut short = o.clone();
        short.out_trade_no = "DJ1".into();
        assert!(matches!(
            client.jsapi_prepay(&short).await,
            Err(PayError::InvalidRequest(_))
        ));
        assert_eq!(fake.count_calls(api::JSAPI), 3);
        // paySign for the mini-program verifies with the merchant key.
        let p = client.request_payment(&id1).unwrap();
        assert_eq!(p.package, format!("prepay_id={id1}"));
        assert_eq!(p.sign_type, "RSA");
        let msg = format!(
            "{}\n{}\n{}\n{}\n",
            fake.config().mp_app_id,
            p.time_stamp,
            p.nonce_str,
            p.package
        );
        use base64::Engine as _;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(&p.pay_sign)
            .unwrap();
        assert!(RsaPublicKey::from_spki_pem(MERCHANT_PUBLIC)
            .unwrap()
            .verify(msg.as_bytes(), &sig));
    }

    #[tokio::test]
    async fn query_close_and_order_paid() {
        let (fake, _server, client) = setup().await;
        match client.query_by_out_trade_no("DJ404404404").await {
            Err(PayError::Api {
                status: 404, code, ..
            }) => assert_eq!(code, "ORDER_NOT_EXIST"),
            other => panic!("{other:?}"),
        }
        client.jsapi_prepay(&order("DJ-A-000001")).await.unwrap();
        let tx = client.query_by_out_trade_no("DJ-A-000001").await.unwrap();
        assert_eq!(tx.trade_state, TradeState::Notpay);
        assert_eq!(tx.transaction_id, None);
        let paid = fake.pay_order("DJ-A-000001").unwrap();
        let tx = client.query_by_out_trade_no("DJ-A-000001").await.unwrap();
        assert_eq!(tx, paid);
        assert!(tx.is_paid());
        assert_eq!(tx.amount.payer_total, Some(100));
        assert!(tx.success_time.as_deref().unwrap().ends_with("+08:00"));
        match client.close_order("DJ-A-000001").await {
            Err(e @ PayError::OrderPaid { .. }) => assert_eq!(e.code(), Some("ORDER_PAID")),
            other => panic!("{other:?}"),
        }
        // Prepay again on a paid order: also OrderPaid.
        assert!(matches!(
            client.jsapi_prepay(&order("DJ-A-000001")).await,
            Err(PayError::OrderPaid { .. })
        ));
        // An unpaid order closes (204, signed empty body), twice, and cannot be paid.
        client.jsapi_prepay(&order("DJ-B-000002")).await.unwrap();
        client.close_order("DJ-B-000002").await.unwrap();
        client.close_order("DJ-B-000002").await.unwrap();
        assert_eq!(
            client
                .query_by_out_trade_no("DJ-B-000002")
                .await
                .unwrap()
                .trade_state,
            TradeState::Closed
        );
        assert!(fake.pay_order("DJ-B-000002").is_none());
        let close = fake.calls_to(api::CLOSE);
        assert_eq!(close[0].query["out_trade_no"], "DJ-A-000001");
        assert_eq!(close[0].body, serde_json::json!({"mchid": "1900000109"}));
        // Special characters of out_trade_no survive the path and the signature.
        client.jsapi_prepay(&order("DJ|2024*01_x-1")).await.unwrap();
        assert_eq!(
            client
                .query_by_out_trade_no("DJ|2024*01_x-1")
                .await
                .unwrap()
                .out_trade_no,
            "DJ|2024*01_x-1"
        );
    }

    #[tokio::test]
    async fn a_spoiled_or_missing_answer_signature_means_result_unknown() {
        let (fake, _server, client) = setup().await;
        fake.pay_inject(api::JSAPI, PayFault::BadSignature, 1);
        let e = client
            .jsapi_prepay(&order("DJ-U-000001"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, PayError::Unverified(VerifyError::BadSignature)),
            "{e:?}"
        );
        assert!(e.outcome_unknown());
        // The order was created: repeating the identical call gets the same prepay_id.
        assert!(fake.pay_order_state("DJ-U-000001").is_some());
        client.jsapi_prepay(&order("DJ-U-000001")).await.unwrap();
        fake.pay_inject(api::QUERY_BY_OUT_TRADE_NO, PayFault::Unsigned, 1);
        assert!(matches!(
            client.query_by_out_trade_no("DJ-U-000001").await,
            Err(PayError::Unverified(VerifyError::MissingHeader(_)))
        ));
        fake.pay_inject(api::CLOSE, PayFault::BadSignature, 1);
        assert!(matches!(
            client.close_order("DJ-U-000001").await,
            Err(PayError::Unverified(_))
        ));
        // The close happened although the client could not know it.
        assert_eq!(
            fake.pay_order_state("DJ-U-000001").unwrap().state,
            TradeState::Closed
        );
        // A signed error answer that does not verify is not believed either.
        client.jsapi_prepay(&order("DJ-U-000002")).await.unwrap();
        fake.pay_order("DJ-U-000002").unwrap();
        fake.pay_inject(api::CLOSE, PayFault::BadSignature, 1);
        assert!(matches!(
            client.close_order("DJ-U-000002").await,
            Err(PayError::Unverified(VerifyError::BadSignature))
        ));
        assert!(matches!(
            client.close_order("DJ-U-000002").await,
            Err(PayError::OrderPaid { .. })
        ));
        // Injected errors: a 5xx error code leaves the outcome unknown; so does a gateway error.
        fake.pay_inject(
            api::CLOSE,
            PayFault::Error {
                status: 500,
                code: "SYSTEM_ERROR".into(),
            },
            1,
        );
        match client.close_order("DJ-U-000001").await {
            Err(e @ PayError::Api { status: 500, .. }) => assert!(e.outcome_unknown()),
            other => panic!("{other:?}"),
        }
        fake.pay_inject(api::CLOSE, PayFault::Status(502), 1);
        assert!(matches!(
            client.close_order("DJ-U-000001").await,
            Err(PayError::Http(_))
        ));
    }

    #[tokio::test]
    async fn the_fake_refuses_requests_not_signed_by_the_merchant() {
        let (fake, server, _client) = setup().await;
        let mut cfg = fake.pay_merchant_config(&server.base_url);
        cfg.merchant_key = MerchantKey::from_pkcs8_pem(OTHER_KEY).unwrap();
        let wrong = PayClient::new(cfg).unwrap();
        match wrong.jsapi_prepay(&order("DJ-S-000001")).await {
            Err(PayError::Api {
                status: 401, code, ..
            }) => assert_eq!(code, "SIGN_ERROR"),
            other => panic!("{other:?}"),
        }
        let mut cfg = fake.pay_merchant_config(&server.base_url);
        cfg.merchant_serial = "0000".into();
        let wrong_serial = PayClient::new(cfg).unwrap();
        assert!(matches!(
            wrong_serial.query_by_out_trade_no("DJ-S-000001").await,
            Err(PayError::Api { status: 401, .. })
        ));
        let calls = fake.calls_to(api::JSAPI);
        assert!(calls[0].query["_signature"].starts_with("invalid"));
        assert!(fake.pay_orders().is_empty());
    }

    #[tokio::test]
    async fn certificate_mode_downloads_decrypts_and_keeps_the_valid_certificates() {
        let fake = FakeWechat::new(Default::default());
        let server = fake.spawn().await;
        let client = PayClient::new(fake.pay_merchant_config_cert_mode(&server.base_url)).unwrap();
        // Without a certificate nothing verifies.
        let e = client
            .jsapi_prepay(&order("DJ-C-000001"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, PayError::Unverified(VerifyError::UnknownSerial(_))),
            "{e:?}"
        );
        let v = vectors();
        let certs = client.refresh_certificates().await.unwrap();
        let serials: Vec<&str> = certs.iter().map(|k| k.serial.as_str()).collect();
        assert_eq!(
            serials,
            [
                v.certificates[0].serial.as_str(),
                v.certificates[1].serial.as_str()
            ]
        );
        assert_eq!(certs[0].not_after(), Some(v.certificates[0].not_after));
        assert_eq!(client.platform_keys().len(), 2);
        // No PUB_KEY_ID: the fake answers with certificate 1, which now verifies.
        let tx = client.query_by_out_trade_no("DJ-C-000001").await.unwrap();
        assert_eq!(tx.trade_state, TradeState::Notpay);
        // Refreshing again changes nothing; a spoiled answer is refused and keeps the old keys.
        client.refresh_certificates().await.unwrap();
        assert_eq!(client.platform_keys().len(), 2);
        fake.pay_inject(api::CERTIFICATES, PayFault::BadSignature, 1);
        assert!(matches!(
            client.refresh_certificates().await,
            Err(PayError::Unverified(_))
        ));
        assert_eq!(client.platform_keys().len(), 2);
        // A notification signed by the certificate verifies in this mode.
        let n = fake
            .notification_for(
                "DJ-C-000001",
                &NotificationTamper {
                    certificate_mode: true,
                    ..Default::default()
                },
            )
            .unwrap();
        let t = client
            .transaction_notification_from_headers(&n.header_map(), n.body.as_bytes(), now())
            .unwrap();
        assert_eq!(t.transaction.out_trade_no, "DJ-C-000001");
    }

    #[tokio::test]
    async fn trade_bill_hash_check_and_parse() {
        let (fake, _server, client) = setup().await;
        let today = time::OffsetDateTime::now_utc()
            .to_offset(time::macros::offset!(+8))
            .date();
        match client.trade_bill(today).await {
            Err(PayError::Api { code, .. }) => assert_eq!(code, "NO_STATEMENT_EXIST"),
            other => panic!("{other:?}"),
        }
        for (no, fen) in [("DJ-BILL-0001", 100), ("DJ-BILL-0002", 123_456)] {
            let mut o = order(no);
            o.total_fen = fen;
            o.description = "党费, 含逗号".into();
            client.jsapi_prepay(&o).await.unwrap();
            fake.pay_order(no).unwrap();
        }
        client.jsapi_prepay(&order("DJ-BILL-0003")).await.unwrap(); // unpaid: not in the bill
        let bill = client.fetch_trade_bill(today).await.unwrap();
        assert_eq!(bill.rows.len(), 2);
        let row = bill
            .rows
            .iter()
            .find(|r| r.out_trade_no == "DJ-BILL-0002")
            .unwrap();
        assert_eq!(row.total_fen, 123_456);
        assert_eq!(row.trade_state, "SUCCESS");
        assert_eq!(row.openid, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
        assert_eq!(row.mchid, "1900000109");
        assert_eq!(row.description, "党费, 含逗号");
        let tx = fake.pay_order_state("DJ-BILL-0002").unwrap();
        assert_eq!(Some(row.transaction_id.clone()), tx.transaction_id);
        let s = bill.summary.unwrap();
        assert_eq!((s.trade_count, s.settlement_total_fen), (2, 123_556));
        let q = &fake.calls_to(api::TRADEBILL)[1].query;
        assert_eq!(q["bill_type"], "ALL");
        assert_eq!(q["bill_date"], today.to_string());
        assert_eq!(fake.count_calls(api::BILL_DOWNLOAD), 1);

        // A set bill, then a hash that does not match.
        fake.set_trade_bill("2024-01-01", BILL);
        let date = time::macros::date!(2024 - 01 - 01);
        let bill = client.fetch_trade_bill(date).await.unwrap();
        assert_eq!(bill.rows.len(), 3);
        fake.set_bill_hash_corrupt(true);
        let info = client.trade_bill(date).await.unwrap();
        assert!(matches!(
            client.download_bill(&info).await,
            Err(PayError::BillHash { .. })
        ));
        // A download URL on another host is refused before sending our signature there.
        let evil = BillInfo {
            download_url: "https://evil.example/v3/billdownload/file?token=x".into(),
            ..info
        };
        assert!(matches!(
            client.download_bill(&evil).await,
            Err(PayError::Decode(_))
        ));
    }

    #[tokio::test]
    async fn notifications_from_the_fake_verify_and_every_tampering_is_refused() {
        let (fake, _server, client) = setup().await;
        assert!(fake
            .notification_for("DJ-N-UNKNOWN", &NotificationTamper::default())
            .is_none());
        client.jsapi_prepay(&order("DJ-N-000001")).await.unwrap();
        let n = fake
            .notification_for("DJ-N-000001", &NotificationTamper::default())
            .unwrap();
        assert_eq!(n.notify_url, "https://dangjian.example.cn/pay/notify");
        let pairs = || n.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let h = SignatureHeaders::from_pairs(pairs()).unwrap();
        let got = client
            .transaction_notification(&h, n.body.as_bytes(), now())
            .unwrap();
        assert_eq!(got.transaction, n.transaction);
        assert_eq!(got.notification.id, n.id);
        assert!(got.transaction.is_paid());
        assert_eq!(got.transaction.amount.total, 100);
        // Paid as a side effect.
        assert_eq!(
            fake.pay_order_state("DJ-N-000001").unwrap().state,
            TradeState::Success
        );

        // A different amount is correctly signed: the app must compare it with its order.
        let t = NotificationTamper {
            amount_total: Some(1),
            ..Default::default()
        };
        let n2 = fake.notification_for("DJ-N-000001", &t).unwrap();
        let got = client
            .transaction_notification_from_headers(&n2.header_map(), n2.body.as_bytes(), now())
            .unwrap();
        assert_eq!(got.transaction.amount.total, 1);

        let refused = |t: NotificationTamper| {
            let n = fake.notification_for("DJ-N-000001", &t).unwrap();
            client
                .transaction_notification_from_headers(&n.header_map(), n.body.as_bytes(), now())
                .unwrap_err()
        };
        assert!(matches!(
            refused(NotificationTamper {
                bad_signature: true,
                ..Default::default()
            }),
            PayError::Verify(VerifyError::BadSignature)
        ));
        assert!(matches!(
            refused(NotificationTamper {
                probe_signature: true,
                ..Default::default()
            }),
            PayError::Verify(VerifyError::ProbeSignature)
        ));
        assert!(matches!(
            refused(NotificationTamper {
                serial: Some("PUB_KEY_ID_OTHER".into()),
                ..Default::default()
            }),
            PayError::Verify(VerifyError::UnknownSerial(_))
        ));
        for skew in [-301, 301] {
            assert!(matches!(
                refused(NotificationTamper {
                    timestamp: Some(now() + skew),
                    ..Default::default()
                }),
                PayError::Verify(VerifyError::StaleTimestamp { .. })
            ));
        }
        assert!(matches!(
            refused(NotificationTamper {
                wrong_api_v3_key: true,
                ..Default::default()
            }),
            PayError::Crypto(_)
        ));
        // Certificate-signed while we only have the public key: unknown serial.
        assert!(matches!(
            refused(NotificationTamper {
                certificate_mode: true,
                ..Default::default()
            }),
            PayError::Verify(VerifyError::UnknownSerial(_))
        ));
        // A body altered after signing.
        let body = n.body.replace("TRANSACTION.SUCCESS", "TRANSACTION.SUCCESz");
        assert!(matches!(
            client.transaction_notification(&h, body.as_bytes(), now()),
            Err(PayError::Verify(VerifyError::BadSignature))
        ));
    }

    #[tokio::test]
    async fn a_notification_for_another_merchant_is_refused() {
        let (fake, server, _client) = setup().await;
        let client = PayClient::new(fake.pay_merchant_config(&server.base_url)).unwrap();
        client.jsapi_prepay(&order("DJ-M-000001")).await.unwrap();
        let n = fake
            .notification_for("DJ-M-000001", &NotificationTamper::default())
            .unwrap();
        let mut cfg = fake.pay_merchant_config(&server.base_url);
        cfg.mch_id = "1900000999".into();
        let other = PayClient::new(cfg).unwrap();
        assert!(matches!(
            other.transaction_notification_from_headers(&n.header_map(), n.body.as_bytes(), now()),
            Err(PayError::Decode(_))
        ));
    }

    #[tokio::test]
    async fn official_account_subscribe_bizsend() {
        use std::collections::BTreeMap;
        use wechat::client::{api as wapi, BizSubscribeMessage, Client, ClientConfig, MiniProgram};
        let fake = FakeWechat::new(Default::default());
        let server = fake.spawn().await;
        let c = fake.config();
        let oa = Client::new(
            ClientConfig::new(&server.base_url, c.app_id.clone(), c.app_secret.clone()),
            std::sync::Arc::new(wechat::token::MemoryTokenStore::new()),
        )
        .unwrap();
        let msg = BizSubscribeMessage {
            touser: "oFollower0001".into(),
            template_id: "TPL_biz_0001".into(),
            page: Some("https://dangjian.example.cn/news/1".into()),
            miniprogram: Some(MiniProgram {
                appid: c.mp_app_id.clone(),
                pagepath: Some("pages/news/index?id=1".into()),
            }),
            data: BTreeMap::from([
                ("thing1".to_owned(), "党课通知".into()),
                ("time2".to_owned(), "2024-01-01 19:00".into()),
            ]),
        };
        oa.subscribe_bizsend(&msg).await.unwrap();
        let calls = fake.calls_to(wapi::SUBSCRIBE_BIZSEND);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].body["data"]["thing1"]["value"], "党课通知");
        assert_eq!(
            calls[0].body["miniprogram"]["pagepath"],
            "pages/news/index?id=1"
        );
        let out = fake.outbox();
        assert_eq!(
            (out[0].channel, out[0].to_user.as_deref()),
            ("bizsend", Some("oFollower0001"))
        );
        // No grant: 43101.
        fake.fail_openid("oFollower0001", 43101);
        assert_eq!(
            oa.subscribe_bizsend(&msg).await.unwrap_err().errcode(),
            Some(43101)
        );
        // The mini-program's token is refused on the official-account API.
        let mp = Client::new(
            ClientConfig::new(
                &server.base_url,
                c.mp_app_id.clone(),
                c.mp_app_secret.clone(),
            ),
            std::sync::Arc::new(wechat::token::MemoryTokenStore::new()),
        )
        .unwrap();
        assert_eq!(
            mp.subscribe_bizsend(&msg).await.unwrap_err().errcode(),
            Some(48001)
        );
    }
}
