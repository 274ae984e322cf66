//! The WeChat Pay notification path, piece by piece: signature verification of arbitrary headers
//! and bodies (always refused: nothing here is signed by the platform key), the envelope's JSON,
//! AES-256-GCM decryption of the resource, and the decrypted transaction's JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat::pay::{
    decrypt_aes_256_gcm, encrypt_aes_256_gcm, ApiV3Key, Notification, PlatformKeys, Transaction,
};

const PLATFORM_PUBLIC: &str = include_str!("../../wechat/testdata/pay/test_platform_public.pem");
const PUB_KEY_ID: &str = "PUB_KEY_ID_0119000001092025010100000000000001";

fuzz_target!(|data: &[u8]| {
    // Split the input into header values and a body at the first four NUL bytes.
    let mut parts = data.splitn(5, |b| *b == 0);
    let text = |p: Option<&[u8]>| String::from_utf8_lossy(p.unwrap_or_default()).into_owned();
    let (sig, ts, nonce, serial) = (text(parts.next()), text(parts.next()), text(parts.next()), text(parts.next()));
    let body = parts.next().unwrap_or_default();

    let mut keys = PlatformKeys::new();
    keys.add_public_key(PUB_KEY_ID, PLATFORM_PUBLIC).unwrap();
    let pairs = [
        ("Wechatpay-Signature", sig.as_str()),
        ("Wechatpay-Timestamp", ts.as_str()),
        ("Wechatpay-Nonce", nonce.as_str()),
        ("Wechatpay-Serial", serial.as_str()),
    ];
    assert!(keys.verify_pairs(pairs, body, 1_700_000_000).is_err());

    // What follows a valid signature: the envelope, its resource, the transaction inside.
    let key = ApiV3Key::new("00000000000000000000000000000000").unwrap();
    if let Ok(n) = serde_json::from_slice::<Notification>(body) {
        let _ = n.resource.decrypt(&key);
    }
    let _ = decrypt_aes_256_gcm(&key, &nonce, &ts, &sig);
    let _ = serde_json::from_slice::<Transaction>(body);

    // A correctly encrypted resource carrying the body: the envelope decrypts back to it exactly,
    // and whatever it holds is a transaction or a decode error.
    let Ok(ciphertext) = encrypt_aes_256_gcm(&key, "0123456789ab", "transaction", body) else {
        return;
    };
    let envelope = serde_json::json!({
        "id": "EV-FUZZ", "create_time": "2026-12-01T10:00:00+08:00",
        "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
        "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": ciphertext, "associated_data": "transaction", "nonce": "0123456789ab"},
    });
    let n: Notification = serde_json::from_value(envelope).unwrap();
    let plain = n.resource.decrypt(&key).unwrap();
    assert_eq!(plain, body);
    let _ = serde_json::from_slice::<Transaction>(&plain);
});
