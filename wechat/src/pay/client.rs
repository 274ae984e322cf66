//! The WeChat Pay v3 API client ([`PayClient`]) and the merchant configuration.
//!
//! Every request is signed (签名生成); every answer's signature is verified (签名验证) with the
//! [`PlatformKeys`], and an answer that does not verify is [`PayError::Unverified`]: the result
//! of the call is unknown. The only unverified answer is the bill file of 下载账单 (WeChat Pay does
//! not sign it), which is checked against the SHA-1 that the signed 申请交易账单 answer announced.
//!
//! No automatic retries: JSAPI下单 with the same `out_trade_no` and identical parameters returns the
//! same `prepay_id`, and 关闭订单 is idempotent, so a caller that got an
//! [`outcome_unknown`](PayError::outcome_unknown) error may repeat the call as is.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::bill::{check_bill_hash, parse_trade_bill, BillInfo, TradeBill};
use super::certs::{ApiV3Key, MerchantKey, PlatformKey, PlatformKeys};
use super::notify::{EncryptedResource, Notification, Transaction};
use super::sign::{authorization, MiniProgramPayParams, SignatureHeaders, HEADER_SERIAL};
use super::{api, code, random_nonce, PayError, Result};
use crate::client::unix_now;

/// Configuration of one merchant (直连商户) paying for one mini-program.
#[derive(Clone)]
pub struct MerchantConfig {
    /// 商户号.
    pub mch_id: String,
    /// The mini-program's AppId (下单 `appid`, 调起支付 `appId`).
    pub app_id: String,
    /// 商户API私钥.
    pub merchant_key: MerchantKey,
    /// 商户API证书序列号 (`serial_no` of `Authorization`).
    pub merchant_serial: String,
    /// 商户APIv3密钥.
    pub api_v3_key: ApiV3Key,
    /// `https://api.mch.weixin.qq.com` ([`MerchantConfig::DEFAULT_BASE_URL`]), or the fake's URL.
    pub base_url: String,
    /// 微信支付公钥 and/or 平台证书 (certificates can also be fetched with
    /// [`PayClient::refresh_certificates`]).
    pub platform: PlatformKeys,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

impl std::fmt::Debug for MerchantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerchantConfig")
            .field("mch_id", &self.mch_id)
            .field("app_id", &self.app_id)
            .field("merchant_serial", &self.merchant_serial)
            .field("base_url", &self.base_url)
            .field(
                "platform",
                &self
                    .platform
                    .keys()
                    .iter()
                    .map(|k| k.serial.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl MerchantConfig {
    /// The production API host (主域名).
    pub const DEFAULT_BASE_URL: &'static str = "https://api.mch.weixin.qq.com";

    /// From the merchant's PEM private key (PKCS#8 `apiclient_key.pem`) and the 32-character
    /// API v3 key; default base URL and a 10 s timeout, no platform key yet.
    pub fn new(
        mch_id: impl Into<String>,
        app_id: impl Into<String>,
        merchant_key_pem: &str,
        merchant_serial: impl Into<String>,
        api_v3_key: &str,
    ) -> Result<Self> {
        Ok(Self {
            mch_id: mch_id.into(),
            app_id: app_id.into(),
            merchant_key: MerchantKey::from_pkcs8_pem(merchant_key_pem)?,
            merchant_serial: merchant_serial.into(),
            api_v3_key: ApiV3Key::new(api_v3_key)?,
            base_url: Self::DEFAULT_BASE_URL.into(),
            platform: PlatformKeys::new(),
            timeout: Duration::from_secs(10),
        })
    }

    /// Public-key mode: add the 微信支付公钥 (`pub_key.pem`) and its id `PUB_KEY_ID_…`.
    pub fn with_platform_public_key(
        mut self,
        id: impl Into<String>,
        spki_pem: &str,
    ) -> Result<Self> {
        self.platform.add_public_key(id, spki_pem)?;
        Ok(self)
    }

    /// Certificate mode: add a 平台证书 (PEM) known in advance.
    pub fn with_platform_certificate(mut self, cert_pem: &str) -> Result<Self> {
        self.platform.add_certificate_pem(cert_pem)?;
        Ok(self)
    }

    /// Another API base URL (the fake, or the 备域名 `https://api2.mch.weixin.qq.com`).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }
}

/// `time_expire` format: RFC 3339 in Beijing time with a real offset,
/// `2018-06-08T10:34:56+08:00`, whatever the offset of `t`.
pub fn format_beijing_time(t: OffsetDateTime) -> Result<String> {
    let t = t.to_offset(time::macros::offset!(+8));
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]+08:00"
    ))
    .map_err(|e| PayError::InvalidRequest(format!("cannot format time: {e}")))
}

