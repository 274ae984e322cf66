//! Known-answer tests against vectors produced by an independent implementation
//! (wechat/testdata/gen_vectors.py: wechatpy and a from-the-docs `cryptography` version, which
//! agree), plus a full safe-mode request → reply round trip and no-panic checks on junk input.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use wechat::crypto::{decode_aes_key, MessageCrypto};
use wechat::message::{InboundMessage, MessageBody};
use wechat::reply::{encrypted_reply_xml, parse_encrypted_envelope, Reply};
use wechat::signature::{msg_signature, signature, verify_msg_signature, verify_signature};
use wechat::xml::{parse_flat, write_cdata};
use wechat::Error;

#[derive(Deserialize)]
struct Vectors {
    signature_vectors: Vec<SignatureVector>,
    crypto_vectors: Vec<CryptoVector>,
    bad_ciphertexts: Vec<BadCiphertext>,
    encrypted_request: EncryptedRequest,
}

#[derive(Deserialize)]
struct SignatureVector {
    token: String,
    timestamp: String,
    nonce: String,
    signature: String,
}

#[derive(Deserialize)]
struct CryptoVector {
    name: String,
    encoding_aes_key: String,
    key_hex: String,
    app_id: String,
    random_hex: String,
    plaintext: String,
    ciphertext: String,
    token: String,
    timestamp: String,
    nonce: String,
    msg_signature: String,
    full_pad_block: bool,
}

#[derive(Deserialize)]
struct BadCiphertext {
    name: String,
    encoding_aes_key: String,
    app_id: String,
    ciphertext: String,
    why: String,
}

#[derive(Deserialize)]
struct EncryptedRequest {
    token: String,
    encoding_aes_key: String,
    app_id: String,
    query: Query,
    body: String,
    plaintext: String,
    random_hex: String,
}

#[derive(Deserialize)]
struct Query {
    signature: String,
    timestamp: String,
    nonce: String,
    openid: String,
    encrypt_type: String,
    msg_signature: String,
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("../testdata/crypto_vectors.json"))
        .expect("crypto_vectors.json")
}

