//! 微信支付 API v3 (WeChat Pay v3) for a mini-program merchant (直连商户, JSAPI/小程序支付):
//! request signing (签名生成), answer and notification verification (签名验证), the mini-program's
//! `paySign` (小程序调起支付签名), notification decryption (回调报文解密, AEAD_AES_256_GCM), the
//! API client ([`PayClient`]: JSAPI下单, 商户订单号查询订单, 关闭订单, 下载平台证书, 申请交易账单 and
//! 下载账单) and the trade bill parser.
//!
//! Crypto: RSA PKCS#1 v1.5 with SHA-256 through `ring` (not the `rsa` crate: RUSTSEC-2023-0071),
//! AES-256-GCM through `aes-gcm`. X.509 platform certificates are read with `x509-cert`.
//!
//! Keys: the merchant's API private key ([`MerchantKey`], PKCS#8 PEM `apiclient_key.pem`) signs
//! every request. WeChat's answers and notifications are verified with the platform key material
//! in [`PlatformKeys`]: the 微信支付公钥 (public-key mode, id `PUB_KEY_ID_…`) and/or 平台证书
//! (certificate mode, downloaded with [`PayClient::refresh_certificates`]). The key is chosen by
//! the `Wechatpay-Serial` header.
//!
//! Errors are [`PayError`], separate from [`crate::Error`]: WeChat Pay's errors are strings
//! (`{"code","message"}`) with HTTP statuses, not `errcode`s, and "the answer could not be
//! verified" ([`PayError::Unverified`]) must never be confused with a failure.

mod bill;
mod certs;
mod client;
mod notify;
mod sign;

pub use bill::{
    check_bill_hash, parse_trade_bill, yuan_to_fen, BillInfo, TradeBill, TradeBillRow,
    TradeBillSummary,
};
pub use certs::{ApiV3Key, MerchantKey, PlatformKey, PlatformKeyKind, PlatformKeys, RsaPublicKey};
pub use client::{
    format_beijing_time, JsapiOrder, MerchantConfig, PayClient, TransactionNotification,
};
pub use notify::{
    decrypt_aes_256_gcm, encrypt_aes_256_gcm, parse_notification, EncryptedResource, Notification,
    NotifyAnswer, Payer, TradeState, Transaction, TransactionAmount,
};
pub use sign::{
    answer_message, authorization, request_message, MiniProgramPayParams, SignatureHeaders,
    VerifyError, HEADER_NONCE, HEADER_SERIAL, HEADER_SIGNATURE, HEADER_SIGNATURE_TYPE,
    HEADER_TIMESTAMP, MAX_CLOCK_SKEW_SECS, SIGNATURE_SCHEMA,
};

/// Paths of the WeChat Pay v3 APIs, relative to the API base URL, without a leading slash. The
/// fake records calls under these names (`fake.calls_to(pay::api::JSAPI)`); `{out_trade_no}` is
/// recorded in the call's `query` under the key `out_trade_no`.
pub mod api {
    /// JSAPI/小程序下单 (`POST`)
    pub const JSAPI: &str = "v3/pay/transactions/jsapi";
    /// 商户订单号查询订单 (`GET …/{out_trade_no}?mchid=`)
    pub const QUERY_BY_OUT_TRADE_NO: &str = "v3/pay/transactions/out-trade-no/{out_trade_no}";
    /// 关闭订单 (`POST …/{out_trade_no}/close`, answers 204)
    pub const CLOSE: &str = "v3/pay/transactions/out-trade-no/{out_trade_no}/close";
    /// 下载平台证书 (`GET`)
    pub const CERTIFICATES: &str = "v3/certificates";
    /// 申请交易账单 (`GET ?bill_date=&bill_type=`)
    pub const TRADEBILL: &str = "v3/bill/tradebill";
    /// 下载账单 (`GET`, the `download_url` of 申请交易账单; the answer is not signed)
    pub const BILL_DOWNLOAD: &str = "v3/billdownload/file";
}

