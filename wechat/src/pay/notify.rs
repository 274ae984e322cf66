//! 支付成功回调通知 (payment notification): the envelope, 回调报文解密 (AEAD_AES_256_GCM with the
//! API v3 key), the transaction (also the answer of 商户订单号查询订单) and the answer to send back
//! (回调通知应答).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::certs::{ApiV3Key, PlatformKeys};
use super::sign::SignatureHeaders;
use super::{PayError, Result};

/// The only resource algorithm of v3.
pub const AEAD_AES_256_GCM: &str = "AEAD_AES_256_GCM";

/// 证书和回调报文解密: AES-256-GCM with the API v3 key, `nonce` (12 bytes, as sent: a string),
/// `associated_data`, and `ciphertext` = base64(ciphertext || 16-byte tag).
pub fn decrypt_aes_256_gcm(
    key: &ApiV3Key,
    nonce: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>> {
    if nonce.len() != 12 {
        return Err(PayError::Crypto(format!(
            "AES-GCM nonce must be 12 bytes, got {}",
            nonce.len()
        )));
    }
    let ct = STANDARD
        .decode(ciphertext_b64)
        .map_err(|_| PayError::Crypto("ciphertext is not base64".into()))?;
    if ct.len() < 16 {
        return Err(PayError::Crypto(
            "ciphertext shorter than the GCM tag".into(),
        ));
    }
    Aes256Gcm::new(key.as_bytes().into())
        .decrypt(
            Nonce::from_slice(nonce.as_bytes()),
            Payload {
                msg: &ct,
                aad: associated_data.as_bytes(),
            },
        )
        .map_err(|_| {
            PayError::Crypto("AES-GCM authentication failed (wrong API v3 key or tampered)".into())
        })
}

/// The inverse of [`decrypt_aes_256_gcm`], for fakes and tests (WeChat Pay encrypts, merchants
/// decrypt). `nonce` must be 12 bytes.
pub fn encrypt_aes_256_gcm(
    key: &ApiV3Key,
    nonce: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> Result<String> {
    if nonce.len() != 12 {
        return Err(PayError::Crypto("AES-GCM nonce must be 12 bytes".into()));
    }
    let ct = Aes256Gcm::new(key.as_bytes().into())
        .encrypt(
            Nonce::from_slice(nonce.as_bytes()),
            Payload {
                msg: plaintext,
                aad: associated_data.as_bytes(),
            },
        )
        .map_err(|_| PayError::Crypto("AES-GCM encryption failed".into()))?;
    Ok(STANDARD.encode(ct))
}

/// 通知数据 `resource` (also `encrypt_certificate` of 下载平台证书).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedResource {
    /// `AEAD_AES_256_GCM`.
    pub algorithm: String,
    /// base64(ciphertext || tag).
    pub ciphertext: String,
    /// `transaction` for payments, `certificate` for certificates; may be empty.
    #[serde(default)]
    pub associated_data: String,
    /// `transaction` (absent in `encrypt_certificate`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub original_type: String,
    /// 12 characters.
    pub nonce: String,
}

impl EncryptedResource {
    /// Decrypt with the API v3 key. Refuses an algorithm other than AEAD_AES_256_GCM.
    pub fn decrypt(&self, key: &ApiV3Key) -> Result<Vec<u8>> {
        if self.algorithm != AEAD_AES_256_GCM {
            return Err(PayError::Crypto(format!(
                "unsupported resource algorithm {:?}",
                self.algorithm
            )));
        }
        decrypt_aes_256_gcm(key, &self.nonce, &self.associated_data, &self.ciphertext)
    }
}

/// 支付通知 envelope, as POSTed to the `notify_url`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// 通知ID, unique per notification (WeChat Pay retries with the same id).
    pub id: String,
    /// RFC 3339, e.g. `2015-05-20T13:29:35+08:00`.
    pub create_time: String,
    /// `TRANSACTION.SUCCESS` for a payment.
    pub event_type: String,
    /// `encrypt-resource`.
    pub resource_type: String,
    /// 回调摘要, e.g. 支付成功.
    #[serde(default)]
    pub summary: String,
    pub resource: EncryptedResource,
}

impl Notification {
    /// The event of a successful payment.
    pub const TRANSACTION_SUCCESS: &'static str = "TRANSACTION.SUCCESS";