fn random16(hex_str: &str) -> [u8; 16] {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

fn assert_crypto_err<T: std::fmt::Debug>(r: wechat::Result<T>, what: &str) {
    assert!(
        matches!(r, Err(Error::Crypto(_))),
        "{what}: expected Error::Crypto, got {r:?}"
    );
}

#[test]
fn signatures_match_independent_vectors() {
    let v = vectors();
    assert!(v.signature_vectors.len() >= 3);
    for s in &v.signature_vectors {
        assert_eq!(signature(&s.token, &s.timestamp, &s.nonce), s.signature);
        assert!(verify_signature(
            &s.token,
            &s.timestamp,
            &s.nonce,
            &s.signature
        ));
        assert!(!verify_signature(
            &s.token,
            &s.timestamp,
            &s.nonce,
            &s.signature.to_uppercase()
        ));
        assert!(!verify_signature(
            &s.token,
            &s.timestamp,
            "other",
            &s.signature
        ));
    }
}

#[test]
fn keys_decode_like_the_reference_including_nonzero_trailing_bits() {
    let v = vectors();
    let last_chars: Vec<char> = v
        .crypto_vectors
        .iter()
        .map(|c| c.encoding_aes_key.chars().last().unwrap())
        .collect();
    for needed in ['Z', 'z', 'A'] {
        assert!(
            last_chars.contains(&needed),
            "no vector key ends in {needed}"
        );
    }
    for c in &v.crypto_vectors {
        assert_eq!(
            hex::encode(decode_aes_key(&c.encoding_aes_key).unwrap()),
            c.key_hex,
            "{}",
            c.name
        );
    }
}

#[test]
fn decrypt_matches_independent_vectors() {
    for c in &vectors().crypto_vectors {
        let crypto = MessageCrypto::new(&c.encoding_aes_key, &c.app_id).unwrap();
        assert_eq!(crypto.app_id(), c.app_id);
        let plain = crypto
            .decrypt(&c.ciphertext)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(String::from_utf8(plain).unwrap(), c.plaintext, "{}", c.name);
    }
}

#[test]
fn encrypt_with_random_is_byte_for_byte_the_reference() {
    for c in &vectors().crypto_vectors {
        let crypto = MessageCrypto::new(&c.encoding_aes_key, &c.app_id).unwrap();
        let ct = crypto.encrypt_with_random(c.plaintext.as_bytes(), random16(&c.random_hex));
        assert_eq!(ct, c.ciphertext, "{}", c.name);
    }
}

#[test]
fn full_pad_block_vector_is_present_and_padded_with_32_bytes_of_32() {
    let v = vectors();
    let c = v
        .crypto_vectors
        .iter()
        .find(|c| c.full_pad_block)
        .expect("a full-pad-block vector");
    let framed = 16 + 4 + c.plaintext.len() + c.app_id.len();
    assert_eq!(framed % 32, 0);
    let raw = STANDARD.decode(&c.ciphertext).unwrap();
    assert_eq!(raw.len(), framed + 32, "a whole extra block of padding");
    let crypto = MessageCrypto::new(&c.encoding_aes_key, &c.app_id).unwrap();
    assert_eq!(
        crypto.decrypt(&c.ciphertext).unwrap(),
        c.plaintext.as_bytes()
    );
}

#[test]
fn msg_signatures_match_independent_vectors() {
    for c in &vectors().crypto_vectors {
        assert_eq!(
            msg_signature(&c.token, &c.timestamp, &c.nonce, &c.ciphertext),
            c.msg_signature,
            "{}",
            c.name
        );
        assert!(verify_msg_signature(
            &c.token,
            &c.timestamp,
            &c.nonce,
            &c.ciphertext,
            &c.msg_signature
        ));
        let mut tampered = c.ciphertext.clone();
        tampered.insert(0, 'A');
        assert!(!verify_msg_signature(
            &c.token,
            &c.timestamp,
            &c.nonce,
            &tampered,
            &c.msg_signature
        ));
    }
}

#[test]
fn tampered_ciphertext_is_a_crypto_error() {
    for c in &vectors().crypto_vectors {
        let crypto = MessageCrypto::new(&c.encoding_aes_key, &c.app_id).unwrap();
        let raw = STANDARD.decode(&c.ciphertext).unwrap();
        // Flip one byte in the last block: padding or AppId no longer check out.
        let mut t = raw.clone();
        let n = t.len();
        t[n - 1] ^= 0x5a;
        assert_crypto_err(
            crypto.decrypt(&STANDARD.encode(&t)),
            &format!("{}: last byte", c.name),
        );
        // Truncated by one block, and by a partial block.
        assert_crypto_err(
            crypto.decrypt(&STANDARD.encode(&raw[..n - 16])),
            &format!("{}: one block short", c.name),
        );
        assert_crypto_err(
            crypto.decrypt(&STANDARD.encode(&raw[..n - 5])),
            &format!("{}: partial block", c.name),
        );
        // Not base64 at all.
        assert_crypto_err(
            crypto.decrypt(&format!("{}*", c.ciphertext)),
            &format!("{}: bad base64", c.name),
        );
    }
}

#[test]
fn wrong_app_id_is_a_crypto_error() {
    for c in &vectors().crypto_vectors {
        for wrong in [
            "wx0000000000000000",
            "",
            &c.app_id[..c.app_id.len() - 1],
            &format!("{}x", c.app_id),
        ] {
            let crypto = MessageCrypto::new(&c.encoding_aes_key, wrong).unwrap();
            assert_crypto_err(
                crypto.decrypt(&c.ciphertext),
                &format!("{} with app id {wrong:?}", c.name),
            );
        }
    }
}

#[test]
fn broken_frames_from_the_reference_are_crypto_errors() {
    let v = vectors();
    let names: Vec<&str> = v.bad_ciphertexts.iter().map(|b| b.name.as_str()).collect();
    for needed in [
        "pad_zero",
        "pad_33",
        "pad_inconsistent",
        "wrong_app_id",
        "length_too_long",
    ] {
        assert!(names.contains(&needed), "missing bad vector {needed}");
    }
    for b in &v.bad_ciphertexts {
        let crypto = MessageCrypto::new(&b.encoding_aes_key, &b.app_id).unwrap();
        assert_crypto_err(
            crypto.decrypt(&b.ciphertext),
            &format!("{} ({})", b.name, b.why),
        );
    }
}

#[test]
fn crypto_errors_never_leak_key_or_plaintext() {
    let v = vectors();
    for b in &v.bad_ciphertexts {
        let crypto = MessageCrypto::new(&b.encoding_aes_key, &b.app_id).unwrap();
        let msg = crypto.decrypt(&b.ciphertext).unwrap_err().to_string();
        assert!(msg.len() < 64, "{msg}");
        assert!(
            !msg.contains(&b.encoding_aes_key) && !msg.contains("<xml>") && !msg.contains("hi"),
            "{msg}"
        );
    }
}

/// The whole safe-mode exchange with the sample POST: verify, decrypt, parse, reply, encrypt,
/// and check the reply decrypts to what was sent.
#[test]
fn encrypted_request_sample_round_trip() {
    let r = vectors().encrypted_request;
    let q = &r.query;
    assert_eq!(q.encrypt_type, "aes");
    assert!(verify_signature(
        &r.token,
        &q.timestamp,
        &q.nonce,
        &q.signature
    ));

    let env = parse_encrypted_envelope(&r.body).unwrap();
    assert_eq!(env.to_user.as_deref(), Some("gh_9f2c1a7b3e5d"));
    assert!(verify_msg_signature(
        &r.token,
        &q.timestamp,
        &q.nonce,
        &env.encrypt,
        &q.msg_signature
    ));

    let crypto = MessageCrypto::new(&r.encoding_aes_key, &r.app_id).unwrap();
    let plain = String::from_utf8(crypto.decrypt(&env.encrypt).unwrap()).unwrap();
    assert_eq!(plain, r.plaintext);
    assert_eq!(
        crypto.encrypt_with_random(plain.as_bytes(), random16(&r.random_hex)),
        env.encrypt
    );

    let msg = InboundMessage::from_xml(&plain).unwrap();
    assert_eq!(msg.from_user, q.openid);
    assert_eq!(msg.to_user, "gh_9f2c1a7b3e5d");
    match &msg.body {
        MessageBody::Text { content, .. } => assert_eq!(content, "留言 支部活动安排在周五下午吗？"),
        other => panic!("{other:?}"),
    }

    let reply = Reply::Text {
        content: "收到]]>，谢谢".into(),
    }
    .to_xml(&msg.from_user, &msg.to_user, 1700000301);
    let encrypt = crypto.encrypt(reply.as_bytes());
    let (ts, nonce) = ("1700000301", "987654");
    let envelope = encrypted_reply_xml(
        &encrypt,
        &msg_signature(&r.token, ts, nonce, &encrypt),
        ts,
        nonce,
    );

    // What WeChat does with our reply.
    let f = parse_flat(&envelope).unwrap();
    let enc = f.get("Encrypt").unwrap();
    assert!(verify_msg_signature(
        &r.token,
        f.get("TimeStamp").unwrap(),
        f.get("Nonce").unwrap(),
        enc,
        f.get("MsgSignature").unwrap()
    ));
    let back = String::from_utf8(crypto.decrypt(enc).unwrap()).unwrap();
    assert_eq!(back, reply);
    assert_eq!(
        parse_flat(&back).unwrap().get("Content"),
        Some("收到]]>，谢谢")
    );
}

#[test]
fn tampered_request_body_fails_msg_signature() {
    let r = vectors().encrypted_request;
    let q = &r.query;
    let env = parse_encrypted_envelope(&r.body).unwrap();
    let mut other = env.encrypt.clone();
    other.replace_range(0..1, if other.starts_with('A') { "B" } else { "A" });
    assert!(!verify_msg_signature(
        &r.token,
        &q.timestamp,
        &q.nonce,
        &other,
        &q.msg_signature
    ));
    assert!(!verify_msg_signature(
        "wrong-token",
        &q.timestamp,
        &q.nonce,
        &env.encrypt,
        &q.msg_signature
    ));
}

/// A tiny deterministic generator, so the junk-input checks need no extra dependency.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn cdata_round_trips_any_mix_of_brackets() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let atoms = [
        "]",
        "]]",
        "]]>",
        ">",
        "<",
        "&",
        "<![CDATA[",
        "党",
        "a",
        " ",
        "\n",
        "&amp;",
        "</xml>",
    ];
    for _ in 0..2000 {
        let len = rng.next() % 12;
        let s: String = (0..len).map(|_| rng.pick(&atoms)).collect();
        let mut xml = String::from("<xml><C>");
        write_cdata(&mut xml, &s);
        xml.push_str("</C></xml>");
        let f = parse_flat(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
        assert_eq!(f.get("C"), Some(s.as_str()), "{xml}");
        assert_eq!(f.len(), 1);
    }
}

