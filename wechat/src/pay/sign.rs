//! 签名生成 (our requests), 小程序调起支付 `paySign`, and 签名验证 of WeChat Pay's answers and
//! notifications, scheme `WECHATPAY2-SHA256-RSA2048` (RSA PKCS#1 v1.5 over SHA-256).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::certs::{MerchantKey, PlatformKeys};
use super::Result;

/// The signature scheme of `Authorization` and the only accepted `Wechatpay-Signature-Type`.
pub const SIGNATURE_SCHEMA: &str = "WECHATPAY2-SHA256-RSA2048";
/// 应答/通知签名 header.
pub const HEADER_SIGNATURE: &str = "Wechatpay-Signature";
/// 应答/通知时间戳 header (unix seconds).
pub const HEADER_TIMESTAMP: &str = "Wechatpay-Timestamp";
/// 应答/通知随机串 header.
pub const HEADER_NONCE: &str = "Wechatpay-Nonce";
/// 微信支付公钥ID or 平台证书序列号 of the signing key (and, in requests, of the key WeChat Pay
/// should sign with).
pub const HEADER_SERIAL: &str = "Wechatpay-Serial";
/// Signature type header; absent means [`SIGNATURE_SCHEMA`].
pub const HEADER_SIGNATURE_TYPE: &str = "Wechatpay-Signature-Type";
/// An answer or notification whose timestamp is further than this from now is refused
/// (WeChat Pay's guidance: 5 minutes).
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Why a signature of WeChat Pay was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required `Wechatpay-*` header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A `Wechatpay-*` header appears twice: ambiguous, refused.
    #[error("duplicate header {0}")]
    DuplicateHeader(&'static str),
    /// A `Wechatpay-*` header value is not visible ASCII.
    #[error("unreadable header {0}")]
    InvalidHeader(&'static str),
    /// `Wechatpay-Signature-Type` other than `WECHATPAY2-SHA256-RSA2048`.
    #[error("unsupported signature type {0:?}")]
    UnsupportedSignatureType(String),
    /// `Wechatpay-Timestamp` is not a number of seconds.
    #[error("bad timestamp")]
    InvalidTimestamp,
    /// `Wechatpay-Timestamp` more than 5 minutes from now (replay or clock skew).
    #[error("timestamp {timestamp} is more than 5 minutes from now ({now})")]
    StaleTimestamp { timestamp: i64, now: i64 },
    /// `Wechatpay-Serial` names no key we have (refresh the certificates, or a forgery).
    #[error("unknown serial {0:?}")]
    UnknownSerial(String),
    /// The certificate named by `Wechatpay-Serial` is not valid now.
    #[error("certificate {0} is not valid now")]
    CertificateNotValid(String),
    /// A `WECHATPAY/SIGNTEST/` probe: WeChat Pay checks that merchants refuse bad signatures.
    #[error("signature probe (WECHATPAY/SIGNTEST)")]
    ProbeSignature,
    /// The signature is not base64.
    #[error("signature is not base64")]
    MalformedSignature,
    /// The signature does not match the body, timestamp and nonce.
    #[error("signature mismatch")]
    BadSignature,
}

/// 请求签名串: `METHOD\nURL\ntimestamp\nnonce\nbody\n`, where URL is the absolute path with the
/// query string (`/v3/pay/transactions/out-trade-no/1217?mchid=1230000109`) and body is empty
/// for a GET.
pub fn request_message(
    method: &str,
    url_path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(method.len() + url_path_and_query.len() + body.len() + 64);
    m.extend_from_slice(method.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(url_path_and_query.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(timestamp.to_string().as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// 应答/通知验签名串: `timestamp\nnonce\nbody\n` over the raw body bytes, with the timestamp
/// exactly as the header has it.
pub fn answer_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// The `Authorization` header of a request (签名生成):
/// `WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",timestamp="…",serial_no="…"`.
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    mch_id: &str,
    merchant_serial: &str,
    key: &MerchantKey,
    method: &str,
    url_path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Result<String> {
    let signature = key.sign(&request_message(
        method,
        url_path_and_query,
        timestamp,
        nonce,
        body,
    ))?;
    Ok(format!(
        "{SIGNATURE_SCHEMA} mchid=\"{mch_id}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{merchant_serial}\""
    ))
}

/// The parameters of `wx.requestPayment` (小程序调起支付), serialised with exactly the keys
/// `timeStamp`, `nonceStr`, `package`, `signType`, `paySign`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MiniProgramPayParams {
    /// Unix seconds, as a string.
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=…`.
    pub package: String,
    /// Always `RSA`.
    #[serde(rename = "signType")]
    pub sign_type: String,
    /// RSA SHA-256 over `appId\ntimeStamp\nnonceStr\npackage\n`, base64.
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

impl MiniProgramPayParams {
    /// Sign for `app_id` (the mini-program's AppId, the one of 下单) and `prepay_id` at `time_stamp`
    /// (unix seconds) with `nonce_str`.
    pub fn sign(
        app_id: &str,
        prepay_id: &str,
        time_stamp: i64,
        nonce_str: &str,
        key: &MerchantKey,
    ) -> Result<Self> {
        let time_stamp = time_stamp.to_string();
        let package = format!("prepay_id={prepay_id}");
        let message = format!("{app_id}\n{time_stamp}\n{nonce_str}\n{package}\n");
        Ok(Self {
            pay_sign: key.sign(message.as_bytes())?,
            time_stamp,
            nonce_str: nonce_str.to_owned(),
            package,
            sign_type: "RSA".into(),
        })
    }
}

/// The `Wechatpay-*` headers of an answer or a notification, read case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub signature: String,
    /// As sent (it is part of the signed message).
    pub timestamp: String,
    pub nonce: String,
    pub serial: String,
}

impl SignatureHeaders {
    /// From (name, value) pairs, header names in any case. A missing or repeated header, or an
    /// unsupported `Wechatpay-Signature-Type`, is refused.
    pub fn from_pairs<'a, I>(pairs: I) -> Result<Self, VerifyError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut found: [Option<&'a str>; 5] = [None; 5];
        const NAMES: [&str; 5] = [
            HEADER_SIGNATURE,
            HEADER_TIMESTAMP,
            HEADER_NONCE,
            HEADER_SERIAL,
            HEADER_SIGNATURE_TYPE,
        ];
        for (name, value) in pairs {
            let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) else {
                continue;
            };
            if found[i].is_some() {
                return Err(VerifyError::DuplicateHeader(NAMES[i]));
            }
            found[i] = Some(value.trim_matches(|c: char| c == ' ' || c == '\t'));
        }
        if let Some(t) = found[4] {
            if t != SIGNATURE_SCHEMA {
                return Err(VerifyError::UnsupportedSignatureType(t.to_owned()));
            }
        }
        let take = |i: usize| -> Result<String, VerifyError> {
            let v = found[i]
                .filter(|v| !v.is_empty())
                .ok_or(VerifyError::MissingHeader(NAMES[i]))?;
            if !v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                return Err(VerifyError::InvalidHeader(NAMES[i]));
            }
            Ok(v.to_owned())
        };
        Ok(Self {
            signature: take(0)?,
            timestamp: take(1)?,
            nonce: take(2)?,
            serial: take(3)?,
        })
    }

    /// From an `http::HeaderMap` (reqwest's and axum's). A value that is not visible ASCII is
    /// refused.
    pub fn from_header_map(headers: &reqwest::header::HeaderMap) -> Result<Self, VerifyError> {
        let mut pairs = Vec::with_capacity(5);
        for (name, value) in headers {
            let name = name.as_str();
            if !name.starts_with("wechatpay-") {
                continue;
            }
            match value.to_str() {
                Ok(v) => pairs.push((name, v)),
                Err(_) => {
                    // Keep the (canonical) name for the error.
                    let canonical = [
                        HEADER_SIGNATURE,
                        HEADER_TIMESTAMP,
                        HEADER_NONCE,
                        HEADER_SERIAL,
                        HEADER_SIGNATURE_TYPE,
                    ]
                    .into_iter()
                    .find(|n| n.eq_ignore_ascii_case(name));
                    if let Some(n) = canonical {
                        return Err(VerifyError::InvalidHeader(n));
                    }
                }
            }
        }
        Self::from_pairs(pairs)
    }

    /// Whether the headers carry a signature at all (error answers of WeChat Pay's gateway may
    /// not).
    pub fn present_in(headers: &reqwest::header::HeaderMap) -> bool {
        headers.contains_key(HEADER_SIGNATURE)
    }
}

impl PlatformKeys {
    /// 验证签名 of an answer or notification: `body` is the RAW body, `now` unix seconds.
    /// Checks, in order: the probe marker, the timestamp (±5 minutes, no overflow), the serial (a
    /// key we have, valid now), then the RSA signature. Never panics on any input.
    pub fn verify(
        &self,
        headers: &SignatureHeaders,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        if headers.signature.starts_with("WECHATPAY/SIGNTEST/") {
            return Err(VerifyError::ProbeSignature);
        }
        let ts = &headers.timestamp;
        if ts.is_empty() || ts.len() > 18 || !ts.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VerifyError::InvalidTimestamp);
        }
        let timestamp: i64 = ts.parse().map_err(|_| VerifyError::InvalidTimestamp)?;
        if timestamp.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
            return Err(VerifyError::StaleTimestamp { timestamp, now });
        }
        let key = self
            .get(&headers.serial)
            .ok_or_else(|| VerifyError::UnknownSerial(headers.serial.clone()))?;
        if !key.valid_at(now) {
            return Err(VerifyError::CertificateNotValid(key.serial.clone()));
        }
        let sig = STANDARD
            .decode(&headers.signature)
            .map_err(|_| VerifyError::MalformedSignature)?;
        if key
            .key
            .verify(&answer_message(ts, &headers.nonce, body), &sig)
        {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    /// [`verify`](Self::verify) with the headers of an `http::HeaderMap`.
    pub fn verify_header_map(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        self.verify(&SignatureHeaders::from_header_map(headers)?, body, now)
    }

    /// [`verify`](Self::verify) with (name, value) header pairs.
    pub fn verify_pairs<'a, I>(&self, headers: I, body: &[u8], now: i64) -> Result<(), VerifyError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        self.verify(&SignatureHeaders::from_pairs(headers)?, body, now)
    }
}