/// Error codes of WeChat Pay v3 (`code` of an error answer) the client or the app act on.
pub mod code {
    /// 签名错误 (HTTP 401): our request signature was refused.
    pub const SIGN_ERROR: &str = "SIGN_ERROR";
    /// 参数错误 (HTTP 400).
    pub const PARAM_ERROR: &str = "PARAM_ERROR";
    /// 无效请求 (HTTP 400), e.g. the same out_trade_no with different parameters.
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    /// 订单已支付: surfaces as [`PayError::OrderPaid`](super::PayError::OrderPaid).
    pub const ORDER_PAID: &str = "ORDER_PAID";
    /// The v2 spelling of 订单已支付, also mapped to `OrderPaid`.
    pub const ORDERPAID: &str = "ORDERPAID";
    /// 订单已关闭 (HTTP 400).
    pub const ORDER_CLOSED: &str = "ORDER_CLOSED";
    /// 订单不存在 (HTTP 404).
    pub const ORDER_NOT_EXIST: &str = "ORDER_NOT_EXIST";
    /// 账单不存在 (HTTP 400): no trade on that day, or the bill is not generated yet.
    pub const NO_STATEMENT_EXIST: &str = "NO_STATEMENT_EXIST";
    /// 系统错误 (HTTP 500): retry with the same parameters.
    pub const SYSTEM_ERROR: &str = "SYSTEM_ERROR";
    /// 频率超限 (HTTP 429).
    pub const FREQUENCY_LIMITED: &str = "FREQUENCY_LIMITED";
    /// The `code` of a notification answer that refuses it (回调通知应答).
    pub const FAIL: &str = "FAIL";
}

/// Everything that can go wrong with WeChat Pay (a separate type from [`crate::Error`]).
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// WeChat Pay answered an error `{"code","message"}` with this HTTP status.
    #[error("wechat pay error (HTTP {status}) {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// 订单已支付 (`ORDER_PAID`): the order cannot be closed (or prepaid again) because it is paid.
    #[error("order already paid: {message}")]
    OrderPaid { message: String },
    /// The answer's signature did not verify: it may be forged or damaged, and the RESULT OF THE
    /// CALL IS UNKNOWN (the order may have been created or closed). Query before acting.
    #[error("wechat pay answer not verified, result unknown: {0}")]
    Unverified(VerifyError),
    /// A notification (or other signed message) whose signature did not verify: refuse it.
    #[error("wechat pay signature refused: {0}")]
    Verify(#[from] VerifyError),
    /// Transport failure (connect, timeout, TLS) or a non-JSON error status. For a POST the
    /// outcome is unknown.
    #[error("wechat pay http error: {0}")]
    Http(String),
    /// A body that could not be decoded or lacks a required field.
    #[error("wechat pay decode error: {0}")]
    Decode(String),
    /// AES-256-GCM decryption failed (wrong API v3 key, tampered ciphertext or nonce).
    #[error("wechat pay crypto error: {0}")]
    Crypto(String),
    /// A request refused before sending (description too long, bad out_trade_no, ...).
    #[error("invalid wechat pay request: {0}")]
    InvalidRequest(String),
    /// The downloaded bill does not have the hash 申请账单 announced.
    #[error("bill hash mismatch: expected {expected}, got {actual}")]
    BillHash { expected: String, actual: String },
    /// Local misconfiguration: a bad key, PEM, API v3 key or base URL.
    #[error("wechat pay configuration error: {0}")]
    Config(String),
}

impl PayError {
    /// The WeChat Pay error `code` of an API error (`ORDER_PAID` for [`PayError::OrderPaid`]).
    pub fn code(&self) -> Option<&str> {
        match self {
            PayError::Api { code, .. } => Some(code),
            PayError::OrderPaid { .. } => Some(code::ORDER_PAID),
            _ => None,
        }
    }

    /// The call may or may not have taken effect: an unverified answer, a transport failure or
    /// a 5xx. Query the order (or repeat the call with identical parameters) before acting.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            PayError::Unverified(_) | PayError::Http(_) => true,
            PayError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

impl From<reqwest::Error> for PayError {
    fn from(e: reqwest::Error) -> Self {
        // The bill download URL carries a token in its query: never print URLs.
        PayError::Http(e.without_url().to_string())
    }
}

/// `Result` of the pay module.
pub type Result<T, E = PayError> = std::result::Result<T, E>;

/// A random 32-character `[0-9A-Za-z]` nonce (请求随机串 / nonceStr).
pub fn random_nonce() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}