#[test]
fn junk_xml_never_panics() {
    let mut rng = XorShift(42);
    let atoms = [
        "<xml>",
        "</xml>",
        "<A>",
        "</A>",
        "<B/>",
        "<![CDATA[",
        "]]>",
        "&amp;",
        "&x;",
        "&#",
        "&#x41;",
        "<!DOCTYPE",
        "<!ENTITY",
        "<?xml version=\"1.0\"?>",
        "<?pi?>",
        "<!--",
        "-->",
        "text",
        "<",
        ">",
        "\"",
        "=",
        " ",
        "<MsgType>",
        "</MsgType>",
        "event",
        "text",
        "<Event>",
        "</Event>",
        "<MsgId>",
        "</MsgId>",
        "1",
        "\u{0}",
        "党",
    ];
    for _ in 0..5000 {
        let len = rng.next() % 24;
        let s: String = (0..len).map(|_| rng.pick(&atoms)).collect();
        let _ = parse_flat(&s);
        let _ = InboundMessage::from_xml(&s);
        let _ = parse_encrypted_envelope(&s);
    }
}

#[test]
fn junk_ciphertext_never_panics() {
    let crypto = MessageCrypto::new(
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "wxb11529c136998cb6",
    )
    .unwrap();
    let mut rng = XorShift(7);
    for i in 0..2000 {
        let len = (i % 8) * 16 + (rng.next() % 3) as usize * (i % 2);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert_crypto_err(crypto.decrypt(&STANDARD.encode(&bytes)), "random bytes");
    }
}