/// Checks a 商户订单号: 6–32 characters of `[0-9A-Za-z_-|*]`.
pub(crate) fn validate_out_trade_no(no: &str) -> Result<()> {
    let ok_len = (6..=32).contains(&no.len());
    let ok_chars = no
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'));
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(PayError::InvalidRequest(format!(
            "out_trade_no {no:?} must be 6-32 characters of [0-9A-Za-z_-|*]"
        )))
    }
}

/// A JSAPI/小程序下单 order (`POST /v3/pay/transactions/jsapi`); `appid` and `mchid` come from the
/// [`MerchantConfig`], the currency is always `CNY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsapiOrder {
    /// 商品描述, 1–127 characters.
    pub description: String,
    /// 商户订单号, 6–32 characters of `[0-9A-Za-z_-|*]`, unique per merchant.
    pub out_trade_no: String,
    /// 支付结束时间; sent in +08:00 (`2018-06-08T10:34:56+08:00`).
    pub time_expire: Option<OffsetDateTime>,
    /// 附加数据, up to 128 characters, returned in the query and the notification.
    pub attach: Option<String>,
    /// 通知地址: https, no query string.
    pub notify_url: String,
    /// 订单总金额 in fen (分), > 0.
    pub total_fen: i64,
    /// The payer's OpenID under the mini-program.
    pub payer_openid: String,
}

#[derive(Serialize)]
struct JsapiBody<'a> {
    appid: &'a str,
    mchid: &'a str,
    description: &'a str,
    out_trade_no: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_expire: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attach: Option<&'a str>,
    notify_url: &'a str,
    amount: AmountBody,
    payer: PayerBody<'a>,
}

#[derive(Serialize)]
struct AmountBody {
    total: i64,
    currency: &'static str,
}

#[derive(Serialize)]
struct PayerBody<'a> {
    openid: &'a str,
}

impl JsapiOrder {
    /// An order without `time_expire` and `attach`.
    pub fn new(
        description: impl Into<String>,
        out_trade_no: impl Into<String>,
        total_fen: i64,
        payer_openid: impl Into<String>,
        notify_url: impl Into<String>,
    ) -> Self {
        Self {
            description: description.into(),
            out_trade_no: out_trade_no.into(),
            time_expire: None,
            attach: None,
            notify_url: notify_url.into(),
            total_fen,
            payer_openid: payer_openid.into(),
        }
    }

    /// Check the fields WeChat Pay would refuse (as [`PayError::InvalidRequest`]).
    pub fn validate(&self) -> Result<()> {
        let n = self.description.chars().count();
        if n == 0 || n > 127 {
            return Err(PayError::InvalidRequest(format!(
                "description must be 1-127 characters, got {n}"
            )));
        }
        validate_out_trade_no(&self.out_trade_no)?;
        if self
            .attach
            .as_ref()
            .is_some_and(|a| a.chars().count() > 128)
        {
            return Err(PayError::InvalidRequest(
                "attach must be at most 128 characters".into(),
            ));
        }
        let url = &self.notify_url;
        if !url.starts_with("https://") || url.contains('?') || url.len() > 255 {
            return Err(PayError::InvalidRequest(format!(
                "notify_url {url:?} must be an https URL without a query string"
            )));
        }
        if self.total_fen <= 0 {
            return Err(PayError::InvalidRequest(format!(
                "amount must be positive, got {} fen",
                self.total_fen
            )));
        }
        if self.payer_openid.is_empty() || self.payer_openid.len() > 128 {
            return Err(PayError::InvalidRequest("payer openid is required".into()));
        }
        Ok(())
    }

