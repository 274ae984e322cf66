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
        Self::from_figment(Self::figment(file).merge(Env::prefixed("DANGJIAN_")))
    }

    /// Defaults plus explicit overrides (tests): `[("database_url", "sqlite::memory:")]`.
    pub fn with_overrides<'a>(
        overrides: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut fig = Self::figment(None);
        for (k, v) in overrides {
            // Parsed like environment values: "0" is a number, "true" a boolean.
            let value: figment::value::Value = v.parse().unwrap_or_else(|_| v.clone().into());
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
