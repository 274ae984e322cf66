//! Layered configuration: embedded `config/default.toml` → optional file → `DANGJIAN_*` environment.
//! Validated once at start-up; every error names the variable to fix.

use std::{net::SocketAddr, path::PathBuf};

use figment::{
    providers::{Env, Format, Toml},
    Figment,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../../config/default.toml");

/// Settings that are identifiers made of digits as often as not (a merchant id, a key, a
/// serial): read from the environment as the exact text, never as numbers.
const VERBATIM_KEYS: [&str; 8] = [
    "pay_mch_id",
    "pay_api_v3_key",
    "pay_cert_serial",
    "pay_platform_public_key_id",
    "activity_cancelled_template_id",
    "activity_promoted_template_id",
    "activity_reminder_template_id",
    "dues_reminder_template_id",
];

/// Demo credentials that ship in `default.toml`; refused in production.
/// The shortest audit retention accepted (`DANGJIAN_AUDIT_RETENTION_DAYS`): a mistyped 0 must not
/// purge the whole log.
pub const MIN_AUDIT_RETENTION_DAYS: u64 = 30;

const DEMO_MARKERS: [&str; 3] = ["wxdemo", "demo-", "dangjiandemotoken"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Dev,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageMode {
    Plaintext,
    Compatible,
    Safe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Service,
    Subscription,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every setting, flat: the key `wechat_app_id` is the variable `DANGJIAN_WECHAT_APP_ID`.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub env: Environment,
    pub bind: SocketAddr,
    pub public_url: String,
    pub database_url: SecretString,
    /// How long a request waits for a database connection before it is answered 503
    /// `database_unavailable` (PostgreSQL down or hung, or the pool exhausted), in milliseconds.
    pub database_acquire_timeout_ms: u64,
    pub redis_url: Option<SecretString>,
    pub redis_prefix: String,
    /// Bound of every Redis call on a request path, in milliseconds.
    pub redis_timeout_ms: u64,
    pub content_dir: PathBuf,
    pub data_dir: PathBuf,
    pub data_key: Option<SecretString>,
    pub admin_user: Option<String>,
    pub admin_password: Option<SecretString>,
    pub log_format: LogFormat,
    pub trusted_proxies: String,

    pub wechat_app_id: String,
    pub wechat_app_secret: SecretString,
    pub wechat_token: SecretString,
    pub wechat_aes_key: SecretString,
    pub wechat_account_type: AccountType,
    pub wechat_message_mode: MessageMode,
    pub wechat_news_template_id: String,
    pub wechat_api_base: Option<String>,

    pub mp_app_id: String,
    pub mp_app_secret: SecretString,
    pub mp_api_base: Option<String>,
    /// Lifetime of a mini-program session (`POST /api/mp/login`), in seconds.
    pub mp_session_ttl_secs: u64,

    pub webhook_max_body_bytes: usize,
    pub webhook_timestamp_skew_secs: i64,
    pub reply_budget_ms: u64,
    pub dedup_ttl_secs: u64,
    /// Bound of the in-process cache in bytes (single-instance deployments without Redis).
    pub memory_cache_max_bytes: u64,
    /// Lifetime of the "being handled" claim of a message (a crashed handler's claim expires).
    pub dedup_pending_ttl_secs: u64,
    pub follower_sync_interval_hours: u64,
    pub request_timeout_secs: u64,
    pub shutdown_grace_secs: u64,

    /// Older data keys (comma-separated base64) still accepted for decryption during a rotation.
    pub data_keys_old: Option<SecretString>,
    pub admin_token_ttl_secs: u64,
    pub console_session_ttl_secs: u64,
    pub login_ip_max_failures: i64,
    pub login_ip_window_secs: u64,
    pub login_lockout_threshold: i64,
    pub login_lockout_base_secs: u64,
    pub rate_limit_login_per_minute: i64,
    pub rate_limit_mp_per_minute: i64,
    pub password_change_max_attempts: i64,
    /// Per member (openid) and hour, chat and mini-program together.
    pub submission_limit_per_hour: i64,
    pub board_post_limit_per_hour: i64,
    /// The same text from the same member within this window is the same item.
    pub submission_duplicate_window_secs: u64,
    /// Bearer token that may read `/metrics`.
    pub metrics_token: Option<SecretString>,
    /// CIDRs that may read `/metrics` directly (not through a proxy).
    pub metrics_networks: String,
    pub audit_retention_days: u64,
    pub admin_max_body_bytes: usize,
    pub import_max_body_bytes: usize,
    pub cors_allowed_origins: String,

    /// Push senders per process (`dangjian serve` and `dangjian worker`).
    pub push_workers: usize,
    /// Delivery rows one sender claims (marks in flight) at a time.
    pub push_batch_size: i64,
    /// Concurrent WeChat calls per sender.
    pub push_concurrency: usize,
    /// Sends per second across all replicas (shared through Redis when configured); 0 = no limit.
    pub push_rate_per_second: u64,
    /// Lease of a claimed row; a row still in flight after it becomes `unknown`.
    pub push_lease_secs: u64,
    /// How often idle senders and the push scheduler look for work.
    pub push_poll_ms: u64,
    /// First retry delay after a transient error (-1, HTTP 5xx); doubles per attempt.
    pub push_retry_base_ms: u64,
    /// Attempts per recipient before a transient error becomes `failed`.
    pub push_max_attempts: i64,

    /// WeChat Pay v3 merchant (直连商户, platform public-key mode). Payment is enabled when
    /// `pay_mch_id` is set, and then the key, serial and API v3 key are required. Without it:
    /// in dev (`env = "dev"`) the fake WeChat Pay's public TEST merchant is used; in production
    /// online payment is off (bills, ledgers and reconciliation still work) and said so in the log.
    pub pay_mch_id: Option<String>,
    pub pay_api_v3_key: Option<SecretString>,
    /// PEM (PKCS#8) of the merchant API private key `apiclient_key.pem`.
    pub pay_private_key_path: Option<PathBuf>,
    /// Serial number of the merchant API certificate.
    pub pay_cert_serial: Option<String>,
    /// 微信支付公钥 (SPKI PEM) and its id `PUB_KEY_ID_…`; without them, platform certificates
    /// are downloaded from `/v3/certificates` and refreshed.
    pub pay_platform_public_key_path: Option<PathBuf>,
    pub pay_platform_public_key_id: Option<String>,
    /// Base URL of WeChat Pay (default `https://api.mch.weixin.qq.com`; dev: the fake).
    pub pay_api_base: Option<String>,
    /// Where WeChat Pay POSTs notifications (https); default `<public_url>/pay/notify`.
    pub pay_notify_url: Option<String>,
    /// Platform certificate refresh (certificate mode), hours; 0 = off.
    pub pay_certificate_refresh_hours: u64,
    /// Life of a dues order (`time_expire`), seconds; at most 7200 (a prepay id lives 2 hours).
    pub dues_order_ttl_secs: u64,
    /// An order still unpaid this long after it was made is queried at WeChat Pay (the
    /// notification may never come); later checks back off.
    pub dues_requery_after_secs: u64,
    /// How often the dues worker looks for orders to query or close.
    pub dues_poll_ms: u64,

    /// Activity notices (cancellation, waitlist promotion, reminder): channels tried in order per
    /// member, comma-separated (`template`, `custom`, `subscribe`, `subscribe_oa`; at most one of
    /// those that name a template). Template ids of the three kinds, for that channel; a kind
    /// without one skips the templated channel.
    pub activity_notice_channels: String,
    pub activity_cancelled_template_id: String,
    pub activity_promoted_template_id: String,
    pub activity_reminder_template_id: String,
    /// Dues reminders to members with an unpaid bill of an open month: channels in order and the
    /// template id, as for activity notices.
    pub dues_reminder_channels: String,
    pub dues_reminder_template_id: String,
    /// A bill is reminded at most once per this many days (automatic or on request).
    pub dues_reminder_interval_days: u64,
    /// Remind automatically (each bill one interval after it was made or last reminded).
    pub dues_reminder_auto: bool,
    /// How often pending activity notices and due dues reminders are handed to pushes.
    pub notice_poll_ms: u64,
}

/// The channels a notice may name in a channel-order setting.
const NOTICE_CHANNELS: [&str; 4] = ["template", "custom", "subscribe", "subscribe_oa"];

/// Check a comma-separated channel order (`activity_notice_channels`, `dues_reminder_channels`).
fn notice_channels(var: &str, list: &str) -> Result<(), ConfigError> {
    let names: Vec<&str> = list.split(',').map(str::trim).collect();
    if names.iter().all(|n| n.is_empty()) {
        return Err(invalid(
            var,
            "name at least one channel, e.g. \"subscribe,custom\"",
        ));
    }
    for (i, n) in names.iter().enumerate() {
        if !NOTICE_CHANNELS.contains(n) {
            return Err(invalid(
                var,
                format!("{n:?} is not one of template, custom, subscribe, subscribe_oa"),
            ));
        }
        if names[..i].contains(n) {
            return Err(invalid(var, format!("{n:?} is named twice")));
        }
    }
    if names.iter().filter(|n| **n != "custom").count() > 1 {
        return Err(invalid(
            var,
            "at most one of template, subscribe, subscribe_oa (the template id belongs to one app)",
        ));
    }
    Ok(())
}

/// How WeChat Pay is set up (see [`Settings::pay_mch_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaySetup {
    /// Production without a merchant: no online payment.
    Disabled,
    /// Dev without a merchant: the fake WeChat Pay's public test merchant.
    TestMerchant,
    /// A real merchant from `DANGJIAN_PAY_*`.
    Merchant,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
}

fn invalid(var: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("DANGJIAN_{}: {why}", var.to_uppercase()))
}

