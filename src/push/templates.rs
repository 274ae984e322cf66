//! Push layouts: `content/templates/{template_message,custom_news,subscribe,subscribe_oa,mass}.toml`, each value
//! a minijinja template. Files in `DANGJIAN_CONTENT_DIR/templates/` override the built-in copies;
//! they are read when a push starts (and for each preview), so wording changes need no deploy.

use std::{collections::BTreeMap, path::Path};

use anyhow::Context;
use minijinja::Environment;
use serde::{Deserialize, Serialize};
use wechat::client::{
    BizSubscribeMessage, CustomMessage, MiniProgram, NewsArticle, SubscribeMessage,
    TemplateMessage, TemplateValue,
};

use super::{limits, Channel, Notice};

const BUILTIN_TEMPLATE_MESSAGE: &str =
    include_str!("../../content/templates/template_message.toml");
const BUILTIN_CUSTOM_NEWS: &str = include_str!("../../content/templates/custom_news.toml");
const BUILTIN_SUBSCRIBE: &str = include_str!("../../content/templates/subscribe.toml");
const BUILTIN_SUBSCRIBE_OA: &str = include_str!("../../content/templates/subscribe_oa.toml");
const BUILTIN_MASS: &str = include_str!("../../content/templates/mass.toml");

#[derive(Debug, Clone, Deserialize)]
struct TemplateMessageFile {
    template_id: Option<String>,
    url: Option<String>,
    data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
struct CustomNewsFile {
    title: String,
    #[serde(default)]
    description: String,
    url: String,
    #[serde(default)]
    picurl: String,
}

#[derive(Debug, Clone, Deserialize)]
struct SubscribeFile {
    template_id: String,
    page: Option<String>,
    data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MassFormat {
    Text,
    Mpnews,
}

#[derive(Debug, Clone, Deserialize)]
struct MassFile {
    format: MassFormat,
    #[serde(default)]
    thumb_media_id: String,
    #[serde(default)]
    text: String,
}

/// One article as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct ArticleView {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub url: String,
    pub cover_url: String,
    pub category: String,
    pub author: String,
    pub published_at: String,
    pub published_date: String,
    /// For mpnews drafts only (not in the template context).
    #[serde(skip)]
    pub body_html: String,
}

/// What a push renders from: its articles and id.
#[derive(Debug, Clone)]
pub struct PushContext {
    pub push_id: i64,
    pub articles: Vec<ArticleView>,
    pub now: String,
}

/// What the mass channel sends (one call per push).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum MassPlan {
    Text { text: String },
    Mpnews { thumb_media_id: String },
}

