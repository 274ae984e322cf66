//! Inbound messages and events pushed to the message server: 接收普通消息, 接收事件推送,
//! 自定义菜单事件推送, 模板消息发送结果, 群发结果, and the 订阅通知 events.

use crate::xml::{parse_flat, XmlFields, XmlGroup};
use crate::{Error, Result};

/// One message or event POSTed by WeChat (after decryption in safe mode).
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// `ToUserName`: the official account's original id (gh_...).
    pub to_user: String,
    /// `FromUserName`: the follower's OpenID.
    pub from_user: String,
    /// `CreateTime`: Unix seconds.
    pub create_time: i64,
    pub body: MessageBody,
}

/// The typed content of an [`InboundMessage`], one variant per `MsgType` (接收普通消息).
#[derive(Debug, Clone, PartialEq)]
pub enum MessageBody {
    /// 文本消息. `biz_msg_menu_id` is set when the text is a tapped customer-service menu item.
    Text {
        msg_id: i64,
        content: String,
        biz_msg_menu_id: Option<String>,
    },
    /// 图片消息
    Image {
        msg_id: i64,
        pic_url: String,
        media_id: String,
    },
    /// 语音消息; `recognition` when speech recognition is on.
    Voice {
        msg_id: i64,
        media_id: String,
        format: String,
        recognition: Option<String>,
    },
    /// 视频消息
    Video {
        msg_id: i64,
        media_id: String,
        thumb_media_id: String,
    },
    /// 小视频消息
    ShortVideo {
        msg_id: i64,
        media_id: String,
        thumb_media_id: String,
    },
    /// 地理位置消息 (`Location_X` is the latitude, `Location_Y` the longitude).
    Location {
        msg_id: i64,
        latitude: f64,
        longitude: f64,
        scale: i64,
        label: String,
    },
    /// 链接消息
    Link {
        msg_id: i64,
        title: String,
        description: String,
        url: String,
    },
    /// 文件消息 (`Description` may be absent; it is then empty).
    File {
        msg_id: i64,
        title: String,
        description: String,
        file_key: String,
        file_md5: String,
        file_total_len: i64,
    },
    /// 事件推送 (`MsgType` event).
    Event(Event),
    /// A `MsgType` this crate does not know; `raw` is the original XML, kept for later handling.
    Unknown { msg_type: String, raw: String },
}

/// 接收事件推送: one variant per `Event` (matched case-insensitively).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// 关注. From a parametric QR code `EventKey` is `qrscene_<scene>`; `scene` is `<scene>`.
    Subscribe {
        scene: Option<String>,
        ticket: Option<String>,
    },
    /// 取消关注
    Unsubscribe,
    /// 扫描带参数二维码 (already following): `scene` is the `EventKey`.
    Scan {
        scene: String,
        ticket: Option<String>,
    },
    /// 上报地理位置
    Location {
        latitude: f64,
        longitude: f64,
        precision: f64,
    },
    /// 点击菜单拉取消息
    Click { key: String },
    /// 点击菜单跳转链接
    View {
        url: String,
        menu_id: Option<String>,
    },
    /// scancode_push: 扫码推事件
    ScancodePush {
        key: String,
        scan_type: String,
        scan_result: String,
    },
    /// scancode_waitmsg: 扫码推事件且弹出“消息接收中”提示框
    ScancodeWaitmsg {
        key: String,
        scan_type: String,
        scan_result: String,
    },
    /// pic_sysphoto: 弹出系统拍照发图
    PicSysphoto {
        key: String,
        count: i64,
        pic_md5s: Vec<String>,
    },
    /// pic_photo_or_album: 弹出拍照或者相册发图
    PicPhotoOrAlbum {
        key: String,
        count: i64,
        pic_md5s: Vec<String>,
    },
    /// pic_weixin: 弹出微信相册发图器
    PicWeixin {
        key: String,
        count: i64,
        pic_md5s: Vec<String>,
    },
    /// location_select: 弹出地理位置选择器 (an empty `Poiname` is `None`).
    LocationSelect {
        key: String,
        location_x: f64,
        location_y: f64,
        scale: i64,
        label: String,
        poiname: Option<String>,
    },
    /// view_miniprogram: 点击菜单跳转小程序; `path` is the `EventKey`.
    ViewMiniprogram {
        path: String,
        menu_id: Option<String>,
    },
    /// TEMPLATESENDJOBFINISH: 模板消息发送结果 (`status`: success, failed:user block, failed: system failed).
    TemplateSendJobFinish { msg_id: i64, status: String },
    /// MASSSENDJOBFINISH: 群发结果
    MassSendJobFinish {
        msg_id: i64,
        status: String,
        total_count: i64,
        filter_count: i64,
        sent_count: i64,
        error_count: i64,
    },
    /// subscribe_msg_popup_event: 用户操作订阅通知弹窗
    SubscribeMsgPopup { items: Vec<SubscribeMsgItem> },
    /// subscribe_msg_change_event: 用户管理订阅通知
    SubscribeMsgChange { items: Vec<SubscribeMsgItem> },
    /// subscribe_msg_sent_event: 发送订阅通知结果
    SubscribeMsgSent { items: Vec<SubscribeMsgSentItem> },
    /// An `Event` this crate does not know; `raw` is the original XML.
    Unknown { event: String, raw: String },
}

/// One `<List>` of a subscribe_msg_popup_event / subscribe_msg_change_event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeMsgItem {
    pub template_id: String,
    /// `SubscribeStatusString`: accept | reject | ...
    pub status: String,
    /// `PopupScene` (popup events only): 0 = mini-program page, 1 = after payment, 2 = article.
    pub scene: Option<String>,
}

/// One `<List>` of a subscribe_msg_sent_event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeMsgSentItem {
    pub template_id: String,
    /// `MsgID` of the sent notification.
    pub msg_id: String,
    /// `ErrorCode`: 0 on success.
    pub error_code: i64,
    /// `ErrorStatus`: success | failed:user refuse accept the msg | failed:system failed
    pub error_status: String,
}

fn missing(field: &str) -> Error {
    Error::Decode(format!("missing field {field}"))
}

/// Typed access to the leaf values, with errors that name the field.
struct Fields<'a>(&'a XmlFields);