    /// The exact JSON body sent for this order (after [`validate`](Self::validate)).
    pub fn to_body(&self, app_id: &str, mch_id: &str) -> Result<Vec<u8>> {
        self.validate()?;
        let body = JsapiBody {
            appid: app_id,
            mchid: mch_id,
            description: &self.description,
            out_trade_no: &self.out_trade_no,
            time_expire: self.time_expire.map(format_beijing_time).transpose()?,
            attach: self.attach.as_deref(),
            notify_url: &self.notify_url,
            amount: AmountBody {
                total: self.total_fen,
                currency: "CNY",
            },
            payer: PayerBody {
                openid: &self.payer_openid,
            },
        };
        serde_json::to_vec(&body).map_err(|e| PayError::Decode(format!("encode order: {e}")))
    }
}

/// A verified, decrypted payment notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionNotification {
    /// The envelope (`id` identifies retries of the same notification).
    pub notification: Notification,
    /// The decrypted transaction; its `mchid` and `appid` are ours.
    pub transaction: Transaction,
}

#[derive(Serialize)]
struct CloseBody<'a> {
    mchid: &'a str,
}

#[derive(Deserialize)]
struct PrepayAnswer {
    prepay_id: String,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct CertificatesAnswer {
    data: Vec<CertificateEntry>,
}

#[derive(Deserialize)]
struct CertificateEntry {
    serial_no: String,
    encrypt_certificate: EncryptedResource,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The WeChat Pay v3 client of one merchant. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct PayClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: MerchantConfig,
    base: Url,
    http: reqwest::Client,
    platform: RwLock<PlatformKeys>,
}

impl std::fmt::Debug for PayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayClient")
            .field("config", &self.inner.config)
            .finish()
    }
}

const UA: &str = concat!(
    "dangjian-wechat/",
    env!("CARGO_PKG_VERSION"),
    " (WeChatPay-APIv3)"
);

