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
    Video {
        media_id: String,
        title: Option<String>,
        description: Option<String>,
    },
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
#[derive(Debug, Clone, PartialEq, Eq, schemars::JsonSchema)]
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
        // Most replies (a text answer, a news card) fit without growing the buffer.
        let mut w = XmlWriter::with_capacity(512);
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
            Reply::Video {
                media_id,
                title,
                description,
            } => {
                w.open("Video").cdata("MediaId", media_id);
                opt(&mut w, "Title", title);
                opt(&mut w, "Description", description);
                w.close("Video");
            }
            Reply::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            } => {
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
                    w.open("TransInfo")
                        .cdata("KfAccount", kf)
                        .close("TransInfo");
                }
            }
        }
        w.finish()
    }
}

/// The encrypted reply envelope (safe mode): `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`.
pub fn encrypted_reply_xml(
    encrypt: &str,
    msg_signature: &str,
    timestamp: &str,
    nonce: &str,
) -> String {
    // The markup around the four values is under 200 bytes.
    let mut w = XmlWriter::with_capacity(
        encrypt.len() + msg_signature.len() + timestamp.len() + nonce.len() + 200,
    );
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
        to_user: f
            .get("ToUserName")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        encrypt: encrypt.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse_flat, XmlFields};

    fn fields(reply: &Reply) -> XmlFields {
        let xml = reply.to_xml("oFollower", "gh_account", 1700000000);
        parse_flat(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"))
    }

    fn header_ok(f: &XmlFields, msg_type: &str) {
        assert_eq!(f.get("ToUserName"), Some("oFollower"));
        assert_eq!(f.get("FromUserName"), Some("gh_account"));
        assert_eq!(f.get("CreateTime"), Some("1700000000"));
        assert_eq!(f.get("MsgType"), Some(msg_type));
    }

    #[test]
    fn text_reply_matches_the_documented_shape() {
        let xml = Reply::Text {
            content: "你好".into(),
        }
        .to_xml("toUser", "fromUser", 12345678);
        assert_eq!(
            xml,
            "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName>\
             <CreateTime>12345678</CreateTime><MsgType><![CDATA[text]]></MsgType>\
             <Content><![CDATA[你好]]></Content></xml>"
        );
    }

    #[test]
    fn content_with_cdata_terminator_round_trips() {
        for content in [
            "]]>",
            "a]]><MsgType>news</MsgType><![CDATA[",
            "]]]]>>]]>",
            "</Content></xml>",
            "x]]",
        ] {
            let f = fields(&Reply::Text {
                content: content.into(),
            });
            header_ok(&f, "text");
            assert_eq!(f.get("Content"), Some(content));
            assert_eq!(f.get_all("MsgType").count(), 1, "injected a second MsgType");
            assert_eq!(f.len(), 5);
        }
    }

    #[test]
    fn media_replies() {
        let f = fields(&Reply::Image {
            media_id: "m1".into(),
        });
        header_ok(&f, "image");
        assert_eq!(f.get("Image.MediaId"), Some("m1"));
        let f = fields(&Reply::Voice {
            media_id: "m2".into(),
        });
        header_ok(&f, "voice");
        assert_eq!(f.get("Voice.MediaId"), Some("m2"));

        let f = fields(&Reply::Video {
            media_id: "m3".into(),
            title: Some("标题".into()),
            description: None,
        });
        header_ok(&f, "video");
        assert_eq!(
            (
                f.get("Video.MediaId"),
                f.get("Video.Title"),
                f.get("Video.Description")
            ),
            (Some("m3"), Some("标题"), None)
        );

        let f = fields(&Reply::Music {
            title: Some("t".into()),
            description: Some("d".into()),
            music_url: Some("http://a/m.mp3?x=1&y=2".into()),
            hq_music_url: None,
            thumb_media_id: "th".into(),
        });
        header_ok(&f, "music");
        assert_eq!(f.get("Music.Title"), Some("t"));
        assert_eq!(f.get("Music.Description"), Some("d"));
        assert_eq!(f.get("Music.MusicUrl"), Some("http://a/m.mp3?x=1&y=2"));
        assert_eq!(f.get("Music.HQMusicUrl"), None);
        assert_eq!(f.get("Music.ThumbMediaId"), Some("th"));
    }

    #[test]
    fn news_reply_has_exactly_one_article() {
        let article = NewsArticle {
            title: "党建动态".into(),
            description: "支部学习 <b>]]></b>".into(),
            pic_url: "https://example.com/p.jpg".into(),
            url: "https://example.com/a/1?x=1&y=2".into(),
        };
        let f = fields(&Reply::News {
            article: article.clone(),
        });
        header_ok(&f, "news");
        assert_eq!(f.get("ArticleCount"), Some("1"));
        assert_eq!(
            f.get_all("Articles.item.Title").collect::<Vec<_>>(),
            [article.title.as_str()]
        );
        assert_eq!(
            f.get("Articles.item.Description"),
            Some(article.description.as_str())
        );
        assert_eq!(
            f.get("Articles.item.PicUrl"),
            Some(article.pic_url.as_str())
        );
        assert_eq!(f.get("Articles.item.Url"), Some(article.url.as_str()));
    }

    #[test]
    fn transfer_customer_service_with_and_without_agent() {
        let f = fields(&Reply::TransferCustomerService { kf_account: None });
        header_ok(&f, "transfer_customer_service");
        assert_eq!(f.len(), 4);
        let f = fields(&Reply::TransferCustomerService {
            kf_account: Some("test1@test".into()),
        });
        assert_eq!(f.get("TransInfo.KfAccount"), Some("test1@test"));
    }

    #[test]
    fn header_values_are_cdata_too() {
        let xml = Reply::Text {
            content: "x".into(),
        }
        .to_xml("o]]><MsgType>x</MsgType>", "gh", 1);
        let f = parse_flat(&xml).unwrap();
        assert_eq!(f.get("ToUserName"), Some("o]]><MsgType>x</MsgType>"));
        assert_eq!(f.get_all("MsgType").collect::<Vec<_>>(), ["text"]);
    }

    #[test]
    fn encrypted_reply_envelope_round_trips() {
        let xml = encrypted_reply_xml("ENC+/=", "sig", "1409304348", "xxxxxx");
        assert_eq!(
            xml,
            "<xml><Encrypt><![CDATA[ENC+/=]]></Encrypt><MsgSignature><![CDATA[sig]]></MsgSignature>\
             <TimeStamp>1409304348</TimeStamp><Nonce><![CDATA[xxxxxx]]></Nonce></xml>"
        );
        // A hostile timestamp or nonce (echoed from the query string) cannot add elements.
        let f = parse_flat(&encrypted_reply_xml(
            "e",
            "s",
            "1</TimeStamp><X>",
            "n]]><Y/>",
        ))
        .unwrap();
        assert_eq!(f.get("TimeStamp"), Some("1</TimeStamp><X>"));
        assert_eq!(f.get("Nonce"), Some("n]]><Y/>"));
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn parses_the_encrypted_request_envelope() {
        let env = parse_encrypted_envelope(
            "<xml>\n<ToUserName><![CDATA[gh_9f2c1a7b3e5d]]></ToUserName>\n<Encrypt><![CDATA[abc+/=]]></Encrypt>\n</xml>",
        )
        .unwrap();
        assert_eq!(
            env,
            EncryptedEnvelope {
                to_user: Some("gh_9f2c1a7b3e5d".into()),
                encrypt: "abc+/=".into()
            }
        );
        let env =
            parse_encrypted_envelope("<xml><Encrypt><![CDATA[abc]]></Encrypt></xml>").unwrap();
        assert_eq!(env.to_user, None);
    }

    #[test]
    fn envelope_without_encrypt_or_with_doctype_is_rejected() {
        for (xml, msg) in [
            ("<xml><ToUserName>gh</ToUserName></xml>", "missing field Encrypt"),
            ("<xml><Encrypt><![CDATA[]]></Encrypt></xml>", "missing field Encrypt"),
            ("<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><Encrypt>&e;</Encrypt></xml>", "DOCTYPE/entity not allowed"),
        ] {
            match parse_encrypted_envelope(xml) {
                Err(Error::Decode(m)) => assert_eq!(m, msg),
                other => panic!("{xml}: {other:?}"),
            }
        }
        assert!(matches!(
            parse_encrypted_envelope("<xml><Encrypt>abc</xml>"),
            Err(Error::Decode(_))
        ));
    }
}