impl<'a> Fields<'a> {
    fn opt(&self, key: &str) -> Option<&'a str> {
        self.0.get(key)
    }

    fn opt_nonempty(&self, key: &str) -> Option<String> {
        self.opt(key).filter(|s| !s.is_empty()).map(str::to_owned)
    }

    fn str(&self, key: &str) -> Result<&'a str> {
        self.opt(key).ok_or_else(|| missing(key))
    }

    fn string(&self, key: &str) -> Result<String> {
        self.str(key).map(str::to_owned)
    }

    fn i64(&self, key: &str) -> Result<i64> {
        parse_i64(key, self.str(key)?)
    }

    fn f64(&self, key: &str) -> Result<f64> {
        parse_f64(key, self.str(key)?)
    }

    /// `MsgId` in messages, `MsgID` in job-finish events; either is accepted.
    fn msg_id(&self) -> Result<i64> {
        match self.opt("MsgId").or_else(|| self.opt("MsgID")) {
            Some(v) => parse_i64("MsgId", v),
            None => Err(missing("MsgId")),
        }
    }

    fn menu_id(&self) -> Option<String> {
        self.opt_nonempty("MenuId")
            .or_else(|| self.opt_nonempty("MenuID"))
    }
}

fn parse_i64(field: &str, v: &str) -> Result<i64> {
    v.trim()
        .parse()
        .map_err(|_| Error::Decode(format!("field {field} is not an integer")))
}

fn parse_f64(field: &str, v: &str) -> Result<f64> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| Error::Decode(format!("field {field} is not a number")))
}

fn group_str<'a>(g: &XmlGroup<'a>, path: &str, name: &str) -> Result<&'a str> {
    g.get(name)
        .ok_or_else(|| missing(&format!("{path}.{name}")))
}

/// The `<List>` groups under `root`; at least one is required.
fn list_groups<'a>(f: &'a XmlFields, root: &str) -> Result<(String, Vec<XmlGroup<'a>>)> {
    let path = format!("{root}.List");
    let groups = f.groups(&path);
    if groups.is_empty() {
        return Err(missing(&path));
    }
    Ok((path, groups))
}

fn subscribe_items(f: &XmlFields, root: &str) -> Result<Vec<SubscribeMsgItem>> {
    let (path, groups) = list_groups(f, root)?;
    groups
        .iter()
        .map(|g| {
            Ok(SubscribeMsgItem {
                template_id: group_str(g, &path, "TemplateId")?.to_owned(),
                status: group_str(g, &path, "SubscribeStatusString")?.to_owned(),
                scene: g.get("PopupScene").map(str::to_owned),
            })
        })
        .collect()
}

fn subscribe_sent_items(f: &XmlFields) -> Result<Vec<SubscribeMsgSentItem>> {
    let (path, groups) = list_groups(f, "SubscribeMsgSentEvent")?;
    groups
        .iter()
        .map(|g| {
            Ok(SubscribeMsgSentItem {
                template_id: group_str(g, &path, "TemplateId")?.to_owned(),
                msg_id: group_str(g, &path, "MsgID")?.to_owned(),
                error_code: parse_i64(
                    &format!("{path}.ErrorCode"),
                    group_str(g, &path, "ErrorCode")?,
                )?,
                error_status: group_str(g, &path, "ErrorStatus")?.to_owned(),
            })
        })
        .collect()
}

fn parse_event(f: &Fields<'_>, raw: &str) -> Result<Event> {
    let name = f.str("Event")?;
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    let key = || f.string("EventKey");
    let scan = || -> Result<(String, String, String)> {
        Ok((
            key()?,
            f.string("ScanCodeInfo.ScanType")?,
            f.string("ScanCodeInfo.ScanResult")?,
        ))
    };
    let pics = || -> Result<(String, i64, Vec<String>)> {
        let md5s =
            f.0.get_all("SendPicsInfo.PicList.item.PicMd5Sum")
                .map(str::to_owned)
                .collect();
        Ok((key()?, f.i64("SendPicsInfo.Count")?, md5s))
    };

    let event = if is("subscribe") {
        let scene = f
            .opt("EventKey")
            .filter(|k| !k.is_empty())
            .map(|k| k.strip_prefix("qrscene_").unwrap_or(k).to_owned());
        Event::Subscribe {
            scene,
            ticket: f.opt_nonempty("Ticket"),
        }
    } else if is("unsubscribe") {
        Event::Unsubscribe
    } else if is("SCAN") {
        Event::Scan {
            scene: key()?,
            ticket: f.opt_nonempty("Ticket"),
        }
    } else if is("LOCATION") {
        Event::Location {
            latitude: f.f64("Latitude")?,
            longitude: f.f64("Longitude")?,
            precision: f.f64("Precision")?,
        }
    } else if is("CLICK") {
        Event::Click { key: key()? }
    } else if is("VIEW") {
        Event::View {
            url: key()?,
            menu_id: f.menu_id(),
        }
    } else if is("scancode_push") {
        let (key, scan_type, scan_result) = scan()?;
        Event::ScancodePush {
            key,
            scan_type,
            scan_result,
        }
    } else if is("scancode_waitmsg") {
        let (key, scan_type, scan_result) = scan()?;
        Event::ScancodeWaitmsg {
            key,
            scan_type,
            scan_result,
        }
    } else if is("pic_sysphoto") {
        let (key, count, pic_md5s) = pics()?;
        Event::PicSysphoto {
            key,
            count,
            pic_md5s,
        }
    } else if is("pic_photo_or_album") {
        let (key, count, pic_md5s) = pics()?;
        Event::PicPhotoOrAlbum {
            key,
            count,
            pic_md5s,
        }
    } else if is("pic_weixin") {
        let (key, count, pic_md5s) = pics()?;
        Event::PicWeixin {
            key,
            count,
            pic_md5s,
        }
    } else if is("location_select") {
        Event::LocationSelect {
            key: key()?,
            location_x: f.f64("SendLocationInfo.Location_X")?,
            location_y: f.f64("SendLocationInfo.Location_Y")?,
            scale: f.i64("SendLocationInfo.Scale")?,
            label: f.string("SendLocationInfo.Label")?,
            poiname: f.opt_nonempty("SendLocationInfo.Poiname"),
        }
    } else if is("view_miniprogram") {
        Event::ViewMiniprogram {
            path: key()?,
            menu_id: f.menu_id(),
        }
    } else if is("TEMPLATESENDJOBFINISH") {
        Event::TemplateSendJobFinish {
            msg_id: f.msg_id()?,
            status: f.string("Status")?,
        }
    } else if is("MASSSENDJOBFINISH") {
        Event::MassSendJobFinish {
            msg_id: f.msg_id()?,
            status: f.string("Status")?,
            total_count: f.i64("TotalCount")?,
            filter_count: f.i64("FilterCount")?,
            sent_count: f.i64("SentCount")?,
            error_count: f.i64("ErrorCount")?,
        }
    } else if is("subscribe_msg_popup_event") {
        Event::SubscribeMsgPopup {
            items: subscribe_items(f.0, "SubscribeMsgPopupEvent")?,
        }
    } else if is("subscribe_msg_change_event") {
        Event::SubscribeMsgChange {
            items: subscribe_items(f.0, "SubscribeMsgChangeEvent")?,
        }
    } else if is("subscribe_msg_sent_event") {
        Event::SubscribeMsgSent {
            items: subscribe_sent_items(f.0)?,
        }
    } else {
        Event::Unknown {
            event: name.to_owned(),
            raw: raw.to_owned(),
        }
    };
    Ok(event)
}

