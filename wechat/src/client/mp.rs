//! Mini-program server APIs: 小程序登录 (code2Session), 获取手机号, 文本内容安全识别 (msgSecCheck v2),
//! 发送订阅消息 and 获取不限制的小程序码. Use a [`Client`] configured with the mini-program's AppId,
//! secret and base URL. Next to 发送订阅消息 is the official account's 发送订阅通知
//! (`subscribe/bizsend`), called on the official account's [`Client`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::{api, Call, Client, MiniProgram, TemplateValue};
use crate::{Error, Result};

/// Answer of 小程序登录 (code2Session). `session_key` is a secret: never log or send it out.
#[derive(Clone, Deserialize)]
pub struct Session {
    pub openid: String,
    pub session_key: String,
    #[serde(default)]
    pub unionid: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("openid", &self.openid)
            .field("session_key", &"<redacted>")
            .field("unionid", &self.unionid)
            .finish()
    }
}

/// `phone_info` of 获取手机号. Personal data: `Debug` masks the numbers.
#[derive(Clone, Deserialize)]
pub struct PhoneInfo {
    /// With the country code for numbers outside mainland China.
    #[serde(rename = "phoneNumber")]
    pub phone_number: String,
    /// Without the country code.
    #[serde(rename = "purePhoneNumber")]
    pub pure_phone_number: String,
    /// Documented as a string, sent as a number in examples: both are accepted.
    #[serde(rename = "countryCode", deserialize_with = "string_or_number")]
    pub country_code: String,
}

impl std::fmt::Debug for PhoneInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked: String = {
            let n = &self.pure_phone_number;
            let keep = n.chars().count().saturating_sub(4);
            n.chars()
                .enumerate()
                .map(|(i, c)| if i < keep { '*' } else { c })
                .collect()
        };
        f.debug_struct("PhoneInfo")
            .field("pure_phone_number", &masked)
            .field("country_code", &self.country_code)
            .finish()
    }
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        N(i64),
    }
    Ok(match Either::deserialize(d)? {
        Either::S(s) => s,
        Either::N(n) => n.to_string(),
    })
}

/// Request of 文本内容安全识别 v2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MsgSecCheck {
    pub content: String,
    /// Always 2.
    pub version: u8,
    /// 1 资料, 2 评论, 3 论坛, 4 社交日志.
    pub scene: u8,
    /// The author, who must have used the mini-program in the last 2 hours.
    pub openid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl MsgSecCheck {
    /// Version 2 check of `content` written by `openid` in `scene`.
    pub fn new(openid: impl Into<String>, scene: u8, content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            version: 2,
            scene,
            openid: openid.into(),
            title: None,
            nickname: None,
            signature: None,
        }
    }
}

/// 建议 of a content check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suggest {
    Pass,
    Review,
    Risky,
    /// A value WeChat may add later; treat like `review`.
    #[serde(other)]
    Unknown,
}

/// The overall `result` of a content check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecResult {
    pub suggest: Suggest,
    /// 100 正常, 10001 广告, 20001 时政, 20002 色情, 20003 辱骂, 20006 违法犯罪, 20008 欺诈, 20012 低俗,
    /// 20013 版权, 21000 其他.
    pub label: i64,
}

/// One strategy's verdict (`detail`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecCheckDetail {
    pub strategy: String,
    #[serde(default)]
    pub errcode: i64,
    #[serde(default)]
    pub suggest: Option<Suggest>,
    #[serde(default)]
    pub label: Option<i64>,
    #[serde(default)]
    pub keyword: Option<String>,
    #[serde(default)]
    pub prob: Option<i64>,
}

/// Answer of 文本内容安全识别 v2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgSecCheckResult {
    #[serde(default)]
    pub trace_id: String,
    pub result: SecResult,
    #[serde(default)]
    pub detail: Vec<SecCheckDetail>,
}

/// 发送订阅消息: the user must have accepted the template (one message per acceptance).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubscribeMessage {
    pub touser: String,
    pub template_id: String,
    /// Page opened from the message, with query (`index?foo=bar`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    pub data: BTreeMap<String, TemplateValue>,
    /// `developer`, `trial` or `formal` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram_state: Option<String>,
    /// `zh_CN` (default), `en_US`, `zh_HK`, `zh_TW`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
}

