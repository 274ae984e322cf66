//! Key material of WeChat Pay v3: the merchant's API private key (商户API私钥), the API v3 key
//! (APIv3密钥), and the platform side that signs WeChat's answers: 微信支付公钥 (public-key mode)
//! and 微信支付平台证书 (certificate mode).
//!
//! X.509 is read with `x509-cert` (RustCrypto, `default-features = false`): it only adds `der`'s
//! derive macro and `flagset` to `der`/`spki`/`const-oid`, which the tree already has, while
//! `x509-parser` would bring `nom`, `asn1-rs`, `der-parser`, `oid-registry` and more. We need three
//! fields of a certificate (serial, validity, public key), not path validation: a platform
//! certificate is trusted because it arrives encrypted with our API v3 key.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};
use x509_cert::der::asn1::{ObjectIdentifier, UintRef};
use x509_cert::der::{Decode, Reader, SliceReader};
use x509_cert::spki::SubjectPublicKeyInfoRef;

use super::{PayError, Result};

/// `rsaEncryption` (PKCS#1): the only key algorithm WeChat Pay v3 uses.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The body of one PEM block with `label`, decoded.
pub(crate) fn pem_decode(pem: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(start) = pem.find(&begin) else {
        if pem.contains("-----BEGIN RSA PRIVATE KEY-----") && label == "PRIVATE KEY" {
            return Err(PayError::Config(
                "the merchant key is PKCS#1 (BEGIN RSA PRIVATE KEY): use the PKCS#8 apiclient_key.pem, or convert it with `openssl pkcs8 -topk8 -nocrypt`".into(),
            ));
        }
        return Err(PayError::Config(format!("no `{begin}` block in the PEM")));
    };
    let rest = &pem[start + begin.len()..];
    let stop = rest
        .find(&end)
        .ok_or_else(|| PayError::Config(format!("no `{end}` line in the PEM")))?;
    let b64: String = rest[..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(b64)
        .map_err(|e| PayError::Config(format!("bad base64 in the PEM {label}: {e}")))
}

/// 商户APIv3密钥: the 32-byte AES-256-GCM key of notifications and certificates. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiV3Key([u8; 32]);

impl ApiV3Key {
    /// The key as set in the merchant platform: exactly 32 ASCII characters (32 bytes).
    pub fn new(key: &str) -> Result<Self> {
        let bytes: [u8; 32] = key.as_bytes().try_into().map_err(|_| {
            PayError::Config(format!(
                "the API v3 key must be 32 bytes, got {}",
                key.len()
            ))
        })?;
        Ok(Self(bytes))
    }

    /// The raw key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiV3Key(<redacted>)")
    }
}

/// 商户API私钥 (`apiclient_key.pem`, PKCS#8): signs requests (签名生成) and `paySign`.
/// Cheap to clone; `Debug` hides it.
#[derive(Clone)]
pub struct MerchantKey {
    pair: Arc<RsaKeyPair>,
}

impl std::fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerchantKey")
            .field("bits", &(self.pair.public().modulus_len() * 8))
            .finish_non_exhaustive()
    }
}

impl MerchantKey {
    /// From the PEM text of a PKCS#8 RSA private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        Self::from_pkcs8_der(&pem_decode(pem, "PRIVATE KEY")?)
    }

    /// From PKCS#8 DER. RSA 2048–4096 bits (ring's limits for signing).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let pair = RsaKeyPair::from_pkcs8(der)
            .map_err(|e| PayError::Config(format!("unusable merchant private key: {e}")))?;
        Ok(Self {
            pair: Arc::new(pair),
        })
    }

    /// RSA PKCS#1 v1.5 SHA-256 signature of `message`, base64 (deterministic).
    pub fn sign(&self, message: &[u8]) -> Result<String> {
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message,
                &mut sig,
            )
            .map_err(|_| PayError::Crypto("RSA signing failed".into()))?;
        Ok(STANDARD.encode(sig))
    }

    /// The matching public key (what WeChat Pay holds to verify our requests).
    pub fn public_key(&self) -> RsaPublicKey {
        RsaPublicKey {
            pkcs1: self.pair.public().as_ref().into(),
        }
    }
}