fn parse_body(f: &Fields<'_>, raw: &str) -> Result<MessageBody> {
    let msg_type = f.str("MsgType")?;
    let is = |s: &str| msg_type.eq_ignore_ascii_case(s);
    let body = if is("event") {
        MessageBody::Event(parse_event(f, raw)?)
    } else if is("text") {
        MessageBody::Text {
            msg_id: f.msg_id()?,
            content: f.string("Content")?,
            biz_msg_menu_id: f.opt_nonempty("bizmsgmenuid"),
        }
    } else if is("image") {
        MessageBody::Image {
            msg_id: f.msg_id()?,
            pic_url: f.string("PicUrl")?,
            media_id: f.string("MediaId")?,
        }
    } else if is("voice") {
        MessageBody::Voice {
            msg_id: f.msg_id()?,
            media_id: f.string("MediaId")?,
            format: f.string("Format")?,
            recognition: f.opt_nonempty("Recognition"),
        }
    } else if is("video") {
        MessageBody::Video {
            msg_id: f.msg_id()?,
            media_id: f.string("MediaId")?,
            thumb_media_id: f.string("ThumbMediaId")?,
        }
    } else if is("shortvideo") {
        MessageBody::ShortVideo {
            msg_id: f.msg_id()?,
            media_id: f.string("MediaId")?,
            thumb_media_id: f.string("ThumbMediaId")?,
        }
    } else if is("location") {
        MessageBody::Location {
            msg_id: f.msg_id()?,
            latitude: f.f64("Location_X")?,
            longitude: f.f64("Location_Y")?,
            scale: f.i64("Scale")?,
            label: f.string("Label")?,
        }
    } else if is("link") {
        MessageBody::Link {
            msg_id: f.msg_id()?,
            title: f.string("Title")?,
            description: f.string("Description")?,
            url: f.string("Url")?,
        }
    } else if is("file") {
        MessageBody::File {
            msg_id: f.msg_id()?,
            title: f.string("Title")?,
            description: f.opt("Description").unwrap_or_default().to_owned(),
            file_key: f.string("FileKey")?,
            file_md5: f.string("FileMd5")?,
            file_total_len: f.i64("FileTotalLen")?,
        }
    } else {
        MessageBody::Unknown {
            msg_type: msg_type.to_owned(),
            raw: raw.to_owned(),
        }
    };
    Ok(body)
}

impl InboundMessage {
    /// Parses a (decrypted) message body. Unknown `MsgType`s and `Event`s are kept as
    /// `Unknown` with the raw XML; a missing or malformed required field is `Error::Decode`
    /// naming the field; DOCTYPE and other unsafe XML are refused (see [`parse_flat`]).
    pub fn from_xml(xml: &str) -> Result<InboundMessage> {
        let fields = parse_flat(xml)?;
        Self::from_fields(&fields, xml)
    }

    /// Builds the message from already parsed fields; `raw` is kept for `Unknown` variants.
    pub fn from_fields(fields: &XmlFields, raw: &str) -> Result<InboundMessage> {
        let f = Fields(fields);
        Ok(InboundMessage {
            to_user: f.string("ToUserName")?,
            from_user: f.string("FromUserName")?,
            create_time: f.i64("CreateTime")?,
            body: parse_body(&f, raw)?,
        })
    }

    /// The `MsgType` ("text", "image", ..., "event", or the unknown type as received).
    pub fn msg_type(&self) -> &str {
        match &self.body {
            MessageBody::Unknown { msg_type, .. } => msg_type,
            _ => self.msg_type_label(),
        }
    }