impl Settings {
    /// Defaults, then `file` (if any), then the process environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Settings, ConfigError> {
        let mut fig = Self::figment(file).merge(Env::prefixed("DANGJIAN_"));
        // The environment provider reads `1900000109` as a number (and `0123` as 123): these
        // are identifiers, taken exactly as written.
        for key in VERBATIM_KEYS {
            if let Some(v) = Env::var(&format!("DANGJIAN_{}", key.to_uppercase())) {
                fig = fig.merge((key, v));
            }
        }
        Self::from_figment(fig)
    }

    /// Defaults plus explicit overrides (tests): `[("database_url", "sqlite::memory:")]`.
    pub fn with_overrides<'a>(
        overrides: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut fig = Self::figment(None);
        for (k, v) in overrides {
            // Parsed like environment values: "0" is a number, "true" a boolean.
            let value: figment::value::Value = if VERBATIM_KEYS.contains(&k) {
                v.clone().into()
            } else {
                v.parse().unwrap_or_else(|_| v.clone().into())
            };
            fig = fig.merge((k, value));
        }
        Self::from_figment(fig)
    }

    fn figment(file: Option<&std::path::Path>) -> Figment {
        let mut fig = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            fig = fig.merge(Toml::file_exact(path));
        }
        fig
    }

    fn from_figment(fig: Figment) -> Result<Settings, ConfigError> {
        let settings: Settings = fig.extract().map_err(|e| {
            let var = e.path.join("_");
            let msg = e.kind.to_string();
            if var.is_empty() {
                ConfigError::Invalid(msg)
            } else {
                invalid(&var, msg)
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return Err(invalid("public_url", "must start with http:// or https://"));
        }
        let db = self.database_url.expose_secret();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "must be sqlite:... or postgres://...",
            ));
        }
        if let Some(url) = &self.redis_url {
            let u = url.expose_secret();
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                return Err(invalid("redis_url", "must be redis://... or rediss://..."));
            }
        }
        // A de-duplication record must outlive every request WeChat may still send for the message:
        // its retries (3 within 15 s) and a replay of a signed request anywhere in the accepted
        // timestamp window (± the skew), so a replay gets the first answer, never a second effect.
        let needed = 2 * self.webhook_timestamp_skew_secs.max(0) as u64 + 15;
        if self.dedup_ttl_secs < needed {
            return Err(invalid(
                "dedup_ttl_secs",
                format!(
                    "must cover WeChat's retries and the timestamp window: at least \
                     2 × webhook_timestamp_skew_secs + 15 = {needed}"
                ),
            ));
        }
        if self.memory_cache_max_bytes < 1024 * 1024 {
            return Err(invalid(
                "memory_cache_max_bytes",
                "at least 1048576 (1 MiB)",
            ));
        }
        let aes = self.wechat_aes_key.expose_secret();
        if aes.len() != 43 {
            return Err(invalid(
                "wechat_aes_key",
                "the EncodingAESKey has exactly 43 characters",
            ));
        }
        wechat::crypto::decode_aes_key(aes).map_err(|e| invalid("wechat_aes_key", e))?;
        if self.wechat_token.expose_secret().is_empty() {
            return Err(invalid("wechat_token", "must not be empty"));
        }
        self.trusted_proxy_list()?;
        self.metrics_network_list()?;
        if self.audit_retention_days < MIN_AUDIT_RETENTION_DAYS {
            return Err(invalid(
                "audit_retention_days",
                format!("must be at least {MIN_AUDIT_RETENTION_DAYS} (days)"),
            ));
        }
        if self.database_acquire_timeout_ms == 0 {
            return Err(invalid(
                "database_acquire_timeout_ms",
                "must be at least 1 ms",
            ));
        }
        if self.redis_timeout_ms == 0 {
            return Err(invalid("redis_timeout_ms", "must be at least 1 ms"));
        }
        if self.dedup_pending_ttl_secs == 0 {
            return Err(invalid(
                "dedup_pending_ttl_secs",
                "must be at least 1 second",
            ));
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().len() < 16)
        {
            return Err(invalid("metrics_token", "must be at least 16 characters"));
        }
        if self.mp_session_ttl_secs == 0 {
            return Err(invalid("mp_session_ttl_secs", "must be at least 1 second"));
        }
        self.validate_pay()?;
        notice_channels("activity_notice_channels", &self.activity_notice_channels)?;
        notice_channels("dues_reminder_channels", &self.dues_reminder_channels)?;
        if self.dues_reminder_interval_days == 0 {
            return Err(invalid(
                "dues_reminder_interval_days",
                "must be at least 1 (day)",
            ));
        }
        if self.notice_poll_ms == 0 {
            return Err(invalid("notice_poll_ms", "must be at least 1"));
        }
        if self.env == Environment::Production {
            let demo = |v: &str| DEMO_MARKERS.iter().any(|m| v.contains(m));
            let checks: [(&str, &str); 6] = [
                ("wechat_app_id", &self.wechat_app_id),
                ("wechat_app_secret", self.wechat_app_secret.expose_secret()),
                ("wechat_token", self.wechat_token.expose_secret()),
                ("mp_app_id", &self.mp_app_id),
                ("mp_app_secret", self.mp_app_secret.expose_secret()),
                ("wechat_news_template_id", &self.wechat_news_template_id),
            ];
            for (var, value) in checks {
                if demo(value) {
                    return Err(invalid(
                        var,
                        "demo credential refused in production (DANGJIAN_ENV=production)",
                    ));
                }
            }
            if aes == "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG" {
                return Err(invalid("wechat_aes_key", "demo key refused in production"));
            }
            if self.data_key.is_none() {
                return Err(invalid(
                    "data_key",
                    "required in production (32 bytes, base64)",
                ));
            }
        }
        Ok(())
    }

    fn validate_pay(&self) -> Result<(), ConfigError> {
        let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        let merchant_parts = [
            ("pay_api_v3_key", self.pay_api_v3_key.is_some()),
            ("pay_private_key_path", self.pay_private_key_path.is_some()),
            ("pay_cert_serial", given(&self.pay_cert_serial)),
            (
                "pay_platform_public_key_path",
                self.pay_platform_public_key_path.is_some(),
            ),
            (
                "pay_platform_public_key_id",
                given(&self.pay_platform_public_key_id),
            ),
        ];
        if !given(&self.pay_mch_id) {
            if let Some((var, _)) = merchant_parts.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    var,
                    "is set but DANGJIAN_PAY_MCH_ID is not: set the merchant id too (or remove it)",
                ));
            }
        } else {
            for (var, set) in &merchant_parts[..3] {
                if !set {
                    return Err(invalid(var, "required when DANGJIAN_PAY_MCH_ID is set"));
                }
            }
            if let Some(k) = &self.pay_api_v3_key {
                if k.expose_secret().len() != 32 {
                    return Err(invalid(
                        "pay_api_v3_key",
                        "the API v3 key has exactly 32 characters",
                    ));
                }
            }
            if merchant_parts[3].1 != merchant_parts[4].1 {
                return Err(invalid(
                    if merchant_parts[3].1 {
                        "pay_platform_public_key_id"
                    } else {
                        "pay_platform_public_key_path"
                    },
                    "the platform public key needs both its file and its id (PUB_KEY_ID_...)",
                ));
            }
            if !self.pay_notify_url().starts_with("https://") {
                return Err(invalid(
                    "pay_notify_url",
                    "WeChat Pay notifies only https URLs (default: DANGJIAN_PUBLIC_URL + /pay/notify)",
                ));
            }
        }
        if let Some(base) = &self.pay_api_base {
            if !(base.starts_with("https://") || base.starts_with("http://")) {
                return Err(invalid(
                    "pay_api_base",
                    "must start with http:// or https://",
                ));
            }
        }
        if let Some(url) = &self.pay_notify_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains('?') {
                return Err(invalid(
                    "pay_notify_url",
                    "must be an http(s) URL without a query string",
                ));
            }
        }
        if !(300..=7200).contains(&self.dues_order_ttl_secs) {
            return Err(invalid(
                "dues_order_ttl_secs",
                "must be 300 to 7200 seconds (a prepay id lives 2 hours)",
            ));
        }
        if self.dues_poll_ms == 0 {
            return Err(invalid("dues_poll_ms", "must be at least 1"));
        }
        Ok(())
    }

    /// Which WeChat Pay merchant is used, if any.
    pub fn pay_setup(&self) -> PaySetup {
        match (&self.pay_mch_id, self.env) {
            (Some(id), _) if !id.trim().is_empty() => PaySetup::Merchant,
            (_, Environment::Dev) => PaySetup::TestMerchant,
            _ => PaySetup::Disabled,
        }
    }

    /// The notify URL sent with every order: `pay_notify_url`, else `<public_url>/pay/notify`.
    pub fn pay_notify_url(&self) -> String {
        match &self.pay_notify_url {
            Some(u) if !u.trim().is_empty() => u.trim().to_owned(),
            _ => format!("{}/pay/notify", self.public_url.trim_end_matches('/')),
        }
    }

    /// Dev mode: demo credentials and the built-in fake WeChat API.
    pub fn dev_mode(&self) -> bool {
        self.env == Environment::Dev && self.wechat_api_base.is_none()
    }

    pub fn trusted_proxy_list(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        cidr_list("trusted_proxies", &self.trusted_proxies)
    }

    pub fn metrics_network_list(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        cidr_list("metrics_networks", &self.metrics_networks)
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.expose_secret().starts_with("postgres")
    }
}