/// The rendered message of one channel for one recipient, as it would be sent.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(tag = "channel", rename_all = "lowercase")]
pub enum Rendered {
    Template {
        message: TemplateMessage,
    },
    Custom {
        message: CustomMessage,
    },
    Subscribe {
        message: SubscribeMessage,
    },
    /// The account's subscribe notice (订阅通知, `bizsend`); `channel` reads `subscribe_oa`.
    #[serde(rename = "subscribe_oa")]
    SubscribeOa {
        message: BizSubscribeMessage,
    },
    Mass {
        plan: MassPlan,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {name}: {source}")]
    Template {
        name: String,
        source: minijinja::Error,
    },
    #[error(transparent)]
    Invalid(#[from] limits::InvalidValue),
    #[error("{0}")]
    Config(String),
}

/// All push layouts, compiled.
pub struct Templates {
    env: Environment<'static>,
    template_id: Option<String>,
    template_data: Vec<String>,
    template_has_url: bool,
    subscribe_template_id: String,
    subscribe_data: Vec<String>,
    subscribe_has_page: bool,
    oa_subscribe_template_id: String,
    oa_subscribe_data: Vec<String>,
    oa_subscribe_has_page: bool,
    mass_format: MassFormat,
    mass_thumb: String,
    /// Some layout mentions `recipient`: render per recipient, not once per push.
    personal: bool,
}

fn read(dir: &Path, name: &str, builtin: &str) -> anyhow::Result<String> {
    let path = dir.join("templates").join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(builtin.to_owned()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

impl Templates {
    /// The layouts in `content_dir/templates/`, built-in copies for files it lacks.
    pub fn load(content_dir: &Path) -> anyhow::Result<Templates> {
        let parse = |name: &str, builtin: &str| -> anyhow::Result<toml::Value> {
            toml::from_str(&read(content_dir, name, builtin)?)
                .with_context(|| format!("templates/{name}"))
        };
        let tm: TemplateMessageFile = parse("template_message.toml", BUILTIN_TEMPLATE_MESSAGE)?
            .try_into()
            .context("templates/template_message.toml")?;
        let cn: CustomNewsFile = parse("custom_news.toml", BUILTIN_CUSTOM_NEWS)?
            .try_into()
            .context("templates/custom_news.toml")?;
        let sb: SubscribeFile = parse("subscribe.toml", BUILTIN_SUBSCRIBE)?
            .try_into()
            .context("templates/subscribe.toml")?;
        let sb_oa: SubscribeFile = parse("subscribe_oa.toml", BUILTIN_SUBSCRIBE_OA)?
            .try_into()
            .context("templates/subscribe_oa.toml")?;
        let ms: MassFile = parse("mass.toml", BUILTIN_MASS)?
            .try_into()
            .context("templates/mass.toml")?;

        let personal = [
            &read(
                content_dir,
                "template_message.toml",
                BUILTIN_TEMPLATE_MESSAGE,
            )?,
            &read(content_dir, "custom_news.toml", BUILTIN_CUSTOM_NEWS)?,
            &read(content_dir, "subscribe.toml", BUILTIN_SUBSCRIBE)?,
            &read(content_dir, "subscribe_oa.toml", BUILTIN_SUBSCRIBE_OA)?,
        ]
        .iter()
        .any(|src| {
            src.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .any(|l| l.contains("recipient"))
        });
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let mut add = |name: String, src: String| -> anyhow::Result<()> {
            env.add_template_owned(name.clone(), src)
                .with_context(|| format!("template {name}"))
        };
        if let Some(url) = &tm.url {
            add("template.url".into(), url.clone())?;
        }
        for (k, v) in &tm.data {
            add(format!("template.data.{k}"), v.clone())?;
        }
        add("custom.title".into(), cn.title)?;
        add("custom.description".into(), cn.description)?;
        add("custom.url".into(), cn.url)?;
        add("custom.picurl".into(), cn.picurl)?;
        if let Some(page) = &sb.page {
            add("subscribe.page".into(), page.clone())?;
        }
        for (k, v) in &sb.data {
            add(format!("subscribe.data.{k}"), v.clone())?;
        }
        if let Some(page) = &sb_oa.page {
            add("subscribe_oa.page".into(), page.clone())?;
        }
        for (k, v) in &sb_oa.data {
            add(format!("subscribe_oa.data.{k}"), v.clone())?;
        }
        add("mass.text".into(), ms.text.clone())?;
        anyhow::ensure!(
            ms.format != MassFormat::Mpnews || !ms.thumb_media_id.is_empty(),
            "templates/mass.toml: format \"mpnews\" needs thumb_media_id"
        );
        Ok(Templates {
            env,
            template_id: tm.template_id.filter(|t| !t.is_empty()),
            template_data: tm.data.keys().cloned().collect(),
            template_has_url: tm.url.is_some(),
            subscribe_template_id: sb.template_id,
            subscribe_data: sb.data.keys().cloned().collect(),
            subscribe_has_page: sb.page.is_some(),
            oa_subscribe_template_id: sb_oa.template_id,
            oa_subscribe_data: sb_oa.data.keys().cloned().collect(),
            oa_subscribe_has_page: sb_oa.page.is_some(),
            mass_format: ms.format,
            mass_thumb: ms.thumb_media_id,
            personal,
        })
    }

    /// Whether a layout depends on the recipient; if not, a push renders once and only `touser`
    /// changes (rendering is most of a send's CPU time).
    pub fn is_personal(&self) -> bool {
        self.personal
    }

    /// The subscribe-message template recipients must have accepted.
    pub fn subscribe_template_id(&self) -> &str {
        &self.subscribe_template_id
    }

    /// The account's subscribe-notice template followers must have accepted.
    pub fn oa_subscribe_template_id(&self) -> &str {
        &self.oa_subscribe_template_id
    }

    /// The consent template of a channel that needs one.
    pub fn consent_template_id(&self, channel: Channel) -> Option<&str> {
        match channel {
            Channel::Subscribe => Some(&self.subscribe_template_id),
            Channel::SubscribeOa => Some(&self.oa_subscribe_template_id),
            _ => None,
        }
    }

    /// The template-message template id: the file's, else `default` (the setting).
    pub fn template_id<'a>(&'a self, default: &'a str) -> &'a str {
        self.template_id.as_deref().unwrap_or(default)
    }

    fn render_one(&self, name: &str, cx: &minijinja::Value) -> Result<String, RenderError> {
        let t = self
            .env
            .get_template(name)
            .map_err(|source| RenderError::Template {
                name: name.into(),
                source,
            })?;
        t.render(cx).map_err(|source| RenderError::Template {
            name: name.into(),
            source,
        })
    }

    fn data(
        &self,
        prefix: &str,
        keys: &[String],
        cx: &minijinja::Value,
    ) -> Result<BTreeMap<String, TemplateValue>, RenderError> {
        let mut data = BTreeMap::new();
        for k in keys {
            let raw = self.render_one(&format!("{prefix}.data.{k}"), cx)?;
            data.insert(
                k.clone(),
                TemplateValue {
                    value: limits::enforce(k, &raw)?,
                },
            );
        }
        Ok(data)
    }

    /// Render `channel` for `openid` (empty for a mass send), limits enforced.
    pub fn render(
        &self,
        channel: Channel,
        push: &PushContext,
        openid: &str,
        news_template_id: &str,
    ) -> Result<Rendered, RenderError> {
        let first = push
            .articles
            .first()
            .ok_or_else(|| RenderError::Config("a push needs at least one article".into()))?;
        let cx = minijinja::context! {
            article => first,
            articles => &push.articles,
            recipient => minijinja::context! { openid => openid },
            push => minijinja::context! { id => push.push_id },
            now => &push.now,
        };
        Ok(match channel {
            Channel::Template => {
                let url = if self.template_has_url {
                    Some(self.render_one("template.url", &cx)?)
                } else {
                    None
                };
                Rendered::Template {
                    message: TemplateMessage {
                        touser: openid.to_owned(),
                        template_id: self.template_id(news_template_id).to_owned(),
                        url: url.filter(|u| !u.is_empty()),
                        miniprogram: None,
                        client_msg_id: None,
                        data: self.data("template", &self.template_data, &cx)?,
                    },
                }
            }
            Channel::Custom => Rendered::Custom {
                message: CustomMessage::news(
                    openid,
                    NewsArticle {
                        title: limits::truncate(&self.render_one("custom.title", &cx)?, 64),
                        description: limits::truncate(
                            &self.render_one("custom.description", &cx)?,
                            120,
                        ),
                        url: self.render_one("custom.url", &cx)?,
                        picurl: self.render_one("custom.picurl", &cx)?,
                    },
                ),
            },
            Channel::Subscribe => {
                let page = if self.subscribe_has_page {
                    Some(self.render_one("subscribe.page", &cx)?)
                } else {
                    None
                };
                Rendered::Subscribe {
                    message: SubscribeMessage {
                        touser: openid.to_owned(),
                        template_id: self.subscribe_template_id.clone(),
                        page: page.filter(|p| !p.is_empty()),
                        data: self.data("subscribe", &self.subscribe_data, &cx)?,
                        miniprogram_state: None,
                        lang: None,
                    },
                }
            }
            Channel::SubscribeOa => {
                let page = if self.oa_subscribe_has_page {
                    Some(self.render_one("subscribe_oa.page", &cx)?)
                } else {
                    None
                };
                Rendered::SubscribeOa {
                    message: BizSubscribeMessage {
                        touser: openid.to_owned(),
                        template_id: self.oa_subscribe_template_id.clone(),
                        page: page.filter(|p| !p.is_empty()),
                        miniprogram: None,
                        data: self.data("subscribe_oa", &self.oa_subscribe_data, &cx)?,
                    },
                }
            }
            Channel::Mass => Rendered::Mass {
                plan: match self.mass_format {
                    MassFormat::Text => {
                        let text = self.render_one("mass.text", &cx)?;
                        if text.trim().is_empty() {
                            return Err(RenderError::Config(
                                "templates/mass.toml: the text is empty".into(),
                            ));
                        }
                        MassPlan::Text {
                            text: text.trim().to_owned(),
                        }
                    }
                    MassFormat::Mpnews => MassPlan::Mpnews {
                        thumb_media_id: self.mass_thumb.clone(),
                    },
                },
            },
        })
    }
}

/// The longest customer-service text a notice sends (WeChat allows 2048 bytes).
pub const NOTICE_TEXT_MAX: usize = 600;

/// Render a notice for `channel` to `openid`: the push's `template_id` for template and subscribe
/// channels, `mp_app_id` for the mini-program link of template messages and the account's
/// subscribe notices. Values are checked against WeChat's limits (free text truncated, times and
/// amounts refused when malformed). Pure: the same input renders the same message.
pub fn render_notice(
    channel: Channel,
    notice: &Notice,
    openid: &str,
    template_id: Option<&str>,
    mp_app_id: &str,
) -> Result<Rendered, RenderError> {
    let template_id = || -> Result<String, RenderError> {
        match template_id.filter(|t| !t.trim().is_empty()) {
            Some(t) => Ok(t.to_owned()),
            None => Err(RenderError::Config(format!(
                "channel {}: a notice needs a template id",
                channel.as_str()
            ))),
        }
    };
    let data = || -> Result<BTreeMap<String, TemplateValue>, RenderError> {
        if notice.data.is_empty() {
            return Err(RenderError::Config(format!(
                "channel {}: a notice needs template data",
                channel.as_str()
            )));
        }
        notice
            .data
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    TemplateValue {
                        value: limits::enforce(k, v)?,
                    },
                ))
            })
            .collect()
    };
    let miniprogram = || {
        notice
            .page
            .as_ref()
            .filter(|_| !mp_app_id.is_empty())
            .map(|p| MiniProgram {
                appid: mp_app_id.to_owned(),
                pagepath: Some(p.clone()),
            })
    };
    Ok(match channel {
        Channel::Template => Rendered::Template {
            message: TemplateMessage {
                touser: openid.to_owned(),
                template_id: template_id()?,
                url: notice.url.clone(),
                miniprogram: miniprogram(),
                client_msg_id: None,
                data: data()?,
            },
        },
        Channel::Custom => {
            let mut text = format!("【{}】{}", notice.title.trim(), notice.text.trim());
            if let Some(url) = &notice.url {
                text = format!("{text}\n{url}");
            }
            Rendered::Custom {
                message: CustomMessage::text(openid, limits::truncate(&text, NOTICE_TEXT_MAX)),
            }
        }
        Channel::Subscribe => Rendered::Subscribe {
            message: SubscribeMessage {
                touser: openid.to_owned(),
                template_id: template_id()?,
                page: notice.page.clone(),
                data: data()?,
                miniprogram_state: None,
                lang: None,
            },
        },
        Channel::SubscribeOa => Rendered::SubscribeOa {
            message: BizSubscribeMessage {
                touser: openid.to_owned(),
                template_id: template_id()?,
                page: notice.url.clone(),
                miniprogram: miniprogram(),
                data: data()?,
            },
        },
        Channel::Mass => {
            return Err(RenderError::Config(
                "notices go to members one by one, never by mass send".into(),
            ))
        }
    })
}