    /// [`msg_type`](Self::msg_type) as a fixed name, `"unknown"` for a type this crate does not
    /// know: a label that never copies and never grows a new series.
    pub fn msg_type_label(&self) -> &'static str {
        match &self.body {
            MessageBody::Text { .. } => "text",
            MessageBody::Image { .. } => "image",
            MessageBody::Voice { .. } => "voice",
            MessageBody::Video { .. } => "video",
            MessageBody::ShortVideo { .. } => "shortvideo",
            MessageBody::Location { .. } => "location",
            MessageBody::Link { .. } => "link",
            MessageBody::File { .. } => "file",
            MessageBody::Event(_) => "event",
            MessageBody::Unknown { .. } => "unknown",
        }
    }

    /// The `Event` name as WeChat spells it ("subscribe", "CLICK", "TEMPLATESENDJOBFINISH", ...,
    /// or the unknown name as received); `None` for messages.
    pub fn event_name(&self) -> Option<&str> {
        match &self.body {
            MessageBody::Event(Event::Unknown { event, .. }) => Some(event),
            _ => self.event_label(),
        }
    }

    /// [`event_name`](Self::event_name) as a fixed name, `"unknown"` for an event this crate
    /// does not know.
    pub fn event_label(&self) -> Option<&'static str> {
        let MessageBody::Event(e) = &self.body else {
            return None;
        };
        Some(match e {
            Event::Subscribe { .. } => "subscribe",
            Event::Unsubscribe => "unsubscribe",
            Event::Scan { .. } => "SCAN",
            Event::Location { .. } => "LOCATION",
            Event::Click { .. } => "CLICK",
            Event::View { .. } => "VIEW",
            Event::ScancodePush { .. } => "scancode_push",
            Event::ScancodeWaitmsg { .. } => "scancode_waitmsg",
            Event::PicSysphoto { .. } => "pic_sysphoto",
            Event::PicPhotoOrAlbum { .. } => "pic_photo_or_album",
            Event::PicWeixin { .. } => "pic_weixin",
            Event::LocationSelect { .. } => "location_select",
            Event::ViewMiniprogram { .. } => "view_miniprogram",
            Event::TemplateSendJobFinish { .. } => "TEMPLATESENDJOBFINISH",
            Event::MassSendJobFinish { .. } => "MASSSENDJOBFINISH",
            Event::SubscribeMsgPopup { .. } => "subscribe_msg_popup_event",
            Event::SubscribeMsgChange { .. } => "subscribe_msg_change_event",
            Event::SubscribeMsgSent { .. } => "subscribe_msg_sent_event",
            Event::Unknown { .. } => "unknown",
        })
    }

    /// The `MsgId` of a normal message or of a job-finish event.
    pub fn msg_id(&self) -> Option<i64> {
        match &self.body {
            MessageBody::Text { msg_id, .. }
            | MessageBody::Image { msg_id, .. }
            | MessageBody::Voice { msg_id, .. }
            | MessageBody::Video { msg_id, .. }
            | MessageBody::ShortVideo { msg_id, .. }
            | MessageBody::Location { msg_id, .. }
            | MessageBody::Link { msg_id, .. }
            | MessageBody::File { msg_id, .. }
            | MessageBody::Event(Event::TemplateSendJobFinish { msg_id, .. })
            | MessageBody::Event(Event::MassSendJobFinish { msg_id, .. }) => Some(*msg_id),
            _ => None,
        }
    }

    /// De-duplication key for WeChat's retries (排重): messages `{FromUserName}:{MsgId}`, events
    /// `{FromUserName}:{CreateTime}:{Event}` followed by what tells two events of one kind in one
    /// second apart: job-finish events their `:{MsgID}`, every other event a digest of its own
    /// fields (`EventKey`, `Ticket`, scan results, picture checksums, locations, subscription
    /// lists, ...), so a second menu click or scan in the same second is its own event while a
    /// retry (the same packet) has the same key. A key on `MsgId` alone would drop other users'
    /// messages. Unknown message types use `{FromUserName}:{CreateTime}:{MsgType}`.
    pub fn dedup_key(&self) -> String {
        let from = &self.from_user;
        match (&self.body, self.msg_id()) {
            (MessageBody::Event(e), msg_id) => {
                let event = self.event_name().unwrap_or_default();
                let base = format!("{from}:{}:{event}", self.create_time);
                if let Some(id) = msg_id {
                    return format!("{base}:{id}");
                }
                let parts = event_fields(e);
                if parts.iter().all(|p| p.is_empty()) {
                    return base;
                }
                format!("{base}:{}", digest(&parts))
            }
            // Every normal message comes here: built by hand, as `format!` costs several times
            // as much for two pieces.
            (_, Some(id)) => {
                use std::fmt::Write;
                let mut key = String::with_capacity(from.len() + 21);
                key.push_str(from);
                key.push(':');
                let _ = write!(key, "{id}");
                key
            }
            (body, None) => {
                let msg_type = match body {
                    MessageBody::Unknown { msg_type, .. } => msg_type.as_str(),
                    _ => self.msg_type(),
                };
                format!("{from}:{}:{msg_type}", self.create_time)
            }
        }
    }
}

/// The fields that distinguish two events of one kind sent by one follower in one second.
fn event_fields(e: &Event) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    match e {
        Event::Subscribe { scene, ticket } => vec![opt(scene), opt(ticket)],
        Event::Unsubscribe => vec![],
        Event::Scan { scene, ticket } => vec![scene.clone(), opt(ticket)],
        Event::Location {
            latitude,
            longitude,
            precision,
        } => vec![format!("{latitude},{longitude},{precision}")],
        Event::Click { key } => vec![key.clone()],
        Event::View { url, menu_id } => vec![url.clone(), opt(menu_id)],
        Event::ScancodePush {
            key,
            scan_type,
            scan_result,
        }
        | Event::ScancodeWaitmsg {
            key,
            scan_type,
            scan_result,
        } => vec![key.clone(), scan_type.clone(), scan_result.clone()],
        Event::PicSysphoto {
            key,
            count,
            pic_md5s,
        }
        | Event::PicPhotoOrAlbum {
            key,
            count,
            pic_md5s,
        }
        | Event::PicWeixin {
            key,
            count,
            pic_md5s,
        } => vec![key.clone(), count.to_string(), pic_md5s.join(",")],
        Event::LocationSelect {
            key,
            location_x,
            location_y,
            scale,
            label,
            poiname,
        } => vec![
            key.clone(),
            format!("{location_x},{location_y},{scale}"),
            label.clone(),
            opt(poiname),
        ],
        Event::ViewMiniprogram { path, menu_id } => vec![path.clone(), opt(menu_id)],
        // Carry their MsgID, used before this is reached.
        Event::TemplateSendJobFinish { msg_id, .. } | Event::MassSendJobFinish { msg_id, .. } => {
            vec![msg_id.to_string()]
        }
        Event::SubscribeMsgPopup { items } | Event::SubscribeMsgChange { items } => items
            .iter()
            .map(|i| format!("{}={}/{}", i.template_id, i.status, opt(&i.scene)))
            .collect(),
        Event::SubscribeMsgSent { items } => items
            .iter()
            .map(|i| format!("{}={}/{}", i.template_id, i.msg_id, i.error_code))
            .collect(),
        Event::Unknown { raw, .. } => vec![raw.clone()],
    }
}

