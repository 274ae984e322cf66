//! Message-server signatures: `signature` of 接入指南 ("验证消息的确来自微信服务器") and the
//! safe-mode `msg_signature` of 消息加解密说明.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// SHA-1 hex (lowercase) of the parts sorted lexicographically and concatenated, on the stack:
/// every message is checked against one or two of these (`bench/README.md`).
fn sorted_sha1_hex(parts: &mut [&str]) -> [u8; 40] {
    parts.sort_unstable();
    let mut h = Sha1::new();
    for p in parts.iter() {
        h.update(p.as_bytes());
    }
    let mut out = [0u8; 40];
    hex::encode_to_slice(h.finalize(), &mut out).expect("a SHA-1 digest is 20 bytes");
    out
}

fn into_string(hex: [u8; 40]) -> String {
    String::from_utf8(hex.to_vec()).expect("hex digits are ASCII")
}

/// Constant-time equality of an expected and a received signature; case-sensitive on purpose:
/// WeChat sends lowercase hex.
fn ct_eq_hex(expected: &[u8; 40], got: &str) -> bool {
    let got = got.as_bytes();
    if got.len() != expected.len() {
        return false; // the length of a signature is public
    }
    // Every byte is compared, whatever the differences (no early exit); the result passes
    // `subtle`'s optimisation barrier once rather than once per byte.
    let diff = expected
        .iter()
        .zip(got)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    diff.ct_eq(&0).into()
}

/// The `signature` query parameter WeChat sends on every request (接入指南: token, timestamp,
/// nonce sorted, concatenated, SHA-1, lowercase hex).
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    into_string(sorted_sha1_hex(&mut [token, timestamp, nonce]))
}

/// Checks the `signature` query parameter in constant time. Uppercase hex is refused.
pub fn verify_signature(token: &str, timestamp: &str, nonce: &str, signature: &str) -> bool {
    ct_eq_hex(&sorted_sha1_hex(&mut [token, timestamp, nonce]), signature)
}

/// The safe-mode `msg_signature` (消息加解密说明): token, timestamp, nonce and the `Encrypt`
/// text sorted, concatenated, SHA-1, lowercase hex.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    into_string(sorted_sha1_hex(&mut [token, timestamp, nonce, encrypt]))
}

/// Checks a safe-mode `msg_signature` in constant time. Uppercase hex is refused.
pub fn verify_msg_signature(
    token: &str,
    timestamp: &str,
    nonce: &str,
    encrypt: &str,
    msg_signature: &str,
) -> bool {
    ct_eq_hex(
        &sorted_sha1_hex(&mut [token, timestamp, nonce, encrypt]),
        msg_signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_sha1_of_sorted_parts() {
        // sorted: "1409304348" < "pamtest" < "xxxxxx"
        let expected = hex::encode(Sha1::digest(b"1409304348pamtestxxxxxx"));
        assert_eq!(signature("pamtest", "1409304348", "xxxxxx"), expected);
        // Order of the arguments does not matter, only their sorted order.
        assert_eq!(signature("xxxxxx", "pamtest", "1409304348"), expected);
        assert_eq!(expected.len(), 40);
        assert!(expected
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn verify_accepts_only_the_exact_lowercase_signature() {
        let sig = signature("tok", "1700000000", "42");
        assert!(verify_signature("tok", "1700000000", "42", &sig));
        assert!(!verify_signature(
            "tok",
            "1700000000",
            "42",
            &sig.to_uppercase()
        ));
        assert!(!verify_signature("tok", "1700000001", "42", &sig));
        assert!(!verify_signature("tok", "1700000000", "42", &sig[..39]));
        assert!(!verify_signature("tok", "1700000000", "42", ""));
        assert!(!verify_signature("other", "1700000000", "42", &sig));
    }

    #[test]
    fn msg_signature_covers_the_encrypt_text() {
        let sig = msg_signature("tok", "1700000000", "42", "ENCRYPTED");
        // sorted: "1700000000" < "42" < "ENCRYPTED" < "tok"
        assert_eq!(sig, hex::encode(Sha1::digest(b"170000000042ENCRYPTEDtok")));
        assert!(verify_msg_signature(
            "tok",
            "1700000000",
            "42",
            "ENCRYPTED",
            &sig
        ));
        assert!(!verify_msg_signature(
            "tok",
            "1700000000",
            "42",
            "ENCRYPTEd",
            &sig
        ));
        assert!(!verify_msg_signature(
            "tok",
            "1700000000",
            "42",
            "ENCRYPTED",
            &sig.to_uppercase()
        ));
        assert_ne!(sig, signature("tok", "1700000000", "42"));
    }
}