/// `2024年10月1日 15:01` in Asia/Shanghai.
pub fn shanghai_datetime(unix_ms: i64) -> String {
    let t = to_shanghai(unix_ms);
    format!(
        "{}年{}月{}日 {:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `2024年10月1日` in Asia/Shanghai.
pub fn shanghai_date(unix_ms: i64) -> String {
    let t = to_shanghai(unix_ms);
    format!("{}年{}月{}日", t.year(), t.month() as u8, t.day())
}

/// China has one time zone and no daylight saving: Asia/Shanghai is UTC+8 all year.
pub const SHANGHAI: time::UtcOffset = match time::UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => panic!("UTC+8 is a valid offset"),
};

pub fn to_shanghai(unix_ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(unix_ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(SHANGHAI)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PushContext {
        PushContext {
            push_id: 7,
            now: shanghai_datetime(1_727_766_060_000),
            articles: vec![ArticleView {
                id: 3,
                title: "学习贯彻党的二十届三中全会精神专题党课通知全文".into(),
                summary: "摘要".into(),
                url: "http://x/articles/3".into(),
                cover_url: "http://x/c.png".into(),
                category: "党建动态".into(),
                author: "宣传部".into(),
                published_at: shanghai_datetime(1_727_766_060_000),
                published_date: shanghai_date(1_727_766_060_000),
                body_html: "<p>x</p>".into(),
            }],
        }
    }

    #[test]
    fn builtin_layouts_render_within_wechat_limits() {
        let t = Templates::load(Path::new("/nonexistent")).unwrap();
        let Rendered::Template { message } =
            t.render(Channel::Template, &ctx(), "o1", "tpl").unwrap()
        else {
            panic!()
        };
        assert_eq!(message.template_id, "tpl");
        assert_eq!(message.url.as_deref(), Some("http://x/articles/3"));
        assert_eq!(message.data["thing1"].value.chars().count(), 20);
        assert_eq!(message.data["time3"].value, "2024年10月1日 15:01");
        let Rendered::Custom { message } = t.render(Channel::Custom, &ctx(), "o1", "tpl").unwrap()
        else {
            panic!()
        };
        assert_eq!(message.touser, "o1");
        let Rendered::Subscribe { message } =
            t.render(Channel::Subscribe, &ctx(), "o1", "tpl").unwrap()
        else {
            panic!()
        };
        assert_eq!(message.page.as_deref(), Some("pages/article/index?id=3"));
        let Rendered::SubscribeOa { message } =
            t.render(Channel::SubscribeOa, &ctx(), "o1", "tpl").unwrap()
        else {
            panic!()
        };
        assert_eq!(message.touser, "o1");
        assert_eq!(message.page.as_deref(), Some("http://x/articles/3"));
        assert_eq!(message.data["thing1"].value.chars().count(), 20);
        let Rendered::Mass {
            plan: MassPlan::Text { text },
        } = t.render(Channel::Mass, &ctx(), "", "tpl").unwrap()
        else {
            panic!()
        };
        assert!(text.contains("【党建动态】"));
    }

    fn notice() -> Notice {
        Notice {
            kind: "activity_cancelled".into(),
            title: "活动取消".into(),
            text: "您报名的活动已取消。".into(),
            url: Some("https://x/a/1".into()),
            page: Some("pages/activity/index?id=1".into()),
            data: [
                (
                    "thing1".to_owned(),
                    "学习贯彻党的二十届三中全会精神专题党课通知全文".to_owned(),
                ),
                ("time2".to_owned(), shanghai_datetime(1_727_766_060_000)),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn notices_render_per_channel() {
        let n = notice();
        struct Case {
            channel: Channel,
            want_link: Option<&'static str>,
        }
        let cases = [
            Case {
                channel: Channel::Template,
                want_link: Some("https://x/a/1"),
            },
            Case {
                channel: Channel::Subscribe,
                want_link: Some("pages/activity/index?id=1"),
            },
            Case {
                channel: Channel::SubscribeOa,
                want_link: Some("https://x/a/1"),
            },
        ];
        for c in cases {
            let r = render_notice(c.channel, &n, "o1", Some("tpl"), "wxmp").unwrap();
            let (touser, template_id, link, data, mp) = match r {
                Rendered::Template { message: m } => {
                    (m.touser, m.template_id, m.url, m.data, m.miniprogram)
                }
                Rendered::Subscribe { message: m } => {
                    (m.touser, m.template_id, m.page, m.data, None)
                }
                Rendered::SubscribeOa { message: m } => {
                    (m.touser, m.template_id, m.page, m.data, m.miniprogram)
                }
                other => panic!("{:?}: {other:?}", c.channel),
            };
            assert_eq!(touser, "o1");
            assert_eq!(template_id, "tpl");
            assert_eq!(link.as_deref(), c.want_link, "{:?}", c.channel);
            // A `thing` is cut to 20 characters, a time kept as it is.
            assert_eq!(data["thing1"].value.chars().count(), 20, "{:?}", c.channel);
            assert_eq!(data["time2"].value, "2024年10月1日 15:01");
            if c.channel != Channel::Subscribe {
                assert_eq!(
                    mp.and_then(|m| m.pagepath).as_deref(),
                    Some("pages/activity/index?id=1")
                );
            }
        }
        let Rendered::Custom { message } =
            render_notice(Channel::Custom, &n, "o1", None, "wxmp").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            message,
            CustomMessage::text("o1", "【活动取消】您报名的活动已取消。\nhttps://x/a/1")
        );
    }

    #[test]
    fn notices_refuse_what_wechat_would_refuse_for_everyone() {
        let n = notice();
        // No template id, no data, a malformed time, a mass send.
        assert!(render_notice(Channel::Subscribe, &n, "o1", None, "").is_err());
        assert!(render_notice(Channel::Template, &n, "o1", Some(" "), "").is_err());
        let empty = Notice {
            data: BTreeMap::new(),
            ..notice()
        };
        assert!(render_notice(Channel::Subscribe, &empty, "o1", Some("t"), "").is_err());
        let mut bad = notice();
        bad.data.insert("time2".into(), "明天下午".into());
        let err = render_notice(Channel::Subscribe, &bad, "o1", Some("t"), "").unwrap_err();
        assert!(err.to_string().contains("time2"), "{err}");
        assert!(render_notice(Channel::Mass, &n, "", None, "").is_err());
        // Customer-service text needs neither template nor data, and is bounded.
        let long = Notice {
            text: "长".repeat(2000),
            url: None,
            ..empty
        };
        let Rendered::Custom { message } =
            render_notice(Channel::Custom, &long, "o1", None, "").unwrap()
        else {
            panic!()
        };
        let wechat::client::CustomBody::Text { text } = message.body else {
            panic!()
        };
        assert_eq!(text.content.chars().count(), NOTICE_TEXT_MAX);
    }

    #[test]
    fn a_file_in_the_content_dir_overrides_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        std::fs::write(
            dir.path().join("templates/template_message.toml"),
            "template_id = \"own\"\n[data]\nfirst = \"{{ article.title }}\"\ntime2 = \"{{ article.summary }}\"\n",
        )
        .unwrap();
        let t = Templates::load(dir.path()).unwrap();
        let err = t
            .render(Channel::Template, &ctx(), "o1", "tpl")
            .unwrap_err();
        assert!(err.to_string().contains("time2"), "{err}");
    }
}
