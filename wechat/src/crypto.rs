//! Safe-mode message encryption (消息加解密说明): AES-256-CBC with `iv = key[..16]`, PKCS#7
//! padding to 32-byte blocks, and the frame `random(16) ‖ be32(len) ‖ msg ‖ AppId`.

use aes::Aes256;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use subtle::ConstantTimeEq;

use crate::{Error, Result};

/// WeChat pads to 32 bytes, not to the AES block size.
const PAD_BLOCK: usize = 32;
const RANDOM_LEN: usize = 16;
const LEN_FIELD: usize = 4;

/// Base64 that ignores non-zero unused bits in the last character: real EncodingAESKeys have them.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Decodes the 43-character EncodingAESKey (消息加解密密钥) into the 32-byte AES key.
///
/// The key is `base64(key)` without its `=`; its last character carries two unused bits that are
/// usually non-zero, which strict decoders reject. This decoder ignores them, as WeChat does.
pub fn decode_aes_key(encoding_aes_key: &str) -> Result<[u8; 32]> {
    if encoding_aes_key.len() != 43 {
        return Err(Error::Config(format!(
            "EncodingAESKey must be 43 characters, got {}",
            encoding_aes_key.len()
        )));
    }
    let mut padded = String::with_capacity(44);
    padded.push_str(encoding_aes_key);
    padded.push('=');
    let bytes = LENIENT
        .decode(padded)
        .map_err(|_| Error::Config("EncodingAESKey is not valid base64".into()))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| Error::Config("EncodingAESKey does not decode to 32 bytes".into()))
}

/// Encrypts and decrypts safe-mode (安全模式) message bodies for one official account.
#[derive(Clone)]
pub struct MessageCrypto {
    key: [u8; 32],
    /// The key's AES round keys, expanded once rather than for every message.
    cipher: Aes256,
    app_id: String,
}

impl std::fmt::Debug for MessageCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageCrypto")
            .field("key", &"<redacted>")
            .field("app_id", &self.app_id)
            .finish()
    }
}

fn crypto_err(reason: &str) -> Error {
    Error::Crypto(reason.to_owned())
}

impl MessageCrypto {
    /// A crypto for the account `app_id` with its EncodingAESKey (see [`decode_aes_key`]).
    pub fn new(encoding_aes_key: &str, app_id: &str) -> Result<Self> {
        let key = decode_aes_key(encoding_aes_key)?;
        Ok(MessageCrypto {
            cipher: Aes256::new(&key.into()),
            key,
            app_id: app_id.to_owned(),
        })
    }

