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
    Text { msg_id: i64, content: String, biz_msg_menu_id: Option<String> },
    /// 图片消息
    Image { msg_id: i64, pic_url: String, media_id: String },
    /// 语音消息; `recognition` when speech recognition is on.
    Voice { msg_id: i64, media_id: String, format: String, recognition: Option<String> },
    /// 视频消息
    Video { msg_id: i64, media_id: String, thumb_media_id: String },
    /// 小视频消息
    ShortVideo { msg_id: i64, media_id: String, thumb_media_id: String },
    /// 地理位置消息 (`Location_X` is the latitude, `Location_Y` the longitude).
    Location { msg_id: i64, latitude: f64, longitude: f64, scale: i64, label: String },
    /// 链接消息
    Link { msg_id: i64, title: String, description: String, url: String },
    /// 文件消息 (`Description` may be absent; it is then empty).
    File { msg_id: i64, title: String, description: String, file_key: String, file_md5: String, file_total_len: i64 },
    /// 事件推送 (`MsgType` event).
    Event(Event),
    /// A `MsgType` this crate does not know; `raw` is the original XML, kept for later handling.
    Unknown { msg_type: String, raw: String },
}

/// 接收事件推送: one variant per `Event` (matched case-insensitively).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// 关注. From a parametric QR code `EventKey` is `qrscene_<scene>`; `scene` is `<scene>`.
    Subscribe { scene: Option<String>, ticket: Option<String> },
    /// 取消关注
    Unsubscribe,
    /// 扫描带参数二维码 (already following): `scene` is the `EventKey`.
    Scan { scene: String, ticket: Option<String> },
    /// 上报地理位置
    Location { latitude: f64, longitude: f64, precision: f64 },
    /// 点击菜单拉取消息
    Click { key: String },
    /// 点击菜单跳转链接
    View { url: String, menu_id: Option<String> },
    /// scancode_push: 扫码推事件
    ScancodePush { key: String, scan_type: String, scan_result: String },
    /// scancode_waitmsg: 扫码推事件且弹出“消息接收中”提示框
    ScancodeWaitmsg { key: String, scan_type: String, scan_result: String },
    /// pic_sysphoto: 弹出系统拍照发图
    PicSysphoto { key: String, count: i64, pic_md5s: Vec<String> },
    /// pic_photo_or_album: 弹出拍照或者相册发图
    PicPhotoOrAlbum { key: String, count: i64, pic_md5s: Vec<String> },
    /// pic_weixin: 弹出微信相册发图器
    PicWeixin { key: String, count: i64, pic_md5s: Vec<String> },
    /// location_select: 弹出地理位置选择器 (an empty `Poiname` is `None`).
    LocationSelect { key: String, location_x: f64, location_y: f64, scale: i64, label: String, poiname: Option<String> },
    /// view_miniprogram: 点击菜单跳转小程序; `path` is the `EventKey`.
    ViewMiniprogram { path: String, menu_id: Option<String> },
    /// TEMPLATESENDJOBFINISH: 模板消息发送结果 (`status`: success, failed:user block, failed: system failed).
    TemplateSendJobFinish { msg_id: i64, status: String },
    /// MASSSENDJOBFINISH: 群发结果
    MassSendJobFinish { msg_id: i64, status: String, total_count: i64, filter_count: i64, sent_count: i64, error_count: i64 },
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
        self.opt_nonempty("MenuId").or_else(|| self.opt_nonempty("MenuID"))
    }
}

fn parse_i64(field: &str, v: &str) -> Result<i64> {
    v.trim().parse().map_err(|_| Error::Decode(format!("field {field} is not an integer")))
}

fn parse_f64(field: &str, v: &str) -> Result<f64> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| Error::Decode(format!("field {field} is not a number")))
}