/// An RSA public key (at least 2048 bits) that verifies `SHA256-RSA2048` signatures. Cheap to
/// clone.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    /// `RSAPublicKey` DER (PKCS#1), which is what ring verifies with.
    pkcs1: Arc<[u8]>,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPublicKey")
            .field("der_len", &self.pkcs1.len())
            .finish()
    }
}

impl RsaPublicKey {
    /// From the PEM text of a SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), as the
    /// 微信支付公钥 `pub_key.pem` is downloaded.
    pub fn from_spki_pem(pem: &str) -> Result<Self> {
        Self::from_spki_der(&pem_decode(pem, "PUBLIC KEY")?)
    }

    /// From SubjectPublicKeyInfo DER.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let spki = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| PayError::Config(format!("bad SubjectPublicKeyInfo: {e}")))?;
        if spki.algorithm.oid != RSA_ENCRYPTION {
            return Err(PayError::Config(format!(
                "not an RSA public key (algorithm {})",
                spki.algorithm.oid
            )));
        }
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| PayError::Config("public key bit string is not whole bytes".into()))?;
        Self::from_pkcs1_der(bits)
    }

    /// From `RSAPublicKey` DER (PKCS#1 `SEQUENCE { n INTEGER, e INTEGER }`).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self> {
        let bad = |e: x509_cert::der::Error| PayError::Config(format!("bad RSAPublicKey: {e}"));
        let mut reader = SliceReader::new(der).map_err(bad)?;
        let n_len = reader
            .sequence(|r| {
                let n = UintRef::decode(r)?;
                let _e = UintRef::decode(r)?;
                Ok(n.as_bytes().len())
            })
            .map_err(bad)?;
        if !reader.is_finished() {
            return Err(PayError::Config("trailing bytes after RSAPublicKey".into()));
        }
        if n_len < 256 {
            return Err(PayError::Config(format!(
                "RSA key of {} bits: WeChat Pay uses 2048",
                n_len * 8
            )));
        }
        Ok(Self { pkcs1: der.into() })
    }

    /// Whether `sig` is a valid RSA PKCS#1 v1.5 SHA-256 signature of `message`.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &*self.pkcs1)
            .verify(message, sig)
            .is_ok()
    }
}

/// Whether a platform key is the 微信支付公钥 or a 平台证书.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformKeyKind {
    /// 微信支付公钥 (public-key mode): no expiry.
    PublicKey,
    /// 微信支付平台证书 with its validity (unix seconds).
    Certificate { not_before: i64, not_after: i64 },
}

/// One key WeChat Pay signs with, named by the `Wechatpay-Serial` it comes with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformKey {
    /// `PUB_KEY_ID_…`, or the certificate serial in upper-case hex.
    pub serial: String,
    pub kind: PlatformKeyKind,
    pub key: RsaPublicKey,
}

impl PlatformKey {
    /// The 微信支付公钥 with its id (`PUB_KEY_ID_…`) and `pub_key.pem` text.
    pub fn public_key(id: impl Into<String>, spki_pem: &str) -> Result<Self> {
        let serial = id.into();
        if serial.is_empty() {
            return Err(PayError::Config("empty WeChat Pay public key id".into()));
        }
        Ok(Self {
            serial,
            kind: PlatformKeyKind::PublicKey,
            key: RsaPublicKey::from_spki_pem(spki_pem)?,
        })
    }

    /// A 平台证书 from its PEM text (`-----BEGIN CERTIFICATE-----`).
    pub fn certificate_pem(pem: &str) -> Result<Self> {
        Self::certificate_der(&pem_decode(pem, "CERTIFICATE")?)
    }

