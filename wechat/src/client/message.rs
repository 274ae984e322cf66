//! Sending to followers: 客服消息 (`message/custom/send`), 模板消息 (`message/template/send`,
//! `template/get_all_private_template`) and 群发 (`message/mass/sendall`, `message/mass/preview`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{api, Call, Client};
use crate::Result;

/// `{"content": ...}` of a text message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TextContent {
    pub content: String,
}

/// `{"media_id": ...}` of an mpnews message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaId {
    pub media_id: String,
}

/// One article card of a 客服消息 news message (WeChat shows one card).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewsArticle {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub url: String,
    #[serde(default)]
    pub picurl: String,
}

/// A mini-program card of a 客服消息 (`miniprogrampage`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MiniProgramPage {
    pub title: String,
    pub appid: String,
    pub pagepath: String,
    /// A 临时素材 image (520×416 recommended).
    pub thumb_media_id: String,
}

/// The body of a 客服消息, tagged by `msgtype`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "msgtype", rename_all = "lowercase")]
pub enum CustomBody {
    Text { text: TextContent },
    News { news: News },
    Miniprogrampage { miniprogrampage: MiniProgramPage },
}

/// `{"articles":[...]}` of a news 客服消息.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct News {
    pub articles: Vec<NewsArticle>,
}

/// 客服接口-发消息: allowed within 48 hours of the follower's last interaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CustomMessage {
    pub touser: String,
    #[serde(flatten)]
    pub body: CustomBody,
}

impl CustomMessage {
    /// A text message.
    pub fn text(touser: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            touser: touser.into(),
            body: CustomBody::Text {
                text: TextContent {
                    content: content.into(),
                },
            },
        }
    }

    /// A news message with one article card.
    pub fn news(touser: impl Into<String>, article: NewsArticle) -> Self {
        Self {
            touser: touser.into(),
            body: CustomBody::News {
                news: News {
                    articles: vec![article],
                },
            },
        }
    }

    /// A mini-program card.
    pub fn mini_program_page(touser: impl Into<String>, page: MiniProgramPage) -> Self {
        Self {
            touser: touser.into(),
            body: CustomBody::Miniprogrampage {
                miniprogrampage: page,
            },
        }
    }
}

/// `{"value": ...}` of one template keyword (模板消息 and 订阅消息 data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TemplateValue {
    pub value: String,
}

impl<S: Into<String>> From<S> for TemplateValue {
    fn from(s: S) -> Self {
        Self { value: s.into() }
    }
}

/// The mini-program a template message opens (`miniprogram`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MiniProgram {
    pub appid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagepath: Option<String>,
}

/// 发送模板消息 (service accounts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TemplateMessage {
    pub touser: String,
    pub template_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram: Option<MiniProgram>,
    /// 防重入 id: WeChat sends one message per (touser, client_msg_id) within 10 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// Keyword name (e.g. `thing1`, `time2`) → value.
    pub data: BTreeMap<String, TemplateValue>,
}

/// One template of 获取模板列表.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInfo {
    pub template_id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub primary_industry: String,
    #[serde(default)]
    pub deputy_industry: String,
    /// The template text, e.g. `{{thing1.DATA}}`.
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub example: String,
}

/// Who gets a 群发: everybody, or one tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MassFilter {
    pub is_to_all: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_id: Option<i64>,
}

impl MassFilter {
    /// All followers (enters the account's history list).
    pub fn all() -> Self {
        Self {
            is_to_all: true,
            tag_id: None,
        }
    }

    /// Followers with tag `tag_id`.
    pub fn tag(tag_id: i64) -> Self {
        Self {
            is_to_all: false,
            tag_id: Some(tag_id),
        }
    }
}

/// What a 群发 or 预览 carries, tagged by `msgtype`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msgtype", rename_all = "lowercase")]
pub enum MassContent {
    /// 图文: the `media_id` of a draft (新建草稿, [`Client::draft_add`]).
    Mpnews {
        mpnews: MediaId,
    },
    Text {
        text: TextContent,
    },
}

impl MassContent {
    /// 图文 from a draft's `media_id`.
    pub fn mpnews(media_id: impl Into<String>) -> Self {
        Self::Mpnews {
            mpnews: MediaId {
                media_id: media_id.into(),
            },
        }
    }

    /// 文本.
    pub fn text(content: impl Into<String>) -> Self {
        Self::Text {
            text: TextContent {
                content: content.into(),
            },
        }
    }
}

/// 根据标签进行群发 (`message/mass/sendall`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MassMessage {
    pub filter: MassFilter,
    #[serde(flatten)]
    pub content: MassContent,
    /// 1: send even when the article is judged a reprint; 0: stop.
    #[serde(default)]
    pub send_ignore_reprint: i32,
    /// 防重入 id: a second sendall with the same id within 24 h fails with 45065.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clientmsgid: Option<String>,
}

/// Answer of 群发: the job id (`msg_id`, reported back by the MASSSENDJOBFINISH event) and, for
/// mpnews, the article's `msg_data_id`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct MassSendResult {
    pub msg_id: i64,
    #[serde(default)]
    pub msg_data_id: Option<i64>,
}

#[derive(Serialize)]
struct PreviewRequest<'a> {
    touser: &'a str,
    #[serde(flatten)]
    content: &'a MassContent,
}

#[derive(Deserialize)]
struct MsgIdResponse {
    msgid: i64,
}

#[derive(Deserialize)]
struct TemplateListResponse {
    #[serde(default)]
    template_list: Vec<TemplateInfo>,
}

impl Client {
    /// 客服接口-发消息 (`POST cgi-bin/message/custom/send`). WeChat returns no message id.
    /// 43004: the user does not follow; 45047: over the 客服 quota for this user.
    pub async fn custom_send(&self, msg: &CustomMessage) -> Result<()> {
        self.call_ok(Call::post(api::CUSTOM_SEND, msg)?).await
    }

    /// 发送模板消息 (`POST cgi-bin/message/template/send`) → `msgid` (reported back by the
    /// TEMPLATESENDJOBFINISH event).
    pub async fn template_send(&self, msg: &TemplateMessage) -> Result<i64> {
        let resp: MsgIdResponse = self.call_json(Call::post(api::TEMPLATE_SEND, msg)?).await?;
        Ok(resp.msgid)
    }

    /// 获取模板列表 (`GET cgi-bin/template/get_all_private_template`).
    pub async fn template_list(&self) -> Result<Vec<TemplateInfo>> {
        let resp: TemplateListResponse = self.call_json(Call::get(api::TEMPLATE_LIST)).await?;
        Ok(resp.template_list)
    }

    /// 根据标签进行群发 (`POST cgi-bin/message/mass/sendall`), to all followers or one tag.
    pub async fn mass_send_all(&self, msg: &MassMessage) -> Result<MassSendResult> {
        self.call_json(Call::post(api::MASS_SENDALL, msg)?).await
    }

    /// 预览接口 (`POST cgi-bin/message/mass/preview`): send `content` to one follower to check it.
    pub async fn mass_preview(&self, touser: &str, content: &MassContent) -> Result<()> {
        self.call_ok(Call::post(
            api::MASS_PREVIEW,
            &PreviewRequest { touser, content },
        )?)
        .await
    }
}
