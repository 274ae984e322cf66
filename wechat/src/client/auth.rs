//! 获取 Access token and 获取稳定版接口调用凭据: the raw endpoints. Callers normally want
//! [`Client::access_token`], which shares and refreshes the token.

use serde::{Deserialize, Serialize};

use super::{api, Call, Client};
use crate::Result;

/// Answer of `cgi-bin/token` and `cgi-bin/stable_token`.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// Seconds (7200 in production).
    pub expires_in: i64,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[derive(Serialize)]
struct StableTokenRequest<'a> {
    grant_type: &'static str,
    appid: &'a str,
    secret: &'a str,
    force_refresh: bool,
}

impl Client {
    /// 获取 Access token (`GET cgi-bin/token`). Issues a new token each call (the previous one
    /// stays valid for 5 minutes); does not touch the store.
    pub async fn get_token(&self) -> Result<TokenResponse> {
        let c = &self.inner.config;
        let call = Call::get(api::TOKEN)
            .without_token()
            .query("grant_type", "client_credential")
            .query("appid", c.app_id.clone())
            .query("secret", c.app_secret.clone());
        self.call_json(call).await
    }

    /// 获取稳定版接口调用凭据 (`POST cgi-bin/stable_token`). Without `force_refresh` WeChat returns
    /// the current token until it expires; does not touch the store.
    pub async fn get_stable_token(&self, force_refresh: bool) -> Result<TokenResponse> {
        let c = &self.inner.config;
        let body = StableTokenRequest {
            grant_type: "client_credential",
            appid: &c.app_id,
            secret: &c.app_secret,
            force_refresh,
        };
        let call = Call::post(api::STABLE_TOKEN, &body)?.without_token();
        // Without force_refresh it is a read; with it, repeating is harmless too.
        self.call_json(call.idempotent()).await
    }
}