    /// The AppId that encrypted messages must carry.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Encrypts `plaintext` for an `<Encrypt>` element with a fresh random prefix.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        self.encrypt_with_random(plaintext, rand::random())
    }

    /// Encrypts with the given 16-byte random prefix (deterministic; for tests and vectors).
    ///
    /// Output: `base64(AES-256-CBC(key, iv = key[..16], PKCS#7₃₂(random ‖ be32(len) ‖ plaintext ‖ AppId)))`.
    pub fn encrypt_with_random(&self, plaintext: &[u8], random: [u8; 16]) -> String {
        let framed = RANDOM_LEN + LEN_FIELD + plaintext.len() + self.app_id.len();
        let pad = PAD_BLOCK - framed % PAD_BLOCK; // 1..=32: a whole block when aligned
        let mut buf = Vec::with_capacity(framed + pad);
        buf.extend_from_slice(&random);
        // WeChat's frame has a 32-bit length; messages are capped far below 4 GiB by the HTTP layer.
        let len = u32::try_from(plaintext.len()).expect("plaintext longer than 4 GiB");
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(plaintext);
        buf.extend_from_slice(self.app_id.as_bytes());
        buf.resize(framed + pad, pad as u8);

        let n = buf.len();
        let ct = cbc::Encryptor::<Aes256>::inner_iv_init(self.cipher.clone(), self.iv().into())
            .encrypt_padded_mut::<NoPadding>(&mut buf, n)
            .expect("buffer is a multiple of the block size");
        base64_simd::STANDARD.encode_to_string(ct)
    }

    /// Decrypts the text of an `<Encrypt>` element and returns the inner message.
    ///
    /// Rejects (as `Error::Crypto`, with a short reason and never key or plaintext): bad base64,
    /// a length that is not a whole number of AES blocks, bad PKCS#7 padding (value 1..=32, all
    /// pad bytes equal), a length field beyond the frame, and an AppId that is not ours.
    pub fn decrypt(&self, encrypt_b64: &str) -> Result<Vec<u8>> {
        let mut buf = base64_simd::STANDARD
            .decode_to_vec(encrypt_b64.trim())
            .map_err(|_| crypto_err("invalid base64"))?;
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err(crypto_err("ciphertext is not a whole number of blocks"));
        }
        let plain = cbc::Decryptor::<Aes256>::inner_iv_init(self.cipher.clone(), self.iv().into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| crypto_err("ciphertext is not a whole number of blocks"))?;

        let pad = usize::from(plain[plain.len() - 1]);
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(crypto_err("bad padding"));
        }
        let body_len = plain.len() - pad;
        // Constant-time over the pad bytes so their content does not change the timing.
        let pad_ok = plain[body_len..]
            .iter()
            .fold(subtle::Choice::from(1), |acc, b| {
                acc & b.ct_eq(&(pad as u8))
            });
        if !bool::from(pad_ok) {
            return Err(crypto_err("bad padding"));
        }
        let body = &plain[..body_len];
        if body.len() < RANDOM_LEN + LEN_FIELD {
            return Err(crypto_err("frame too short"));
        }
        let content = &body[RANDOM_LEN..];
        let msg_len = u32::from_be_bytes([content[0], content[1], content[2], content[3]]) as usize;
        let rest = &content[LEN_FIELD..];
        if msg_len > rest.len() {
            return Err(crypto_err("length field out of bounds"));
        }
        let (msg, from_app_id) = rest.split_at(msg_len);
        if !bool::from(from_app_id.ct_eq(self.app_id.as_bytes())) {
            return Err(crypto_err("AppId mismatch"));
        }
        Ok(msg.to_vec())
    }

    fn iv(&self) -> &[u8; 16] {
        self.key[..16].try_into().expect("key is 32 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    #[test]
    fn decodes_keys_with_nonzero_trailing_bits() {
        // 'G' (index 6) and 'Z' (25) and 'z' (51) leave non-zero unused bits; a strict decoder fails.
        for key in [
            KEY,
            "q8Vv3tKx0JmR7pLw2Hn5Ys9Dc4Fb6Ge1Ua8Ti0Ok3MZ",
            "Zx0cV9bN8mA7sD6fG5hJ4kL3qW2eR1tY0uI9oP8aS7z",
        ] {
            assert!(
                STANDARD.decode(format!("{key}=")).is_err(),
                "strict decoder accepted {key}"
            );
            let k = decode_aes_key(key).unwrap();
            // Re-encoding gives the canonical form: same first 42 characters.
            assert_eq!(STANDARD.encode(k)[..42], key[..42]);
        }
        // A canonical key ('A': zero unused bits) decodes too.
        let k = decode_aes_key("Hk2Lm4Np6Qr8St0Uv2Wx4Yz6Ab8Cd0Ef2Gh4Ij6KlmA").unwrap();
        assert_eq!(
            STANDARD.encode(k),
            "Hk2Lm4Np6Qr8St0Uv2Wx4Yz6Ab8Cd0Ef2Gh4Ij6KlmA="
        );
    }

    #[test]
    fn rejects_bad_keys_as_config_errors() {
        for bad in [
            "",
            "short",
            &KEY[..42],
            &format!("{KEY}="),
            &format!("{KEY}A"),
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDE!G",
        ] {
            assert!(
                matches!(decode_aes_key(bad), Err(Error::Config(_))),
                "accepted {bad:?}"
            );
        }
        assert!(matches!(
            MessageCrypto::new("nope", "wx1"),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn round_trips_every_length_around_the_pad_block() {
        let c = MessageCrypto::new(KEY, "wxb11529c136998cb6").unwrap();
        for n in 0..100 {
            let msg: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let ct = c.encrypt(&msg);
            let raw = STANDARD.decode(&ct).unwrap();
            assert_eq!(raw.len() % 32, 0);
            let framed = 16 + 4 + n + c.app_id().len();
            assert_eq!(raw.len(), framed + (32 - framed % 32), "n={n}");
            assert_eq!(c.decrypt(&ct).unwrap(), msg);
        }
    }

    #[test]
    fn random_prefix_makes_ciphertexts_differ() {
        let c = MessageCrypto::new(KEY, "wx1").unwrap();
        assert_ne!(c.encrypt(b"same"), c.encrypt(b"same"));
        assert_eq!(
            c.encrypt_with_random(b"same", [9; 16]),
            c.encrypt_with_random(b"same", [9; 16])
        );
    }

    #[test]
    fn wrong_app_id_and_wrong_key_are_rejected() {
        let a = MessageCrypto::new(KEY, "wxAAAA").unwrap();
        let b = MessageCrypto::new(KEY, "wxBBBB").unwrap();
        let prefix = MessageCrypto::new(KEY, "wxAAA").unwrap();
        let ct = a.encrypt(b"<xml/>");
        assert!(matches!(b.decrypt(&ct), Err(Error::Crypto(m)) if m == "AppId mismatch"));
        assert!(matches!(prefix.decrypt(&ct), Err(Error::Crypto(_))));
        let other_key =
            MessageCrypto::new("q8Vv3tKx0JmR7pLw2Hn5Ys9Dc4Fb6Ge1Ua8Ti0Ok3MZ", "wxAAAA").unwrap();
        assert!(matches!(other_key.decrypt(&ct), Err(Error::Crypto(_))));
    }

    #[test]
    fn garbage_input_is_a_crypto_error_not_a_panic() {
        let c = MessageCrypto::new(KEY, "wx1").unwrap();
        for bad in [
            "",
            "!!!!",
            "AAAA",
            "AAAAAAAAAAAAAAAAAAAAAA==",
            &STANDARD.encode([0u8; 17]),
            &STANDARD.encode([0u8; 32]),
        ] {
            assert!(
                matches!(c.decrypt(bad), Err(Error::Crypto(_))),
                "accepted {bad:?}"
            );
        }
    }

    #[test]
    fn bit_flips_in_the_last_two_blocks_are_rejected_and_none_panic() {
        // CBC has no MAC (msg_signature is the integrity check); still, a flipped bit must never
        // panic, and flips in the last block break the padding/AppId checks.
        let c = MessageCrypto::new(KEY, "wxb11529c136998cb6").unwrap();
        let ct = STANDARD
            .decode(c.encrypt_with_random(b"<xml><A>1</A></xml>", [1; 16]))
            .unwrap();
        let last_block = ct.len() - 16;
        for i in 0..ct.len() * 8 {
            let mut t = ct.clone();
            t[i / 8] ^= 1 << (i % 8);
            let r = c.decrypt(&STANDARD.encode(&t));
            if i / 8 >= last_block - 16 {
                assert!(r.is_err(), "bit {i} in the last two blocks went unnoticed");
            }
        }
    }

    #[test]
    fn debug_never_prints_the_key() {
        let c = MessageCrypto::new(KEY, "wx1").unwrap();
        let dbg = format!("{c:?}");
        assert!(dbg.contains("wx1") && dbg.contains("redacted"));
        let key = decode_aes_key(KEY).unwrap();
        assert!(
            !dbg.contains(KEY)
                && !dbg.contains(&hex::encode(key))
                && !dbg.contains(&format!("{:?}", &key[0..4]))
        );
    }
}