/// 发送订阅通知 (公众号 订阅通知, `subscribe/bizsend`): the follower must have accepted the template
/// in a subscribe-notice popup (one notice per acceptance, or long-term for some templates).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BizSubscribeMessage {
    /// The follower's OpenID under the official account.
    pub touser: String,
    pub template_id: String,
    /// Web page opened from the notice (absolute URL); ignored when `miniprogram` is set and the
    /// client supports mini-programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Mini-program page opened from the notice (`appid`, `pagepath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram: Option<MiniProgram>,
    /// Keyword values, `{"thing1": {"value": "…"}}` (thing ≤ 20 characters, number, time, ...).
    pub data: BTreeMap<String, TemplateValue>,
}

/// Request of 获取不限制的小程序码.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WxaCodeUnlimit {
    /// Up to 32 visible characters, read back by the page as `scene`.
    pub scene: String,
    /// A published page, no leading slash; default the home page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// false allows unpublished pages (with `env_version` `trial`/`develop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_path: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_version: Option<String>,
    /// 280–1280 px.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_color: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_hyaline: Option<bool>,
}

/// The image of a mini-program code.
#[derive(Clone, PartialEq, Eq)]
pub struct WxaCode {
    /// `image/jpeg` or `image/png`.
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for WxaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxaCode")
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

#[derive(Serialize)]
struct CodeRequest<'a> {
    code: &'a str,
}

#[derive(Deserialize)]
struct PhoneResponse {
    phone_info: PhoneInfo,
}

impl Client {
    /// 小程序登录 (`GET sns/jscode2session`): the `code` from `wx.login` → OpenID and session key.
    /// Uses the AppSecret, not the access token. A bad code is `Error::Api { errcode: 40029 }`.
    pub async fn jscode2session(&self, js_code: &str) -> Result<Session> {
        let c = &self.inner.config;
        let call = Call::get(api::JSCODE2SESSION)
            .without_token()
            .query("appid", c.app_id.clone())
            .query("secret", c.app_secret.clone())
            .query("js_code", js_code)
            .query("grant_type", "authorization_code");
        // A code is single use: a retry after a timeout would only get 40163.
        let mut call = call;
        call.idempotent = false;
        self.call_json(call).await
    }

    /// 获取手机号 (`POST wxa/business/getuserphonenumber`): the `code` from the
    /// getPhoneNumber button → the user's phone.
    pub async fn get_user_phone_number(&self, code: &str) -> Result<PhoneInfo> {
        let resp: PhoneResponse = self
            .call_json(Call::post(
                api::GET_USER_PHONE_NUMBER,
                &CodeRequest { code },
            )?)
            .await?;
        Ok(resp.phone_info)
    }

    /// 文本内容安全识别 (`POST wxa/msg_sec_check`, version 2).
    pub async fn msg_sec_check(&self, req: &MsgSecCheck) -> Result<MsgSecCheckResult> {
        self.call_json(Call::post(api::MSG_SEC_CHECK, req)?.idempotent())
            .await
    }

    /// 发送订阅消息 (`POST cgi-bin/message/subscribe/send`). 43101: the user has not accepted
    /// (or has used up) the subscription.
    pub async fn subscribe_send(&self, msg: &SubscribeMessage) -> Result<()> {
        self.call_ok(Call::post(api::SUBSCRIBE_SEND, msg)?).await
    }

    /// 发送订阅通知 (`POST cgi-bin/message/subscribe/bizsend`), the official account's 订阅通知: call
    /// it on the official account's client. 43101: the user has not accepted (or has used up) the
    /// subscription; 43004 or 40003 as for other sends.
    pub async fn subscribe_bizsend(&self, msg: &BizSubscribeMessage) -> Result<()> {
        self.call_ok(Call::post(api::SUBSCRIBE_BIZSEND, msg)?).await
    }

    /// 获取不限制的小程序码 (`POST wxa/getwxacodeunlimit`) → image bytes. WeChat answers errors
    /// with JSON, which become `Error::Api`.
    pub async fn get_wxacode_unlimit(&self, req: &WxaCodeUnlimit) -> Result<WxaCode> {
        let raw = self
            .execute(&Call::post(api::WXACODE_UNLIMIT, req)?.idempotent())
            .await?;
        let content_type = raw.content_type.unwrap_or_else(|| "image/jpeg".into());
        if !content_type.starts_with("image/") {
            return Err(Error::Decode(format!(
                "{}: expected an image, got {content_type}",
                api::WXACODE_UNLIMIT
            )));
        }
        Ok(WxaCode {
            content_type,
            bytes: raw.body,
        })
    }
}
