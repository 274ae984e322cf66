//! Passive replies (被动回复用户消息) and the safe-mode envelopes (消息加解密说明).

use crate::xml::{parse_flat, XmlWriter};
use crate::{Error, Result};

/// A passive reply, rendered with [`Reply::to_xml`]. Every text value is written as CDATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 回复文本消息
    Text { content: String },
    /// 回复图片消息
    Image { media_id: String },
    /// 回复语音消息
    Voice { media_id: String },
    /// 回复视频消息
    Video { media_id: String, title: Option<String>, description: Option<String> },
    /// 回复音乐消息
    Music {
        title: Option<String>,
        description: Option<String>,
        music_url: Option<String>,
        hq_music_url: Option<String>,
        thumb_media_id: String,
    },
    /// 回复图文消息: exactly one card (WeChat's current limit for passive replies).
    News { article: NewsArticle },
    /// 消息转发到客服 (`transfer_customer_service`), optionally to one agent (`KfAccount`).
    TransferCustomerService { kf_account: Option<String> },
}

/// One article card of a news reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewsArticle {
    pub title: String,
    pub description: String,
    pub pic_url: String,
    pub url: String,
}

impl Reply {
    /// The `MsgType` of this reply.
    pub fn msg_type(&self) -> &'static str {
        match self {
            Reply::Text { .. } => "text",
            Reply::Image { .. } => "image",
            Reply::Voice { .. } => "voice",
            Reply::Video { .. } => "video",
            Reply::Music { .. } => "music",
            Reply::News { .. } => "news",
            Reply::TransferCustomerService { .. } => "transfer_customer_service",
        }
    }

    /// Renders the reply XML. `to_user` is the follower's OpenID (the message's `FromUserName`),
    /// `from_user` the account's original id (the message's `ToUserName`).
    pub fn to_xml(&self, to_user: &str, from_user: &str, create_time: i64) -> String {
        let mut w = XmlWriter::new();
        w.cdata("ToUserName", to_user)
            .cdata("FromUserName", from_user)
            .number("CreateTime", create_time)
            .cdata("MsgType", self.msg_type());
        let opt = |w: &mut XmlWriter, name: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                w.cdata(name, v);
            }
        };
        match self {
            Reply::Text { content } => {
                w.cdata("Content", content);
            }
            Reply::Image { media_id } => {
                w.open("Image").cdata("MediaId", media_id).close("Image");
            }
            Reply::Voice { media_id } => {
                w.open("Voice").cdata("MediaId", media_id).close("Voice");
            }
            Reply::Video { media_id, title, description } => {
                w.open("Video").cdata("MediaId", media_id);
                opt(&mut w, "Title", title);
                opt(&mut w, "Description", description);
                w.close("Video");
            }
            Reply::Music { title, description, music_url, hq_music_url, thumb_media_id } => {
                w.open("Music");
                opt(&mut w, "Title", title);
                opt(&mut w, "Description", description);
                opt(&mut w, "MusicUrl", music_url);
                opt(&mut w, "HQMusicUrl", hq_music_url);
                w.cdata("ThumbMediaId", thumb_media_id).close("Music");
            }
            Reply::News { article } => {
                w.number("ArticleCount", 1)
                    .open("Articles")
                    .open("item")
                    .cdata("Title", &article.title)
                    .cdata("Description", &article.description)
                    .cdata("PicUrl", &article.pic_url)
                    .cdata("Url", &article.url)
                    .close("item")
                    .close("Articles");
            }
            Reply::TransferCustomerService { kf_account } => {
                if let Some(kf) = kf_account {
                    w.open("TransInfo").cdata("KfAccount", kf).close("TransInfo");
                }
            }
        }
        w.finish()
    }
}

/// The encrypted reply envelope (safe mode): `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`.
pub fn encrypted_reply_xml(encrypt: &str, msg_signature: &str, timestamp: &str, nonce: &str) -> String {
    let mut w = XmlWriter::new();
    w.cdata("Encrypt", encrypt)
        .cdata("MsgSignature", msg_signature)
        .text("TimeStamp", timestamp)
        .cdata("Nonce", nonce);
    w.finish()
}

/// The encrypted request envelope WeChat POSTs in safe and compatible mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedEnvelope {
    /// `ToUserName`: the account's original id (absent in some pushes).
    pub to_user: Option<String>,
    /// `Encrypt`: the base64 ciphertext, input to `MessageCrypto::decrypt` and `msg_signature`.
    pub encrypt: String,
}

/// Reads `<xml><ToUserName/><Encrypt/></xml>`, with the same safety rules as
/// [`parse_flat`] (no DOCTYPE, no entities). A missing or empty `Encrypt` is `Error::Decode`.
pub fn parse_encrypted_envelope(xml: &str) -> Result<EncryptedEnvelope> {
    let f = parse_flat(xml)?;
    let encrypt = f
        .get("Encrypt")
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| Error::Decode("missing field Encrypt".into()))?;
    Ok(EncryptedEnvelope {
        to_user: f.get("ToUserName").filter(|s| !s.is_empty()).map(str::to_owned),
        encrypt: encrypt.to_owned(),
    })
}