/// A short digest of `parts` (unambiguous: each part is length-prefixed), keeping keys bounded.
fn digest(parts: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented sample packets (接收普通消息 / 接收事件推送 / 自定义菜单事件推送 / 模板消息 /
    /// 群发 / 订阅通知), verbatim, in wechat/testdata/messages.
    macro_rules! sample {
        ($name:literal) => {
            include_str!(concat!("../testdata/messages/", $name, ".xml"))
        };
    }

    fn parse(xml: &str) -> InboundMessage {
        InboundMessage::from_xml(xml).unwrap_or_else(|e| panic!("{e}: {xml}"))
    }

    fn event(xml: &str) -> Event {
        match parse(xml).body {
            MessageBody::Event(e) => e,
            other => panic!("not an event: {other:?}"),
        }
    }

    fn decode_err(xml: &str) -> String {
        match InboundMessage::from_xml(xml) {
            Err(Error::Decode(m)) => m,
            other => panic!("expected Error::Decode, got {other:?}"),
        }
    }

    #[test]
    fn text_sample() {
        let m = parse(sample!("text"));
        assert_eq!(m.to_user, "toUser");
        assert_eq!(m.from_user, "fromUser");
        assert_eq!(m.create_time, 1348831860);
        assert_eq!(
            m.body,
            MessageBody::Text {
                msg_id: 1234567890123456,
                content: "this is a test".into(),
                biz_msg_menu_id: None
            }
        );
        assert_eq!((m.msg_type(), m.event_name()), ("text", None));
    }

    #[test]
    fn text_from_customer_service_menu_carries_bizmsgmenuid() {
        let m = parse(sample!("text_bizmsgmenuid"));
        assert_eq!(
            m.body,
            MessageBody::Text {
                msg_id: 1234567890123456,
                content: "满意".into(),
                biz_msg_menu_id: Some("101".into())
            }
        );
    }

    #[test]
    fn image_sample() {
        assert_eq!(
            parse(sample!("image")).body,
            MessageBody::Image {
                msg_id: 1234567890123456,
                pic_url: "this is a url".into(),
                media_id: "media_id".into()
            }
        );
    }

    #[test]
    fn voice_samples_with_and_without_recognition() {
        assert_eq!(
            parse(sample!("voice")).body,
            MessageBody::Voice {
                msg_id: 1234567890123456,
                media_id: "media_id".into(),
                format: "Format".into(),
                recognition: None
            }
        );
        let m = parse(sample!("voice_recognition"));
        assert_eq!(m.create_time, 1357290913);
        assert_eq!(
            m.body,
            MessageBody::Voice {
                msg_id: 1234567890123456,
                media_id: "media_id".into(),
                format: "Format".into(),
                recognition: Some("腾讯微信团队".into())
            }
        );
    }

    #[test]
    fn video_and_shortvideo_samples() {
        let v = parse(sample!("video"));
        assert_eq!(
            v.body,
            MessageBody::Video {
                msg_id: 1234567890123456,
                media_id: "media_id".into(),
                thumb_media_id: "thumb_media_id".into()
            }
        );
        let s = parse(sample!("shortvideo"));
        assert_eq!(
            s.body,
            MessageBody::ShortVideo {
                msg_id: 1234567890123456,
                media_id: "media_id".into(),
                thumb_media_id: "thumb_media_id".into()
            }
        );
        assert_eq!((v.msg_type(), s.msg_type()), ("video", "shortvideo"));
    }

    #[test]
    fn location_sample() {
        let m = parse(sample!("location"));
        assert_eq!(
            m.body,
            MessageBody::Location {
                msg_id: 1234567890123456,
                latitude: 23.134521,
                longitude: 113.358803,
                scale: 20,
                label: "位置信息".into()
            }
        );
        assert_eq!(m.msg_type(), "location");
    }

    #[test]
    fn link_sample() {
        assert_eq!(
            parse(sample!("link")).body,
            MessageBody::Link {
                msg_id: 1234567890123456,
                title: "公众平台官网链接".into(),
                description: "公众平台官网链接".into(),
                url: "url".into()
            }
        );
    }

    #[test]
    fn file_sample() {
        let m = parse(sample!("file"));
        assert_eq!(
            m.body,
            MessageBody::File {
                msg_id: 24345678901234567,
                title: "支部学习材料.pdf".into(),
                description: "2.1MB".into(),
                file_key: "d7f1a0c9e1a44b2f9c0e".into(),
                file_md5: "5a75aaca956d97be686719218f275c6b".into(),
                file_total_len: 2201600
            }
        );
        assert_eq!(m.msg_type(), "file");
    }

    #[test]
    fn subscribe_and_unsubscribe_samples() {
        let m = parse(sample!("event_subscribe"));
        assert_eq!(
            (m.to_user.as_str(), m.from_user.as_str(), m.create_time),
            ("toUser", "FromUser", 123456789)
        );
        assert_eq!(
            m.body,
            MessageBody::Event(Event::Subscribe {
                scene: None,
                ticket: None
            })
        );
        assert_eq!((m.msg_type(), m.event_name()), ("event", Some("subscribe")));
        let m = parse(sample!("event_unsubscribe"));
        assert_eq!(m.body, MessageBody::Event(Event::Unsubscribe));
        assert_eq!(m.event_name(), Some("unsubscribe"));
    }

    #[test]
    fn subscribe_from_qr_code_strips_qrscene_prefix() {
        assert_eq!(
            event(sample!("event_subscribe_qrscene")),
            Event::Subscribe {
                scene: Some("123123".into()),
                ticket: Some("TICKET".into())
            }
        );
        // An empty EventKey (plain follow, as some clients send it) is no scene.
        let xml = sample!("event_subscribe")
            .replace("</Event>", "</Event><EventKey><![CDATA[]]></EventKey>");
        assert_eq!(
            event(&xml),
            Event::Subscribe {
                scene: None,
                ticket: None
            }
        );
    }

    #[test]
    fn scan_sample() {
        let m = parse(sample!("event_scan"));
        assert_eq!(
            m.body,
            MessageBody::Event(Event::Scan {
                scene: "SCENE_VALUE".into(),
                ticket: Some("TICKET".into())
            })
        );
        assert_eq!(m.event_name(), Some("SCAN"));
    }

    #[test]
    fn location_event_sample() {
        assert_eq!(
            event(sample!("event_location")),
            Event::Location {
                latitude: 23.137466,
                longitude: 113.352425,
                precision: 119.385040
            }
        );
    }

    #[test]
    fn click_and_view_samples() {
        let m = parse(sample!("event_click"));
        assert_eq!(
            m.body,
            MessageBody::Event(Event::Click {
                key: "EVENTKEY".into()
            })
        );
        assert_eq!(m.event_name(), Some("CLICK"));
        let m = parse(sample!("event_view"));
        assert_eq!(
            m.body,
            MessageBody::Event(Event::View {
                url: "www.qq.com".into(),
                menu_id: Some("MENUID".into())
            })
        );
        assert_eq!(m.event_name(), Some("VIEW"));
    }

    #[test]
    fn scancode_samples() {
        assert_eq!(
            event(sample!("event_scancode_push")),
            Event::ScancodePush {
                key: "6".into(),
                scan_type: "qrcode".into(),
                scan_result: "1".into()
            }
        );
        assert_eq!(
            event(sample!("event_scancode_waitmsg")),
            Event::ScancodeWaitmsg {
                key: "6".into(),
                scan_type: "qrcode".into(),
                scan_result: "2".into()
            }
        );
    }

    #[test]
    fn pic_samples() {
        assert_eq!(
            event(sample!("event_pic_sysphoto")),
            Event::PicSysphoto {
                key: "6".into(),
                count: 1,
                pic_md5s: vec!["1b5f7c23b5bf75682a53e7b6d163e185".into()]
            }
        );
        assert_eq!(
            event(sample!("event_pic_photo_or_album")),
            Event::PicPhotoOrAlbum {
                key: "6".into(),
                count: 1,
                pic_md5s: vec!["5a75aaca956d97be686719218f275c6b".into()]
            }
        );
        let m = parse(sample!("event_pic_weixin"));
        assert_eq!(
            m.body,
            MessageBody::Event(Event::PicWeixin {
                key: "6".into(),
                count: 1,
                pic_md5s: vec!["5a75aaca956d97be686719218f275c6b".into()]
            })
        );
        assert_eq!(m.event_name(), Some("pic_weixin"));
    }

    #[test]
    fn pic_event_keeps_every_picture_in_order() {
        let xml = sample!("event_pic_sysphoto").replace("<Count>1</Count>", "<Count>3</Count>").replace(
            "</item>\n</PicList>",
            "</item><item><PicMd5Sum><![CDATA[b]]></PicMd5Sum></item><item><PicMd5Sum><![CDATA[c]]></PicMd5Sum></item></PicList>",
        );
        assert_eq!(
            event(&xml),
            Event::PicSysphoto {
                key: "6".into(),
                count: 3,
                pic_md5s: vec![
                    "1b5f7c23b5bf75682a53e7b6d163e185".into(),
                    "b".into(),
                    "c".into()
                ]
            }
        );
    }

    #[test]
    fn location_select_sample() {
        assert_eq!(
            event(sample!("event_location_select")),
            Event::LocationSelect {
                key: "6".into(),
                location_x: 23.0,
                location_y: 113.0,
                scale: 15,
                label: " 广州市海珠区客村艺苑路 106号".into(),
                poiname: None
            }
        );
    }

    #[test]
    fn view_miniprogram_sample() {
        let m = parse(sample!("event_view_miniprogram"));
        assert_eq!(
            m.body,
            MessageBody::Event(Event::ViewMiniprogram {
                path: "pages/index/index".into(),
                menu_id: Some("MENUID".into())
            })
        );
        assert_eq!(m.event_name(), Some("view_miniprogram"));
    }

    #[test]
    fn template_send_job_finish_samples() {
        let m = parse(sample!("event_templatesendjobfinish"));
        assert_eq!(
            m.body,
            MessageBody::Event(Event::TemplateSendJobFinish {
                msg_id: 200163836,
                status: "success".into()
            })
        );
        assert_eq!(
            (m.event_name(), m.msg_id()),
            (Some("TEMPLATESENDJOBFINISH"), Some(200163836))
        );
        assert_eq!(
            event(sample!("event_templatesendjobfinish_block")),
            Event::TemplateSendJobFinish {
                msg_id: 200163840,
                status: "failed:user block".into()
            }
        );
    }

    #[test]
    fn mass_send_job_finish_samples() {
        // The current sample with copyright-check details (nested groups are ignored, not errors).
        assert_eq!(
            event(sample!("event_masssendjobfinish")),
            Event::MassSendJobFinish {
                msg_id: 1000001625,
                status: "err(30003)".into(),
                total_count: 0,
                filter_count: 0,
                sent_count: 0,
                error_count: 0
            }
        );
        let m = parse(sample!("event_masssendjobfinish_success"));
        assert_eq!(
            m.body,
            MessageBody::Event(Event::MassSendJobFinish {
                msg_id: 1988,
                status: "sendsuccess".into(),
                total_count: 100,
                filter_count: 80,
                sent_count: 75,
                error_count: 5
            })
        );
        assert_eq!(m.event_name(), Some("MASSSENDJOBFINISH"));
    }

    #[test]
    fn subscribe_msg_popup_keeps_every_list() {
        let m = parse(sample!("event_subscribe_msg_popup"));
        assert_eq!(
            m.body,
            MessageBody::Event(Event::SubscribeMsgPopup {
                items: vec![
                    SubscribeMsgItem {
                        template_id: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc".into(),
                        status: "accept".into(),
                        scene: Some("2".into())
                    },
                    SubscribeMsgItem {
                        template_id: "9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI".into(),
                        status: "reject".into(),
                        scene: Some("2".into())
                    },
                ]
            })
        );
        assert_eq!(m.event_name(), Some("subscribe_msg_popup_event"));
    }

    #[test]
    fn subscribe_msg_change_and_sent_samples() {
        assert_eq!(
            event(sample!("event_subscribe_msg_change")),
            Event::SubscribeMsgChange {
                items: vec![SubscribeMsgItem {
                    template_id: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc".into(),
                    status: "reject".into(),
                    scene: None
                }]
            }
        );
        assert_eq!(
            event(sample!("event_subscribe_msg_sent")),
            Event::SubscribeMsgSent {
                items: vec![SubscribeMsgSentItem {
                    template_id: "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc".into(),
                    msg_id: "1700827132819554304".into(),
                    error_code: 0,
                    error_status: "success".into()
                }]
            }
        );
    }

    #[test]
    fn subscribe_msg_lists_with_a_missing_optional_child_do_not_shift() {
        let xml = "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>\
            <MsgType>event</MsgType><Event>subscribe_msg_popup_event</Event><SubscribeMsgPopupEvent>\
            <List><TemplateId>t1</TemplateId><SubscribeStatusString>accept</SubscribeStatusString></List>\
            <List><TemplateId>t2</TemplateId><SubscribeStatusString>reject</SubscribeStatusString><PopupScene>1</PopupScene></List>\
            </SubscribeMsgPopupEvent></xml>";
        let Event::SubscribeMsgPopup { items } = event(xml) else {
            panic!()
        };
        assert_eq!(items[0].scene, None);
        assert_eq!(items[1].scene.as_deref(), Some("1"));
        // A List without its TemplateId is an error naming the field.
        let bad = xml.replace("<TemplateId>t2</TemplateId>", "");
        assert_eq!(
            decode_err(&bad),
            "missing field SubscribeMsgPopupEvent.List.TemplateId"
        );
        let none = xml
            .replace("<List>", "<Other>")
            .replace("</List>", "</Other>");
        assert_eq!(
            decode_err(&none),
            "missing field SubscribeMsgPopupEvent.List"
        );
    }

    #[test]
    fn event_names_are_case_insensitive() {
        for (xml, canonical, other) in [
            (sample!("event_click"), "CLICK", "click"),
            (sample!("event_subscribe"), "subscribe", "SUBSCRIBE"),
            (
                sample!("event_scancode_push"),
                "scancode_push",
                "ScanCode_Push",
            ),
            (
                sample!("event_templatesendjobfinish"),
                "TEMPLATESENDJOBFINISH",
                "templatesendjobfinish",
            ),
        ] {
            let original = parse(xml);
            let respelled = parse(&xml.replace(&format!("[{canonical}]"), &format!("[{other}]")));
            assert_eq!(original, respelled, "{canonical} vs {other}");
            // event_name reports WeChat's canonical spelling.
            assert_eq!(respelled.event_name(), Some(canonical));
        }
        assert_eq!(
            parse(&sample!("text").replace("[text]", "[TEXT]")).msg_type(),
            "text"
        );
    }

    #[test]
    fn unknown_message_type_keeps_raw_xml() {
        let xml = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
                   <CreateTime>1700000000</CreateTime><MsgType><![CDATA[miniprogrampage]]></MsgType>\
                   <Title><![CDATA[t]]></Title><MsgId>99</MsgId></xml>";
        let m = parse(xml);
        assert_eq!(
            m.body,
            MessageBody::Unknown {
                msg_type: "miniprogrampage".into(),
                raw: xml.into()
            }
        );
        assert_eq!((m.msg_type(), m.event_name()), ("miniprogrampage", None));
        assert_eq!((m.msg_type_label(), m.event_label()), ("unknown", None));
    }

    #[test]
    fn unknown_event_keeps_raw_xml() {
        let xml = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
                   <CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>\
                   <Event><![CDATA[user_enter_tempsession]]></Event><SessionFrom>x</SessionFrom></xml>";
        let m = parse(xml);
        assert_eq!(
            m.body,
            MessageBody::Event(Event::Unknown {
                event: "user_enter_tempsession".into(),
                raw: xml.into()
            })
        );
        assert_eq!(
            (m.msg_type(), m.event_name()),
            ("event", Some("user_enter_tempsession"))
        );
        assert_eq!(
            (m.msg_type_label(), m.event_label()),
            ("event", Some("unknown"))
        );
    }

    #[test]
    fn missing_required_fields_are_named() {
        let cases = [
            (
                sample!("text"),
                "<MsgId>1234567890123456</MsgId>",
                "missing field MsgId",
            ),
            (
                sample!("text"),
                "<Content><![CDATA[this is a test]]></Content>",
                "missing field Content",
            ),
            (
                sample!("text"),
                "<FromUserName><![CDATA[fromUser]]></FromUserName>",
                "missing field FromUserName",
            ),
            (
                sample!("text"),
                "<ToUserName><![CDATA[toUser]]></ToUserName>",
                "missing field ToUserName",
            ),
            (
                sample!("text"),
                "<CreateTime>1348831860</CreateTime>",
                "missing field CreateTime",
            ),
            (
                sample!("text"),
                "<MsgType><![CDATA[text]]></MsgType>",
                "missing field MsgType",
            ),
            (
                sample!("image"),
                "<PicUrl><![CDATA[this is a url]]></PicUrl>",
                "missing field PicUrl",
            ),
            (
                sample!("voice"),
                "<Format><![CDATA[Format]]></Format>",
                "missing field Format",
            ),
            (
                sample!("video"),
                "<ThumbMediaId><![CDATA[thumb_media_id]]></ThumbMediaId>",
                "missing field ThumbMediaId",
            ),
            (
                sample!("location"),
                "<Scale>20</Scale>",
                "missing field Scale",
            ),
            (
                sample!("link"),
                "<Url><![CDATA[url]]></Url>",
                "missing field Url",
            ),
            (
                sample!("file"),
                "<FileKey><![CDATA[d7f1a0c9e1a44b2f9c0e]]></FileKey>",
                "missing field FileKey",
            ),
            (
                sample!("event_click"),
                "<Event><![CDATA[CLICK]]></Event>",
                "missing field Event",
            ),
            (
                sample!("event_click"),
                "<EventKey><![CDATA[EVENTKEY]]></EventKey>",
                "missing field EventKey",
            ),
            (
                sample!("event_scan"),
                "<EventKey><![CDATA[SCENE_VALUE]]></EventKey>",
                "missing field EventKey",
            ),
            (
                sample!("event_location"),
                "<Precision>119.385040</Precision>",
                "missing field Precision",
            ),
            (
                sample!("event_scancode_push"),
                "<ScanResult><![CDATA[1]]></ScanResult>",
                "missing field ScanCodeInfo.ScanResult",
            ),
            (
                sample!("event_pic_sysphoto"),
                "<Count>1</Count>",
                "missing field SendPicsInfo.Count",
            ),
            (
                sample!("event_location_select"),
                "<Scale><![CDATA[15]]></Scale>",
                "missing field SendLocationInfo.Scale",
            ),
            (
                sample!("event_templatesendjobfinish"),
                "<MsgID>200163836</MsgID>",
                "missing field MsgId",
            ),
            (
                sample!("event_templatesendjobfinish"),
                "<Status><![CDATA[success]]></Status>",
                "missing field Status",
            ),
            (
                sample!("event_masssendjobfinish_success"),
                "<SentCount>75</SentCount>",
                "missing field SentCount",
            ),
            (
                sample!("event_subscribe_msg_sent"),
                "<ErrorCode>0</ErrorCode>",
                "missing field SubscribeMsgSentEvent.List.ErrorCode",
            ),
        ];
        for (xml, remove, expected) in cases {
            let cut = xml.replace(remove, "");
            assert_ne!(cut, xml, "{remove} not in sample");
            assert_eq!(decode_err(&cut), expected, "removing {remove}");
        }
    }

    #[test]
    fn malformed_numbers_are_decode_errors() {
        assert_eq!(
            decode_err(&sample!("text").replace("1348831860", "yesterday")),
            "field CreateTime is not an integer"
        );
        assert_eq!(
            decode_err(&sample!("text").replace(">1234567890123456<", "><")),
            "field MsgId is not an integer"
        );
        assert_eq!(
            decode_err(&sample!("location").replace("23.134521", "north")),
            "field Location_X is not a number"
        );
        assert_eq!(
            decode_err(&sample!("event_location").replace("23.137466", "NaN")),
            "field Latitude is not a number"
        );
        assert_eq!(
            decode_err(
                &sample!("event_masssendjobfinish_success")
                    .replace(">100<", ">99999999999999999999<")
            ),
            "field TotalCount is not an integer"
        );
    }

    #[test]
    fn unsafe_xml_is_rejected_before_any_field_is_read() {
        let doctype = format!("<!DOCTYPE xml [<!ENTITY x \"y\">]>{}", sample!("text"));
        assert_eq!(decode_err(&doctype), "DOCTYPE/entity not allowed");
        let text = "<Content><![CDATA[this is a test]]></Content>";
        assert!(
            decode_err(&sample!("text").replace(text, "<Content>&x;</Content>"))
                .starts_with("malformed xml")
        );
        // Inside CDATA an entity reference is just text.
        let m = parse(&sample!("text").replace("this is a test", "&x;"));
        assert!(matches!(m.body, MessageBody::Text { ref content, .. } if content == "&x;"));
        assert!(decode_err(&sample!("text").replace("</xml>", "")).starts_with("malformed xml"));
    }

    #[test]
    fn dedup_key_for_messages_is_sender_and_msg_id() {
        let a = parse(sample!("text"));
        assert_eq!(a.dedup_key(), "fromUser:1234567890123456");
        // Same MsgId from another follower is another message.
        let b = parse(&sample!("text").replace("[fromUser]", "[otherUser]"));
        assert_ne!(a.dedup_key(), b.dedup_key());
        // WeChat's retry (same packet, maybe a later CreateTime) is the same key.
        let retry = parse(&sample!("text").replace("1348831860", "1348831865"));
        assert_eq!(a.dedup_key(), retry.dedup_key());
        assert_eq!(
            parse(sample!("image")).dedup_key(),
            "fromUser:1234567890123456"
        );
    }

    #[test]
    fn dedup_key_for_events_is_sender_time_and_event() {
        let sub = parse(sample!("event_subscribe"));
        assert_eq!(sub.dedup_key(), "FromUser:123456789:subscribe");
        let click = parse(sample!("event_click"));
        assert!(
            click.dedup_key().starts_with("FromUser:123456789:CLICK:"),
            "{}",
            click.dedup_key()
        );
        assert_ne!(sub.dedup_key(), click.dedup_key());
        // Case of the event name on the wire does not change the key.
        assert_eq!(
            parse(&sample!("event_click").replace("[CLICK]", "[click]")).dedup_key(),
            click.dedup_key()
        );
        // Job reports for two sends in the same second stay distinct.
        let t1 = parse(sample!("event_templatesendjobfinish"));
        let t2 = parse(&sample!("event_templatesendjobfinish").replace("200163836", "200163837"));
        assert_eq!(
            t1.dedup_key(),
            "oia2TjuEGTNoeX76QEjQNrcURxG8:1395658920:TEMPLATESENDJOBFINISH:200163836"
        );
        assert_ne!(t1.dedup_key(), t2.dedup_key());
        // Unknown message types fall back to time and type.
        // (See also `two_events_of_one_kind_in_one_second_have_their_own_keys`.)
        let unknown = parse(&sample!("text").replace("[text]", "[miniprogrampage]"));
        assert_eq!(unknown.dedup_key(), "fromUser:1348831860:miniprogrampage");
    }

    /// Issue 13, item 2: the second menu click or scan in one second is its own event, while
    /// WeChat's retry of the same packet keeps its key.
    #[test]
    fn two_events_of_one_kind_in_one_second_have_their_own_keys() {
        let pairs: [(&str, &str, &str); 9] = [
            (sample!("event_click"), "[EVENTKEY]", "[OTHERKEY]"),
            (sample!("event_scan"), "[SCENE_VALUE]", "[OTHER_SCENE]"),
            (sample!("event_scan"), "[TICKET]", "[OTHER_TICKET]"),
            (
                sample!("event_subscribe_qrscene"),
                "[qrscene_123123]",
                "[qrscene_456]",
            ),
            (sample!("event_view"), "www.qq.com", "www.example.com"),
            (sample!("event_scancode_push"), "[6]", "[7]"),
            (sample!("event_location"), "23.137466", "23.137467"),
            (
                sample!("event_pic_sysphoto"),
                "1b5f7c23b5bf75682a53e7b6d163e185",
                "0000",
            ),
            (sample!("event_subscribe_msg_popup"), "accept", "reject"),
        ];
        for (xml, from, to) in pairs {
            assert!(xml.contains(from), "sample lacks {from}: {xml}");
            let a = parse(xml);
            let b = parse(&xml.replace(from, to));
            assert_eq!(a.create_time, b.create_time);
            assert_ne!(a.dedup_key(), b.dedup_key(), "{from} -> {to}");
            assert_eq!(
                a.dedup_key(),
                parse(xml).dedup_key(),
                "a retry keeps its key"
            );
        }
        // Events without distinguishing fields keep the plain key.
        assert_eq!(
            parse(sample!("event_unsubscribe")).dedup_key(),
            format!(
                "{}:{}:unsubscribe",
                parse(sample!("event_unsubscribe")).from_user,
                parse(sample!("event_unsubscribe")).create_time
            )
        );
    }
}