fn group_str<'a>(g: &XmlGroup<'a>, path: &str, name: &str) -> Result<&'a str> {
    g.get(name).ok_or_else(|| missing(&format!("{path}.{name}")))
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
                error_code: parse_i64(&format!("{path}.ErrorCode"), group_str(g, &path, "ErrorCode")?)?,
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
        Ok((key()?, f.string("ScanCodeInfo.ScanType")?, f.string("ScanCodeInfo.ScanResult")?))
    };
    let pics = || -> Result<(String, i64, Vec<String>)> {
        let md5s = f.0.get_all("SendPicsInfo.PicList.item.PicMd5Sum").map(str::to_owned).collect();
        Ok((key()?, f.i64("SendPicsInfo.Count")?, md5s))
    };

    let event = if is("subscribe") {
        let scene = f.opt("EventKey").filter(|k| !k.is_empty()).map(|k| k.strip_prefix("qrscene_").unwrap_or(k).to_owned());
        Event::Subscribe { scene, ticket: f.opt_nonempty("Ticket") }
    } else if is("unsubscribe") {
        Event::Unsubscribe
    } else if is("SCAN") {
        Event::Scan { scene: key()?, ticket: f.opt_nonempty("Ticket") }
    } else if is("LOCATION") {
        Event::Location { latitude: f.f64("Latitude")?, longitude: f.f64("Longitude")?, precision: f.f64("Precision")? }
    } else if is("CLICK") {
        Event::Click { key: key()? }
    } else if is("VIEW") {
        Event::View { url: key()?, menu_id: f.menu_id() }
    } else if is("scancode_push") {
        let (key, scan_type, scan_result) = scan()?;
        Event::ScancodePush { key, scan_type, scan_result }
    } else if is("scancode_waitmsg") {
        let (key, scan_type, scan_result) = scan()?;
        Event::ScancodeWaitmsg { key, scan_type, scan_result }
    } else if is("pic_sysphoto") {
        let (key, count, pic_md5s) = pics()?;
        Event::PicSysphoto { key, count, pic_md5s }
    } else if is("pic_photo_or_album") {
        let (key, count, pic_md5s) = pics()?;
        Event::PicPhotoOrAlbum { key, count, pic_md5s }
    } else if is("pic_weixin") {
        let (key, count, pic_md5s) = pics()?;
        Event::PicWeixin { key, count, pic_md5s }
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
        Event::ViewMiniprogram { path: key()?, menu_id: f.menu_id() }
    } else if is("TEMPLATESENDJOBFINISH") {
        Event::TemplateSendJobFinish { msg_id: f.msg_id()?, status: f.string("Status")? }
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
        Event::SubscribeMsgPopup { items: subscribe_items(f.0, "SubscribeMsgPopupEvent")? }
    } else if is("subscribe_msg_change_event") {
        Event::SubscribeMsgChange { items: subscribe_items(f.0, "SubscribeMsgChangeEvent")? }
    } else if is("subscribe_msg_sent_event") {
        Event::SubscribeMsgSent { items: subscribe_sent_items(f.0)? }
    } else {
        Event::Unknown { event: name.to_owned(), raw: raw.to_owned() }
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
        MessageBody::Image { msg_id: f.msg_id()?, pic_url: f.string("PicUrl")?, media_id: f.string("MediaId")? }
    } else if is("voice") {
        MessageBody::Voice {
            msg_id: f.msg_id()?,
            media_id: f.string("MediaId")?,
            format: f.string("Format")?,
            recognition: f.opt_nonempty("Recognition"),
        }
    } else if is("video") {
        MessageBody::Video { msg_id: f.msg_id()?, media_id: f.string("MediaId")?, thumb_media_id: f.string("ThumbMediaId")? }
    } else if is("shortvideo") {
        MessageBody::ShortVideo { msg_id: f.msg_id()?, media_id: f.string("MediaId")?, thumb_media_id: f.string("ThumbMediaId")? }
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
        MessageBody::Unknown { msg_type: msg_type.to_owned(), raw: raw.to_owned() }
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

    /// The `MsgType` ("text", "image", ..., "event", or the unknown type as received), for metrics.
    pub fn msg_type(&self) -> &str {
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
            MessageBody::Unknown { msg_type, .. } => msg_type,
        }
    }

    /// The `Event` name as WeChat spells it ("subscribe", "CLICK", "TEMPLATESENDJOBFINISH", ...,
    /// or the unknown name as received); `None` for messages.
    pub fn event_name(&self) -> Option<&str> {
        let MessageBody::Event(e) = &self.body else { return None };
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
            Event::Unknown { event, .. } => event,
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
    /// `{FromUserName}:{CreateTime}:{Event}`. A key on `MsgId` alone would drop other users'
    /// messages. Job-finish events append `:{MsgID}` (two template sends to one follower in the
    /// same second are two reports); unknown message types use `{FromUserName}:{CreateTime}:{MsgType}`.
    pub fn dedup_key(&self) -> String {
        let from = &self.from_user;
        match (&self.body, self.msg_id()) {
            (MessageBody::Event(_), msg_id) => {
                let event = self.event_name().unwrap_or_default();
                match msg_id {
                    Some(id) => format!("{from}:{}:{event}:{id}", self.create_time),
                    None => format!("{from}:{}:{event}", self.create_time),
                }
            }
            (_, Some(id)) => format!("{from}:{id}"),
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