    /// A 平台证书 from X.509 DER: serial (upper-case hex, no leading zero bytes), validity and
    /// RSA public key. The issuer chain is not checked (see the module doc).
    pub fn certificate_der(der: &[u8]) -> Result<Self> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| PayError::Config(format!("bad X.509 certificate: {e}")))?;
        let tbs = &cert.tbs_certificate;
        let serial_bytes = tbs.serial_number.as_bytes();
        let first = serial_bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(serial_bytes.len());
        let serial = hex::encode_upper(&serial_bytes[first..]);
        if serial.is_empty() {
            return Err(PayError::Config("certificate serial is zero".into()));
        }
        let secs = |t: &x509_cert::time::Time| {
            i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
        };
        let not_before = secs(&tbs.validity.not_before);
        let not_after = secs(&tbs.validity.not_after);
        let spki = &tbs.subject_public_key_info;
        if spki.algorithm.oid != RSA_ENCRYPTION {
            return Err(PayError::Config(format!(
                "certificate {serial} has no RSA key (algorithm {})",
                spki.algorithm.oid
            )));
        }
        let bits = spki.subject_public_key.as_bytes().ok_or_else(|| {
            PayError::Config("certificate public key bit string is not whole bytes".into())
        })?;
        Ok(Self {
            serial,
            kind: PlatformKeyKind::Certificate {
                not_before,
                not_after,
            },
            key: RsaPublicKey::from_pkcs1_der(bits)?,
        })
    }

    /// Usable at `now` (unix seconds): always for a public key, within its validity for a
    /// certificate.
    pub fn valid_at(&self, now: i64) -> bool {
        match self.kind {
            PlatformKeyKind::PublicKey => true,
            PlatformKeyKind::Certificate {
                not_before,
                not_after,
            } => not_before <= now && now <= not_after,
        }
    }

    /// Expiry (unix seconds) of a certificate; None for a public key.
    pub fn not_after(&self) -> Option<i64> {
        match self.kind {
            PlatformKeyKind::PublicKey => None,
            PlatformKeyKind::Certificate { not_after, .. } => Some(not_after),
        }
    }
}

/// The platform keys WeChat Pay's answers and notifications are verified with (验签), by serial.
/// Verification is [`PlatformKeys::verify`] (in `sign.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlatformKeys {
    keys: Vec<PlatformKey>,
}

impl PlatformKeys {
    /// No key: every verification fails with `UnknownSerial` until one is added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a key, replacing one with the same serial.
    pub fn insert(&mut self, key: PlatformKey) {
        self.keys.retain(|k| k.serial != key.serial);
        self.keys.push(key);
    }

    /// Add the 微信支付公钥 (`PUB_KEY_ID_…` and `pub_key.pem`).
    pub fn add_public_key(&mut self, id: impl Into<String>, spki_pem: &str) -> Result<()> {
        self.insert(PlatformKey::public_key(id, spki_pem)?);
        Ok(())
    }

    /// Add a 平台证书 from PEM; returns its serial.
    pub fn add_certificate_pem(&mut self, pem: &str) -> Result<String> {
        let key = PlatformKey::certificate_pem(pem)?;
        let serial = key.serial.clone();
        self.insert(key);
        Ok(serial)
    }

    /// Drop certificates that expired before `now`.
    pub fn remove_expired(&mut self, now: i64) {
        self.keys
            .retain(|k| k.not_after().is_none_or(|not_after| now <= not_after));
    }

    /// The key for a `Wechatpay-Serial` value: an exact match, or a certificate serial in any
    /// letter case.
    pub fn get(&self, serial: &str) -> Option<&PlatformKey> {
        self.keys.iter().find(|k| k.serial == serial).or_else(|| {
            self.keys.iter().find(|k| {
                matches!(k.kind, PlatformKeyKind::Certificate { .. })
                    && k.serial.eq_ignore_ascii_case(serial)
            })
        })
    }

    /// The id of the 微信支付公钥, if there is one: requests then carry it in `Wechatpay-Serial`.
    pub fn public_key_id(&self) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| k.kind == PlatformKeyKind::PublicKey)
            .map(|k| k.serial.as_str())
    }

    /// Every key, in insertion order.
    pub fn keys(&self) -> &[PlatformKey] {
        &self.keys
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No key at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