    /// Decrypt `resource` and read it as a transaction (`original_type` must be `transaction`).
    pub fn transaction(&self, key: &ApiV3Key) -> Result<Transaction> {
        if self.resource.original_type != "transaction" {
            return Err(PayError::Decode(format!(
                "notification resource is a {:?}, not a transaction",
                self.resource.original_type
            )));
        }
        let plain = self.resource.decrypt(key)?;
        serde_json::from_slice(&plain)
            .map_err(|e| PayError::Decode(format!("notification transaction: {e}")))
    }
}

/// Verify a notification's signature over the raw `body` (see [`PlatformKeys::verify`]), then
/// parse the envelope. Nothing of the body is trusted before the signature is.
pub fn parse_notification(
    keys: &PlatformKeys,
    headers: &SignatureHeaders,
    body: &[u8],
    now: i64,
) -> Result<Notification> {
    keys.verify(headers, body, now)?;
    serde_json::from_slice(body).map_err(|e| PayError::Decode(format!("notification: {e}")))
}

/// 交易状态 `trade_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradeState {
    /// 支付成功
    Success,
    /// 转入退款
    Refund,
    /// 未支付
    Notpay,
    /// 已关闭
    Closed,
    /// 已撤销 (付款码支付)
    Revoked,
    /// 用户支付中 (付款码支付)
    Userpaying,
    /// 支付失败
    Payerror,
    /// A state WeChat Pay may add later: treat as not paid and query again.
    #[serde(other)]
    Unknown,
}

impl TradeState {
    /// The wire name (`SUCCESS`, `NOTPAY`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TradeState::Success => "SUCCESS",
            TradeState::Refund => "REFUND",
            TradeState::Notpay => "NOTPAY",
            TradeState::Closed => "CLOSED",
            TradeState::Revoked => "REVOKED",
            TradeState::Userpaying => "USERPAYING",
            TradeState::Payerror => "PAYERROR",
            TradeState::Unknown => "UNKNOWN",
        }
    }
}

/// `payer` of a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payer {
    /// The payer's OpenID under the order's AppId.
    #[serde(default)]
    pub openid: String,
}

/// `amount` of a transaction, in fen (分).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionAmount {
    /// 订单总金额.
    pub total: i64,
    /// 用户支付金额 (total minus coupons); absent before payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<i64>,
    /// `CNY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_currency: Option<String>,
}

/// A transaction: the decrypted resource of a payment notification, and the answer of
/// 商户订单号查询订单. Fields that exist only once paid are optional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    /// 微信支付订单号; absent before payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// `JSAPI` for mini-program payments; absent before payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_type: Option<String>,
    pub trade_state: TradeState,
    #[serde(default)]
    pub trade_state_desc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_type: Option<String>,
    /// 附加数据 as given at 下单.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// 支付完成时间, RFC 3339 (`2018-06-08T10:34:56+08:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<Payer>,
    pub amount: TransactionAmount,
}

impl Transaction {
    /// Paid (`SUCCESS`).
    pub fn is_paid(&self) -> bool {
        self.trade_state == TradeState::Success
    }
}

/// 回调通知应答: what to answer WeChat Pay's notification POST with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyAnswer {
    /// HTTP status: 200 (accepted), or 4xx/5xx (refused: WeChat Pay retries).
    pub status: u16,
    /// Empty when accepted (无需返回应答报文), else `{"code":"FAIL","message":…}`.
    pub body: String,
    /// `application/json` when there is a body.
    pub content_type: Option<&'static str>,
}

impl NotifyAnswer {
    /// Accepted: HTTP 200 with no body.
    pub fn success() -> Self {
        Self {
            status: 200,
            body: String::new(),
            content_type: None,
        }
    }

    /// Refused with `message`: HTTP 500 and `{"code":"FAIL","message":…}`; WeChat Pay will
    /// notify again later.
    pub fn failure(message: &str) -> Self {
        Self::failure_with_status(500, message)
    }

    /// Refused with a chosen 4xx/5xx status (e.g. 401 for a bad signature).
    pub fn failure_with_status(status: u16, message: &str) -> Self {
        Self {
            status,
            body: Self::failure_body(message),
            content_type: Some("application/json"),
        }
    }

    /// `{"code":"FAIL","message":…}`.
    pub fn failure_body(message: &str) -> String {
        serde_json::json!({ "code": super::code::FAIL, "message": message }).to_string()
    }
}