impl PayClient {
    /// A client for `config`. Fails on a bad base URL or an empty merchant id or serial.
    pub fn new(config: MerchantConfig) -> Result<Self> {
        if config.mch_id.is_empty() || config.merchant_serial.is_empty() || config.app_id.is_empty()
        {
            return Err(PayError::Config(
                "mch_id, app_id and merchant_serial are required".into(),
            ));
        }
        let base = config.base_url.trim_end_matches('/');
        let base = Url::parse(&format!("{base}/"))
            .map_err(|e| PayError::Config(format!("bad WeChat Pay base URL: {e}")))?;
        if !matches!(base.scheme(), "https" | "http") {
            return Err(PayError::Config(
                "WeChat Pay base URL must be http(s)".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| PayError::Config(format!("http client: {e}")))?;
        let platform = RwLock::new(config.platform.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                base,
                http,
                platform,
            }),
        })
    }

    /// The configuration it was built with (its `platform` is the initial key set; see
    /// [`platform_keys`](Self::platform_keys) for the current one).
    pub fn config(&self) -> &MerchantConfig {
        &self.inner.config
    }

    /// The platform keys in use now (initial keys plus refreshed certificates).
    pub fn platform_keys(&self) -> PlatformKeys {
        self.inner
            .platform
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    // ---- the APIs ----

    /// JSAPI/小程序下单 (`POST /v3/pay/transactions/jsapi`) → `prepay_id` (valid 2 hours). The
    /// same `out_trade_no` with identical parameters returns the same `prepay_id`; different
    /// parameters are refused (`INVALID_REQUEST`); a paid order is [`PayError::OrderPaid`].
    pub async fn jsapi_prepay(&self, order: &JsapiOrder) -> Result<String> {
        let c = &self.inner.config;
        let body = order.to_body(&c.app_id, &c.mch_id)?;
        let url = self.url(api::JSAPI, &[])?;
        let answer: PrepayAnswer = self
            .call_json(api::JSAPI, Method::POST, url, Some(body))
            .await?;
        if answer.prepay_id.is_empty() {
            return Err(PayError::Decode("jsapi: empty prepay_id".into()));
        }
        Ok(answer.prepay_id)
    }

    /// The `wx.requestPayment` parameters for `prepay_id` (小程序调起支付), signed now with a fresh
    /// nonce.
    pub fn request_payment(&self, prepay_id: &str) -> Result<MiniProgramPayParams> {
        let c = &self.inner.config;
        MiniProgramPayParams::sign(
            &c.app_id,
            prepay_id,
            unix_now(),
            &random_nonce(),
            &c.merchant_key,
        )
    }

    /// 商户订单号查询订单 (`GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=`). An unknown
    /// order is `Api { status: 404, code: "ORDER_NOT_EXIST" }`.
    pub async fn query_by_out_trade_no(&self, out_trade_no: &str) -> Result<Transaction> {
        validate_out_trade_no(out_trade_no)?;
        let path = format!("v3/pay/transactions/out-trade-no/{out_trade_no}");
        let url = self.url(&path, &[("mchid", &self.inner.config.mch_id)])?;
        let tx: Transaction = self
            .call_json(api::QUERY_BY_OUT_TRADE_NO, Method::GET, url, None)
            .await?;
        if tx.out_trade_no != out_trade_no || tx.mchid != self.inner.config.mch_id {
            return Err(PayError::Decode(format!(
                "query: answer is for order {:?} of merchant {:?}",
                tx.out_trade_no, tx.mchid
            )));
        }
        Ok(tx)
    }

    /// 关闭订单 (`POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close`, 204). A paid order
    /// is [`PayError::OrderPaid`]; closing a closed order succeeds.
    pub async fn close_order(&self, out_trade_no: &str) -> Result<()> {
        validate_out_trade_no(out_trade_no)?;
        let path = format!("v3/pay/transactions/out-trade-no/{out_trade_no}/close");
        let url = self.url(&path, &[])?;
        let body = serde_json::to_vec(&CloseBody {
            mchid: &self.inner.config.mch_id,
        })
        .map_err(|e| PayError::Decode(e.to_string()))?;
        self.call(api::CLOSE, Method::POST, url, Some(body))
            .await
            .map(|_| ())
    }

    /// 下载平台证书 (`GET /v3/certificates`): decrypts every `encrypt_certificate` (associated data
    /// `certificate`) with the API v3 key, checks each serial, verifies the answer, and installs
    /// every certificate that has not expired into the verifier (dropping expired ones). Returns
    /// them, each with its serial and validity.
    ///
    /// Bootstrap: with no certificate yet, the answer is verified with the certificates it
    /// carries. That is WeChat Pay's documented way: only WeChat Pay (or someone with our API v3
    /// key) can produce a certificate that decrypts with AES-GCM under our key.
    pub async fn refresh_certificates(&self) -> Result<Vec<PlatformKey>> {
        let url = self.url(api::CERTIFICATES, &[])?;
        let answer = self.send(Method::GET, url, None).await?;
        let now = unix_now();
        if !answer.status.is_success() {
            let keys = self.platform_keys();
            return Err(self.answer_error(api::CERTIFICATES, &answer, &keys, now));
        }
        let parsed: CertificatesAnswer = serde_json::from_slice(&answer.body)
            .map_err(|e| PayError::Decode(format!("certificates: {e}")))?;
        let mut certs = Vec::with_capacity(parsed.data.len());
        for entry in &parsed.data {
            let pem = entry
                .encrypt_certificate
                .decrypt(&self.inner.config.api_v3_key)?;
            let pem = String::from_utf8(pem)
                .map_err(|_| PayError::Decode("certificate is not UTF-8 PEM".into()))?;
            let key = PlatformKey::certificate_pem(&pem)?;
            if !key.serial.eq_ignore_ascii_case(&entry.serial_no) {
                return Err(PayError::Decode(format!(
                    "certificate serial {} does not match serial_no {}",
                    key.serial, entry.serial_no
                )));
            }
            certs.push(key);
        }
        let mut candidates = self.platform_keys();
        for k in &certs {
            candidates.insert(k.clone());
        }
        candidates
            .verify_header_map(&answer.headers, &answer.body, now)
            .map_err(|e| {
                tracing::warn!(api = api::CERTIFICATES, error = %e, "WeChat Pay answer not verified");
                PayError::Unverified(e)
            })?;
        certs.retain(|k| k.not_after().is_some_and(|not_after| now <= not_after));
        {
            let mut keys = self
                .inner
                .platform
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for k in &certs {
                keys.insert(k.clone());
            }
            keys.remove_expired(now);
        }
        tracing::info!(
            count = certs.len(),
            "WeChat Pay platform certificates refreshed"
        );
        Ok(certs)
    }

    /// 申请交易账单 (`GET /v3/bill/tradebill?bill_date=YYYY-MM-DD&bill_type=ALL`).
    pub async fn trade_bill(&self, bill_date: time::Date) -> Result<BillInfo> {
        let date = bill_date
            .format(time::macros::format_description!("[year]-[month]-[day]"))
            .map_err(|e| PayError::InvalidRequest(format!("bill date: {e}")))?;
        let url = self.url(
            api::TRADEBILL,
            &[("bill_date", &date), ("bill_type", "ALL")],
        )?;
        self.call_json(api::TRADEBILL, Method::GET, url, None).await
    }

    /// 下载账单: GET the `download_url` (signed request; the answer is not signed) and check the
    /// SHA-1 announced by [`trade_bill`](Self::trade_bill) ([`PayError::BillHash`] otherwise).
    /// The URL must be on the configured API host: the request carries our signature.
    pub async fn download_bill(&self, info: &BillInfo) -> Result<Vec<u8>> {
        let url = Url::parse(&info.download_url)
            .map_err(|e| PayError::Decode(format!("bad download_url: {e}")))?;
        if url.origin() != self.inner.base.origin() {
            return Err(PayError::Decode(
                "download_url is not on the WeChat Pay API host".into(),
            ));
        }
        let answer = self.send(Method::GET, url, None).await?;
        if !answer.status.is_success() {
            let keys = self.platform_keys();
            return Err(self.answer_error(api::BILL_DOWNLOAD, &answer, &keys, unix_now()));
        }
        check_bill_hash(info, &answer.body)?;
        Ok(answer.body)
    }

    /// [`trade_bill`](Self::trade_bill), [`download_bill`](Self::download_bill) and
    /// [`parse_trade_bill`].
    pub async fn fetch_trade_bill(&self, bill_date: time::Date) -> Result<TradeBill> {
        let info = self.trade_bill(bill_date).await?;
        let bytes = self.download_bill(&info).await?;
        parse_trade_bill(&bytes)
    }

    // ---- notifications ----

    /// A payment notification POSTed to our `notify_url`: verify its signature over the raw
    /// `body` with the current platform keys (`now` in unix seconds), decrypt the resource with
    /// the API v3 key, and check that it is a transaction of our merchant and AppId.
    pub fn transaction_notification(
        &self,
        headers: &SignatureHeaders,
        body: &[u8],
        now: i64,
    ) -> Result<TransactionNotification> {
        let keys = self.platform_keys();
        let notification = super::notify::parse_notification(&keys, headers, body, now)?;
        let transaction = notification.transaction(&self.inner.config.api_v3_key)?;
        let c = &self.inner.config;
        if transaction.mchid != c.mch_id || transaction.appid != c.app_id {
            return Err(PayError::Decode(format!(
                "notification for merchant {:?} / app {:?}, not ours",
                transaction.mchid, transaction.appid
            )));
        }
        Ok(TransactionNotification {
            notification,
            transaction,
        })
    }

    /// [`transaction_notification`](Self::transaction_notification) with the request's
    /// `http::HeaderMap` (axum's).
    pub fn transaction_notification_from_headers(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<TransactionNotification> {
        let headers = SignatureHeaders::from_header_map(headers)?;
        self.transaction_notification(&headers, body, now)
    }

    // ---- plumbing ----

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url> {
        let mut url = self
            .inner
            .base
            .join(path)
            .map_err(|e| PayError::Config(format!("bad API path {path}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Sign and send; no verification.
    async fn send(&self, method: Method, url: Url, body: Option<Vec<u8>>) -> Result<Answer> {
        let c = &self.inner.config;
        let mut signed = url.path().to_owned();
        if let Some(q) = url.query() {
            signed.push('?');
            signed.push_str(q);
        }
        let auth = authorization(
            &c.mch_id,
            &c.merchant_serial,
            &c.merchant_key,
            method.as_str(),
            &signed,
            unix_now(),
            &random_nonce(),
            body.as_deref().unwrap_or_default(),
        )?;
        let mut req = self
            .inner
            .http
            .request(method, url)
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, UA);
        let pub_key_id = self
            .inner
            .platform
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .public_key_id()
            .map(str::to_owned);
        if let Some(id) = pub_key_id {
            if let Ok(v) = HeaderValue::from_str(&id) {
                req = req.header(HEADER_SERIAL, v);
            }
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?.to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Sign, send, verify; an error answer becomes a typed error.
    async fn call(
        &self,
        api: &'static str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let answer = self.send(method, url, body).await?;
        let now = unix_now();
        let keys = self.platform_keys();
        if !answer.status.is_success() {
            return Err(self.answer_error(api, &answer, &keys, now));
        }
        keys.verify_header_map(&answer.headers, &answer.body, now)
            .map_err(|e| {
                tracing::warn!(api, error = %e, "WeChat Pay answer not verified: result unknown");
                PayError::Unverified(e)
            })?;
        Ok(answer.body)
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        api: &'static str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let body = self.call(api, method, url, body).await?;
        serde_json::from_slice(&body)
            .map_err(|e| PayError::Decode(format!("{api}: unexpected answer: {e}")))
    }

    /// The error of a non-2xx answer. A signed error answer must verify (else `Unverified`); an
    /// unsigned one (gateway errors) is taken as is.
    fn answer_error(&self, api: &str, answer: &Answer, keys: &PlatformKeys, now: i64) -> PayError {
        let status = answer.status.as_u16();
        let Ok(err) = serde_json::from_slice::<ApiErrorBody>(&answer.body) else {
            return PayError::Http(format!("{api}: HTTP {}", answer.status));
        };
        if SignatureHeaders::present_in(&answer.headers) {
            if let Err(e) = keys.verify_header_map(&answer.headers, &answer.body, now) {
                tracing::warn!(api, error = %e, "WeChat Pay error answer not verified");
                return PayError::Unverified(e);
            }
        }
        tracing::debug!(api, status, code = %err.code, "WeChat Pay error answer");
        if err.code == code::ORDER_PAID || err.code == code::ORDERPAID {
            return PayError::OrderPaid {
                message: err.message,
            };
        }
        PayError::Api {
            status,
            code: err.code,
            message: err.message,
        }
    }
}