fn cidr_list(var: &str, list: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| invalid(var, format!("`{s}` is not a CIDR")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_dev_settings() {
        let s = Settings::with_overrides([]).unwrap();
        assert_eq!(s.env, Environment::Dev);
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert!(s.dev_mode());
        assert!(s.redis_url.is_none());
    }

    #[test]
    fn production_refuses_demo_credentials_and_names_the_variable() {
        let err = Settings::with_overrides([("env", "production".into())]).unwrap_err();
        assert!(err.to_string().contains("DANGJIAN_WECHAT_APP_ID"), "{err}");
    }

    #[test]
    fn pay_is_the_test_merchant_in_dev_off_in_production_without_a_merchant() {
        let dev = Settings::with_overrides([]).unwrap();
        assert_eq!(dev.pay_setup(), PaySetup::TestMerchant);
        assert_eq!(dev.pay_notify_url(), "http://127.0.0.1:8080/pay/notify");
        let prod = Settings::with_overrides([
            ("env", "production".into()),
            ("wechat_app_id", "wx1234567890abcdef".into()),
            ("wechat_app_secret", "real-secret".into()),
            ("wechat_token", "realtoken".into()),
            (
                "wechat_aes_key",
                "zyxwvutsrqponmlkjihgfedcba9876543210ZYXWVUT".into(),
            ),
            ("mp_app_id", "wxabcdef1234567890".into()),
            ("mp_app_secret", "real-mp-secret".into()),
            ("wechat_news_template_id", "tmpl-1".into()),
            (
                "data_key",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            ),
        ])
        .unwrap();
        assert_eq!(prod.pay_setup(), PaySetup::Disabled);
    }

    #[test]
    fn a_merchant_needs_its_key_serial_and_https_notify_url() {
        let err = Settings::with_overrides([("pay_mch_id", "1900000109".into())]).unwrap_err();
        assert!(err.to_string().contains("DANGJIAN_PAY_API_V3_KEY"), "{err}");
        let err = Settings::with_overrides([("pay_cert_serial", "ABC".into())]).unwrap_err();
        assert!(
            err.to_string().contains("DANGJIAN_PAY_CERT_SERIAL"),
            "{err}"
        );
        let full = |extra: Vec<(&'static str, String)>| {
            let mut v: Vec<(&'static str, String)> = vec![
                ("pay_mch_id", "1900000109".into()),
                ("pay_api_v3_key", "0123456789abcdef0123456789abcdef".into()),
                (
                    "pay_private_key_path",
                    "/etc/dangjian/apiclient_key.pem".into(),
                ),
                ("pay_cert_serial", "3D8B2C4F".into()),
            ];
            v.extend(extra);
            Settings::with_overrides(v)
        };
        let err = full(vec![]).unwrap_err();
        assert!(err.to_string().contains("DANGJIAN_PAY_NOTIFY_URL"), "{err}");
        let ok = full(vec![(
            "pay_notify_url",
            "https://dj.example.edu/pay/notify".into(),
        )])
        .unwrap();
        assert_eq!(ok.pay_setup(), PaySetup::Merchant);
        let err = full(vec![
            ("public_url", "https://dj.example.edu".into()),
            ("pay_platform_public_key_id", "PUB_KEY_ID_01".into()),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("DANGJIAN_PAY_PLATFORM_PUBLIC_KEY_PATH"),
            "{err}"
        );
        let err = full(vec![
            ("public_url", "https://dj.example.edu".into()),
            ("pay_api_v3_key", "short".into()),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("DANGJIAN_PAY_API_V3_KEY"), "{err}");
        let err = Settings::with_overrides([("dues_order_ttl_secs", "9000".into())]).unwrap_err();
        assert!(
            err.to_string().contains("DANGJIAN_DUES_ORDER_TTL_SECS"),
            "{err}"
        );
    }

    #[test]
    fn compatible_mode_is_not_the_default_safe_is() {
        let s = Settings::with_overrides([]).unwrap();
        assert_eq!(s.wechat_message_mode, MessageMode::Safe);
    }

    #[test]
    fn audit_retention_below_the_minimum_is_refused_by_name() {
        for days in ["0", "29"] {
            let err =
                Settings::with_overrides([("audit_retention_days", days.into())]).unwrap_err();
            assert!(
                err.to_string().contains("DANGJIAN_AUDIT_RETENTION_DAYS"),
                "{err}"
            );
        }
        assert!(Settings::with_overrides([("audit_retention_days", "30".into())]).is_ok());
    }

    #[test]
    fn notice_channel_orders_are_checked_by_name() {
        for (list, ok) in [
            ("subscribe,custom", true),
            ("custom", true),
            ("template, custom", true),
            ("subscribe,template", false),
            ("custom,custom", false),
            ("mass", false),
            ("", false),
        ] {
            let r = Settings::with_overrides([("dues_reminder_channels", list.into())]);
            match r {
                Ok(_) => assert!(ok, "{list:?} accepted"),
                Err(e) => {
                    assert!(!ok, "{list:?} refused: {e}");
                    assert!(
                        e.to_string().contains("DANGJIAN_DUES_REMINDER_CHANNELS"),
                        "{e}"
                    );
                }
            }
        }
        let err =
            Settings::with_overrides([("dues_reminder_interval_days", "0".into())]).unwrap_err();
        assert!(
            err.to_string()
                .contains("DANGJIAN_DUES_REMINDER_INTERVAL_DAYS"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = Settings::with_overrides([("wechat_aes_key", "short".into())]).unwrap_err();
        assert!(err.to_string().contains("DANGJIAN_WECHAT_AES_KEY"), "{err}");
        let err = Settings::with_overrides([("bind", "not an address".into())]).unwrap_err();
        assert!(err.to_string().contains("DANGJIAN_BIND"), "{err}");
        let err =
            Settings::with_overrides([("trusted_proxies", "10.0.0.0/8, nope".into())]).unwrap_err();
        assert!(
            err.to_string().contains("DANGJIAN_TRUSTED_PROXIES"),
            "{err}"
        );
        let err = Settings::with_overrides([("wechat_message_mode", "loud".into())]).unwrap_err();
        assert!(
            err.to_string().contains("DANGJIAN_WECHAT_MESSAGE_MODE"),
            "{err}"
        );
    }
}
