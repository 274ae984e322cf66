//! The fake's state and one handler per WeChat endpoint. Handlers are synchronous and run under
//! the state lock; the dispatcher does faults, recording and the outbox.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::{Sent, Shared};
use crate::client::{api, unix_now, TemplateInfo};

pub(crate) enum Reply {
    Json(Value),
    Err(i64),
    Image(&'static str, Vec<u8>),
    Status(StatusCode),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// Credentials in the request itself (token, jscode2session).
    None,
    /// An official-account access token.
    Oa,
    /// A mini-program access token.
    Mp,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    None,
    Json,
    Multipart,
}

type Handler = fn(&Shared, &mut State, &Ctx<'_>, &mut Option<Sent>) -> Reply;

pub(crate) struct Route {
    pub api: &'static str,
    pub post: bool,
    pub auth: Auth,
    pub body: BodyKind,
    pub token_endpoint: bool,
    handler: Handler,
}

const fn route(
    api: &'static str,
    post: bool,
    auth: Auth,
    body: BodyKind,
    handler: Handler,
) -> Route {
    Route {
        api,
        post,
        auth,
        body,
        token_endpoint: false,
        handler,
    }
}

pub(crate) static ROUTES: &[Route] = &[
    Route {
        api: api::TOKEN,
        post: false,
        auth: Auth::None,
        body: BodyKind::None,
        token_endpoint: true,
        handler: token,
    },
    Route {
        api: api::STABLE_TOKEN,
        post: true,
        auth: Auth::None,
        body: BodyKind::Json,
        token_endpoint: true,
        handler: stable_token,
    },
    route(
        api::MENU_CREATE,
        true,
        Auth::Oa,
        BodyKind::Json,
        menu_create,
    ),
    route(api::MENU_GET, false, Auth::Oa, BodyKind::None, menu_get),
    route(
        api::MENU_DELETE,
        false,
        Auth::Oa,
        BodyKind::None,
        menu_delete,
    ),
    route(api::USER_GET, false, Auth::Oa, BodyKind::None, user_get),
    route(
        api::USER_INFO_BATCHGET,
        true,
        Auth::Oa,
        BodyKind::Json,
        user_info_batchget,
    ),
    route(
        api::TAGS_CREATE,
        true,
        Auth::Oa,
        BodyKind::Json,
        tags_create,
    ),
    route(api::TAGS_GET, false, Auth::Oa, BodyKind::None, tags_get),
    route(
        api::USER_TAG_GET,
        true,
        Auth::Oa,
        BodyKind::Json,
        user_tag_get,
    ),
    route(
        api::TAGS_MEMBERS_BATCHTAGGING,
        true,
        Auth::Oa,
        BodyKind::Json,
        batchtagging,
    ),
    route(
        api::CUSTOM_SEND,
        true,
        Auth::Oa,
        BodyKind::Json,
        custom_send,
    ),
    route(
        api::TEMPLATE_SEND,
        true,
        Auth::Oa,
        BodyKind::Json,
        template_send,
    ),
    route(
        api::TEMPLATE_LIST,
        false,
        Auth::Oa,
        BodyKind::None,
        template_list,
    ),
    route(
        api::MASS_SENDALL,
        true,
        Auth::Oa,
        BodyKind::Json,
        mass_sendall,
    ),
    route(
        api::MASS_PREVIEW,
        true,
        Auth::Oa,
        BodyKind::Json,
        mass_preview,
    ),
    route(
        api::MEDIA_UPLOAD,
        true,
        Auth::Oa,
        BodyKind::Multipart,
        media_upload,
    ),
    route(
        api::MATERIAL_ADD,
        true,
        Auth::Oa,
        BodyKind::Multipart,
        material_add,
    ),
    route(api::DRAFT_ADD, true, Auth::Oa, BodyKind::Json, draft_add),
    route(
        api::JSCODE2SESSION,
        false,
        Auth::None,
        BodyKind::None,
        jscode2session,
    ),
    route(
        api::GET_USER_PHONE_NUMBER,
        true,
        Auth::Mp,
        BodyKind::Json,
        get_user_phone_number,
    ),
    route(
        api::MSG_SEC_CHECK,
        true,
        Auth::Mp,
        BodyKind::Json,
        msg_sec_check,
    ),
    route(
        api::SUBSCRIBE_SEND,
        true,
        Auth::Mp,
        BodyKind::Json,
        subscribe_send,
    ),
    route(
        api::SUBSCRIBE_BIZSEND,
        true,
        Auth::Oa,
        BodyKind::Json,
        subscribe_bizsend,
    ),
    route(
        api::WXACODE_UNLIMIT,
        true,
        Auth::Mp,
        BodyKind::Json,
        wxacode_unlimit,
    ),
];

/// The errmsg WeChat uses for a code (全局返回码), or a generic one.
pub(crate) fn errmsg(code: i64) -> &'static str {
    match code {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40003 => "invalid openid",
        40004 => "invalid media type",
        40007 => "invalid media_id",
        40008 => "invalid message type",
        40013 => "invalid appid",
        40014 => "invalid access_token",
        40016 => "invalid button size",
        40017 => "invalid button type",
        40018 => "invalid button name size",
        40019 => "invalid button key size",
        40023 => "invalid sub button size",
        40029 => "invalid code",
        40032 => "invalid openid list size",
        40037 => "invalid template_id",
        40125 => "invalid appsecret",
        40169 => "invalid length for scene",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41005 => "media data missing",
        41008 => "missing code",
        41030 => "invalid page",
        42001 => "access_token expired",
        43004 => "require subscribe",
        43101 => "user refuse to accept the msg",
        44002 => "empty post data",
        45009 => "reach max api daily quota limit",
        45047 => "out of response count limit",
        45056 => "too many tags now, no need to add new",
        45065 => "clientmsgid exist",
        45157 => "invalid tag name",
        45158 => "tag name too long",
        45159 => "invalid tag id",
        46003 => "menu no exist",
        47001 => "data format error",
        47003 => "argument invalid!",
        48001 => "api unauthorized",
        _ => "fake wechat error",
    }
}

pub(crate) struct IssuedToken {
    app_id: String,
    expires_at: Instant,
}

struct Follower {
    subscribed: bool,
    subscribe_time: i64,
    tags: Vec<i64>,
}

pub(crate) struct FakeTag {
    name: String,
    pub members: BTreeSet<String>,
}

pub(crate) struct State {
    pub tokens: HashMap<String, IssuedToken>,
    /// AppId → its current stable token.
    stable: HashMap<String, String>,
    pub token_expires_in: i64,
    pub followers: Vec<String>,
    follower_pos: HashMap<String, usize>,
    follower_info: HashMap<String, Follower>,
    pub page_size: usize,
    pub tags: BTreeMap<i64, FakeTag>,
    next_tag_id: i64,
    pub templates: Vec<TemplateInfo>,
    pub menu: Option<Value>,
    pub phones: HashMap<String, String>,
    pub sec_review: Vec<String>,
    pub sec_risky: Vec<String>,
    pub failing_openids: HashMap<String, i64>,
    media: HashSet<String>,
    materials: HashSet<String>,
    drafts: HashSet<String>,
    /// (touser, client_msg_id) → msgid of 模板消息 already sent.
    template_dedupe: HashMap<(String, String), i64>,
    mass_dedupe: HashSet<String>,
    seq: u64,
}

impl State {
    pub fn new() -> Self {
        Self {
            tokens: HashMap::new(),
            stable: HashMap::new(),
            token_expires_in: 7200,
            followers: Vec::new(),
            follower_pos: HashMap::new(),
            follower_info: HashMap::new(),
            page_size: 10_000,
            tags: BTreeMap::new(),
            next_tag_id: 100,
            templates: Vec::new(),
            menu: None,
            phones: HashMap::new(),
            sec_review: Vec::new(),
            sec_risky: Vec::new(),
            failing_openids: HashMap::new(),
            media: HashSet::new(),
            materials: HashSet::new(),
            drafts: HashSet::new(),
            template_dedupe: HashMap::new(),
            mass_dedupe: HashSet::new(),
            seq: 0,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn add_follower(&mut self, openid: &str) {
        if self.follower_pos.contains_key(openid) {
            return;
        }
        self.follower_pos
            .insert(openid.to_owned(), self.followers.len());
        self.followers.push(openid.to_owned());
        let now = unix_now();
        self.follower_info
            .entry(openid.to_owned())
            .and_modify(|f| {
                f.subscribed = true;
                f.subscribe_time = now;
            })
            .or_insert(Follower {
                subscribed: true,
                subscribe_time: now,
                tags: Vec::new(),
            });
    }

    pub fn remove_follower(&mut self, openid: &str) {
        if self.follower_pos.remove(openid).is_none() {
            return;
        }
        self.followers.retain(|o| o != openid);
        self.follower_pos = self
            .followers
            .iter()
            .enumerate()
            .map(|(i, o)| (o.clone(), i))
            .collect();
        if let Some(f) = self.follower_info.get_mut(openid) {
            f.subscribed = false;
        }
    }

    pub fn expire_tokens(&mut self) {
        let now = Instant::now();
        for t in self.tokens.values_mut() {
            t.expires_at = now;
        }
    }

    fn issue_token(&mut self, app_id: &str) -> String {
        let token = format!("FAKE_ACCESS_TOKEN_{}", crate::token::random_id());
        let secs = self.token_expires_in.max(0) as u64;
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                app_id: app_id.to_owned(),
                expires_at: Instant::now() + Duration::from_secs(secs),
            },
        );
        token
    }

    /// Whether a send to `openid` may go out: well-formed, not made to fail, still following.
    fn check_recipient(&self, openid: Option<&str>) -> Result<(), i64> {
        let openid = openid.filter(|o| valid_openid(o)).ok_or(40003)?;
        if let Some(code) = self.failing_openids.get(openid) {
            return Err(*code);
        }
        if self
            .follower_info
            .get(openid)
            .is_some_and(|f| !f.subscribed)
        {
            return Err(43004);
        }
        Ok(())
    }
}

/// What the dispatcher parsed of the request body.
pub(crate) struct ParsedBody {
    pub json: Value,
    error: Option<i64>,
}

pub(crate) fn parse_body(route: &Route, headers: &HeaderMap, raw: &[u8]) -> ParsedBody {
    match route.body {
        BodyKind::None => ParsedBody {
            json: Value::Null,
            error: None,
        },
        BodyKind::Json => {
            if raw.iter().all(u8::is_ascii_whitespace) {
                return ParsedBody {
                    json: Value::Null,
                    error: Some(44002),
                };
            }
            match serde_json::from_slice::<Value>(raw) {
                Ok(v @ Value::Object(_)) => ParsedBody {
                    json: v,
                    error: None,
                },
                Ok(v) => ParsedBody {
                    json: v,
                    error: Some(47001),
                },
                Err(_) => ParsedBody {
                    json: Value::String(String::from_utf8_lossy(raw).into_owned()),
                    error: Some(47001),
                },
            }
        }
        BodyKind::Multipart => {
            let is_multipart = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("multipart/form-data"));
            let has_media = raw.windows(14).any(|w| w == b"name=\"media\"; ")
                || raw.windows(13).any(|w| w == b"name=\"media\"\r");
            let error = if is_multipart && has_media {
                None
            } else {
                Some(41005)
            };
            ParsedBody {
                json: json!({ "multipart_bytes": raw.len() }),
                error,
            }
        }
    }
}

pub(crate) struct Ctx<'a> {
    pub query: &'a BTreeMap<String, String>,
    pub body: &'a Value,
}

pub(crate) fn handle(
    shared: &Shared,
    st: &mut State,
    route: &Route,
    query: &BTreeMap<String, String>,
    body: &ParsedBody,
    sent: &mut Option<Sent>,
) -> Reply {
    if route.auth != Auth::None {
        if let Err(code) = check_token(shared, st, query, route.auth) {
            return Reply::Err(code);
        }
    }
    if let Some(code) = body.error {
        return Reply::Err(code);
    }
    (route.handler)(
        shared,
        st,
        &Ctx {
            query,
            body: &body.json,
        },
        sent,
    )
}

fn check_token(
    shared: &Shared,
    st: &State,
    query: &BTreeMap<String, String>,
    auth: Auth,
) -> Result<(), i64> {
    let token = query
        .get("access_token")
        .filter(|t| !t.is_empty())
        .ok_or(41001)?;
    let issued = st.tokens.get(token.as_str()).ok_or(40001)?;
    if Instant::now() >= issued.expires_at {
        return Err(42001);
    }
    let wanted = match auth {
        Auth::Oa => &shared.config.app_id,
        Auth::Mp => &shared.config.mp_app_id,
        Auth::None => return Ok(()),
    };
    if &issued.app_id != wanted {
        return Err(48001);
    }
    Ok(())
}

fn ok() -> Reply {
    Reply::Json(json!({"errcode": 0, "errmsg": "ok"}))
}

fn valid_openid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn nonempty_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn next_msgid(shared: &Shared) -> i64 {
    shared.next_msgid.fetch_add(1, Ordering::AcqRel)
}

/// The AppSecret for `appid`, if it is one of ours.
fn secret_of<'a>(shared: &'a Shared, appid: &str) -> Option<&'a str> {
    let c = &shared.config;
    if appid == c.app_id {
        Some(&c.app_secret)
    } else if appid == c.mp_app_id {
        Some(&c.mp_app_secret)
    } else {
        None
    }
}

fn check_credentials(
    shared: &Shared,
    grant_type: Option<&str>,
    appid: Option<&str>,
    secret: Option<&str>,
) -> Result<String, i64> {
    if grant_type != Some("client_credential") {
        return Err(40002);
    }
    let appid = appid.filter(|s| !s.is_empty()).ok_or(41002)?;
    let expected = secret_of(shared, appid).ok_or(40013)?;
    let secret = secret.filter(|s| !s.is_empty()).ok_or(41004)?;
    if secret != expected {
        return Err(40125);
    }
    Ok(appid.to_owned())
}

// ---- 获取 Access token ----

fn token(shared: &Shared, st: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let q = |k: &str| cx.query.get(k).map(String::as_str);
    match check_credentials(shared, q("grant_type"), q("appid"), q("secret")) {
        Ok(appid) => {
            let token = st.issue_token(&appid);
            Reply::Json(json!({"access_token": token, "expires_in": st.token_expires_in}))
        }
        Err(code) => Reply::Err(code),
    }
}

fn stable_token(shared: &Shared, st: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let b = cx.body;
    let appid = match check_credentials(
        shared,
        b.get("grant_type").and_then(Value::as_str),
        b.get("appid").and_then(Value::as_str),
        b.get("secret").and_then(Value::as_str),
    ) {
        Ok(a) => a,
        Err(code) => return Reply::Err(code),
    };
    let force = b
        .get("force_refresh")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let now = Instant::now();
    if !force {
        if let Some(current) = st.stable.get(&appid) {
            if let Some(issued) = st.tokens.get(current).filter(|t| t.expires_at > now) {
                let left = issued.expires_at.duration_since(now).as_secs();
                return Reply::Json(json!({"access_token": current, "expires_in": left}));
            }
        }
    }
    let token = st.issue_token(&appid);
    st.stable.insert(appid, token.clone());
    Reply::Json(json!({"access_token": token, "expires_in": st.token_expires_in}))
}

// ---- 自定义菜单 ----

fn validate_button(b: &Value, top: bool) -> Result<(), i64> {
    let name = nonempty_str(b, "name").ok_or(40018)?;
    if name.len() > if top { 16 } else { 60 } {
        return Err(40018);
    }
    let subs = b
        .get("sub_button")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty());
    if let Some(subs) = subs {
        if !top || subs.len() > 5 {
            return Err(40023);
        }
        return subs.iter().try_for_each(|s| validate_button(s, false));
    }
    match b.get("type").and_then(Value::as_str) {
        Some("click") => match nonempty_str(b, "key") {
            Some(k) if k.len() <= 128 => Ok(()),
            _ => Err(40019),
        },
        Some("view") => nonempty_str(b, "url").map(|_| ()).ok_or(40054),
        Some("miniprogram") => {
            if ["url", "appid", "pagepath"]
                .iter()
                .all(|k| nonempty_str(b, k).is_some())
            {
                Ok(())
            } else {
                Err(47001)
            }
        }
        Some(
            "scancode_push" | "scancode_waitmsg" | "pic_sysphoto" | "pic_photo_or_album"
            | "pic_weixin" | "location_select",
        ) => nonempty_str(b, "key").map(|_| ()).ok_or(40019),
        Some("media_id" | "view_limited") => nonempty_str(b, "media_id").map(|_| ()).ok_or(40007),
        Some("article_id" | "article_view_limited") => {
            nonempty_str(b, "article_id").map(|_| ()).ok_or(47001)
        }
        _ => Err(40017),
    }
}

fn menu_create(_: &Shared, st: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let Some(buttons) = cx.body.get("button").and_then(Value::as_array) else {
        return Reply::Err(47001);
    };
    if buttons.is_empty() || buttons.len() > 3 {
        return Reply::Err(40016);
    }
    if let Err(code) = buttons.iter().try_for_each(|b| validate_button(b, true)) {
        return Reply::Err(code);
    }
    st.menu = Some(json!({ "button": buttons }));
    ok()
}

fn menu_get(_: &Shared, st: &mut State, _: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    match &st.menu {
        Some(menu) => Reply::Json(json!({ "menu": menu })),
        None => Reply::Err(46003),
    }
}

fn menu_delete(_: &Shared, st: &mut State, _: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    st.menu = None;
    ok()
}

// ---- 用户管理 ----

fn page_json(page: Vec<String>, total: Option<usize>) -> Value {
    let next = page.last().cloned().unwrap_or_default();
    let mut v = json!({ "count": page.len(), "next_openid": next });
    if let Some(total) = total {
        v["total"] = json!(total);
    }
    if !page.is_empty() {
        v["data"] = json!({ "openid": page });
    }
    v
}

fn user_get(_: &Shared, st: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let start = match cx.query.get("next_openid").filter(|s| !s.is_empty()) {
        None => 0,
        Some(next) => match st.follower_pos.get(next.as_str()) {
            Some(pos) => pos + 1,
            None => return Reply::Err(40003),
        },
    };
    let end = (start + st.page_size).min(st.followers.len());
    let page = st.followers.get(start..end).unwrap_or(&[]).to_vec();
    Reply::Json(page_json(page, Some(st.followers.len())))
}

fn user_info_batchget(_: &Shared, st: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let Some(list) = cx.body.get("user_list").and_then(Value::as_array) else {
        return Reply::Err(47001);
    };
    if list.is_empty() || list.len() > 100 {
        return Reply::Err(47001);
    }
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let Some(openid) = item
            .get("openid")
            .and_then(Value::as_str)
            .filter(|o| valid_openid(o))
        else {
            return Reply::Err(40003);
        };
        let lang = item.get("lang").and_then(Value::as_str).unwrap_or("zh_CN");
        out.push(
            match st.follower_info.get(openid).filter(|f| f.subscribed) {
                Some(f) => json!({
                    "subscribe": 1,
                    "openid": openid,
                    "language": lang,
                    "subscribe_time": f.subscribe_time,
                    "unionid": format!("union_{openid}"),
                    "remark": "",
                    "groupid": 0,
                    "tagid_list": f.tags,
                    "subscribe_scene": "ADD_SCENE_QR_CODE",
                    "qr_scene": 0,
                    "qr_scene_str": "",
                }),
                None => json!({ "subscribe": 0, "openid": openid }),
            },
        );
    }
    Reply::Json(json!({ "user_info_list": out }))
}

fn tags_create(_: &Shared, st: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let Some(name) = cx.body.get("tag").and_then(|t| nonempty_str(t, "name")) else {
        return Reply::Err(47001);
    };
    if name.len() > 30 {
        return Reply::Err(45158);
    }
    if st.tags.values().any(|t| t.name == name) {
        return Reply::Err(45157);
    }
    if st.tags.len() >= 100 {
        return Reply::Err(45056);
    }
    let id = st.next_tag_id;
    st.next_tag_id += 1;
    st.tags.insert(
        id,
        FakeTag {
            name: name.to_owned(),
            members: BTreeSet::new(),
        },
    );
    Reply::Json(json!({ "tag": { "id": id, "name": name } }))
}

fn tags_get(_: &Shared, st: &mut State, _: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let tags: Vec<Value> = st
        .tags
        .iter()
        .map(|(id, t)| json!({ "id": id, "name": t.name, "count": t.members.len() }))
        .collect();
    Reply::Json(json!({ "tags": tags }))
}

fn user_tag_get(_: &Shared, st: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let Some(tagid) = cx.body.get("tagid").and_then(Value::as_i64) else {
        return Reply::Err(47001);
    };
    let Some(tag) = st.tags.get(&tagid) else {
        return Reply::Err(45159);
    };
    let lower = match nonempty_str(cx.body, "next_openid") {
        Some(next) => Bound::Excluded(next.to_owned()),
        None => Bound::Unbounded,
    };
    let page: Vec<String> = tag
        .members
        .range((lower, Bound::Unbounded))
        .take(st.page_size)
        .cloned()
        .collect();
    Reply::Json(page_json(page, None))
}

fn batchtagging(_: &Shared, st: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let (Some(list), Some(tagid)) = (
        cx.body.get("openid_list").and_then(Value::as_array),
        cx.body.get("tagid").and_then(Value::as_i64),
    ) else {
        return Reply::Err(47001);
    };
    if list.is_empty() || list.len() > 50 {
        return Reply::Err(40032);
    }
    if !st.tags.contains_key(&tagid) {
        return Reply::Err(45159);
    }
    let mut openids = Vec::with_capacity(list.len());
    for o in list {
        let Some(o) = o.as_str().filter(|o| valid_openid(o)) else {
            return Reply::Err(40003);
        };
        if let Some(code) = st.failing_openids.get(o) {
            return Reply::Err(*code);
        }
        openids.push(o.to_owned());
    }
    for o in openids {
        if let Some(f) = st.follower_info.get_mut(&o) {
            if !f.tags.contains(&tagid) {
                f.tags.push(tagid);
            }
        }
        if let Some(tag) = st.tags.get_mut(&tagid) {
            tag.members.insert(o);
        }
    }
    ok()
}

// ---- 消息 ----

fn custom_send(shared: &Shared, st: &mut State, cx: &Ctx<'_>, sent: &mut Option<Sent>) -> Reply {
    let b = cx.body;
    let touser = b.get("touser").and_then(Value::as_str);
    if let Err(code) = st.check_recipient(touser) {
        return Reply::Err(code);
    }
    let valid = match b.get("msgtype").and_then(Value::as_str) {
        Some("text") => b
            .get("text")
            .and_then(|t| nonempty_str(t, "content"))
            .is_some(),
        Some("news") => match b
            .get("news")
            .and_then(|n| n.get("articles"))
            .and_then(Value::as_array)
        {
            Some(a) if a.len() == 1 => {
                nonempty_str(&a[0], "title").is_some() && nonempty_str(&a[0], "url").is_some()
            }
            Some(a) if a.len() > 1 => return Reply::Err(45008),
            _ => false,
        },
        Some("miniprogrampage") => b.get("miniprogrampage").is_some_and(|p| {
            ["title", "appid", "pagepath", "thumb_media_id"]
                .iter()
                .all(|k| nonempty_str(p, k).is_some())
        }),
        Some("image" | "voice") => b
            .pointer("/image/media_id")
            .or_else(|| b.pointer("/voice/media_id"))
            .is_some(),
        Some(_) => return Reply::Err(40008),
        None => false,
    };
    if !valid {
        return Reply::Err(47001);
    }
    *sent = Some(Sent {
        channel: "custom",
        to_user: touser.map(str::to_owned),
        msgid: next_msgid(shared),
    });
    ok()
}

fn template_send(shared: &Shared, st: &mut State, cx: &Ctx<'_>, sent: &mut Option<Sent>) -> Reply {
    let b = cx.body;
    let touser = b.get("touser").and_then(Value::as_str);
    if let Err(code) = st.check_recipient(touser) {
        return Reply::Err(code);
    }
    let touser = touser.unwrap_or_default();
    let Some(template_id) = nonempty_str(b, "template_id") else {
        return Reply::Err(40037);
    };
    if !st.templates.iter().any(|t| t.template_id == template_id) {
        return Reply::Err(40037);
    }
    if !b.get("data").is_some_and(Value::is_object) {
        return Reply::Err(47001);
    }
    let dedupe_key = nonempty_str(b, "client_msg_id").map(|c| (touser.to_owned(), c.to_owned()));
    if let Some(key) = &dedupe_key {
        if let Some(msgid) = st.template_dedupe.get(key) {
            // WeChat sends one message per (touser, client_msg_id): answer as before, send nothing.
            return Reply::Json(json!({"errcode": 0, "errmsg": "ok", "msgid": msgid}));
        }
    }
    let msgid = next_msgid(shared);
    if let Some(key) = dedupe_key {
        st.template_dedupe.insert(key, msgid);
    }
    *sent = Some(Sent {
        channel: "template",
        to_user: Some(touser.to_owned()),
        msgid,
    });
    Reply::Json(json!({"errcode": 0, "errmsg": "ok", "msgid": msgid}))
}

fn template_list(_: &Shared, st: &mut State, _: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    Reply::Json(json!({ "template_list": st.templates }))
}

/// Checks the `msgtype` and its content of a 群发 or 预览.
fn check_mass_content(st: &State, b: &Value) -> Result<bool, i64> {
    match b.get("msgtype").and_then(Value::as_str) {
        Some("mpnews") => {
            let id = b
                .pointer("/mpnews/media_id")
                .and_then(Value::as_str)
                .ok_or(47001)?;
            if st.drafts.contains(id) {
                Ok(true)
            } else {
                Err(40007)
            }
        }
        Some("text") => b
            .get("text")
            .and_then(|t| nonempty_str(t, "content"))
            .map(|_| false)
            .ok_or(47001),
        Some(_) => Err(40008),
        None => Err(47001),
    }
}

fn mass_sendall(shared: &Shared, st: &mut State, cx: &Ctx<'_>, sent: &mut Option<Sent>) -> Reply {
    let b = cx.body;
    let Some(filter) = b.get("filter") else {
        return Reply::Err(47001);
    };
    let Some(to_all) = filter.get("is_to_all").and_then(Value::as_bool) else {
        return Reply::Err(47001);
    };
    if !to_all {
        match filter.get("tag_id").and_then(Value::as_i64) {
            Some(id) if st.tags.contains_key(&id) => {}
            _ => return Reply::Err(45159),
        }
    }
    let is_news = match check_mass_content(st, b) {
        Ok(n) => n,
        Err(code) => return Reply::Err(code),
    };
    if let Some(c) = nonempty_str(b, "clientmsgid") {
        if !st.mass_dedupe.insert(c.to_owned()) {
            return Reply::Err(45065);
        }
    }
    let msg_id = next_msgid(shared);
    *sent = Some(Sent {
        channel: "mass",
        to_user: None,
        msgid: msg_id,
    });
    let mut v = json!({"errcode": 0, "errmsg": "send job submission success", "msg_id": msg_id});
    if is_news {
        v["msg_data_id"] = json!(2_000_000_000 + st.next_seq() as i64);
    }
    Reply::Json(v)
}

fn mass_preview(shared: &Shared, st: &mut State, cx: &Ctx<'_>, sent: &mut Option<Sent>) -> Reply {
    let b = cx.body;
    let touser = b.get("touser").and_then(Value::as_str);
    let towxname = nonempty_str(b, "towxname");
    if towxname.is_none() {
        if let Err(code) = st.check_recipient(touser) {
            return Reply::Err(code);
        }
    }
    if let Err(code) = check_mass_content(st, b) {
        return Reply::Err(code);
    }
    let msg_id = next_msgid(shared);
    *sent = Some(Sent {
        channel: "preview",
        to_user: touser.or(towxname).map(str::to_owned),
        msgid: msg_id,
    });
    Reply::Json(json!({"errcode": 0, "errmsg": "preview success", "msg_id": msg_id}))
}

// ---- 素材 ----

fn media_upload(_: &Shared, st: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let kind = cx.query.get("type").map(String::as_str).unwrap_or("");
    if !matches!(kind, "image" | "voice" | "video" | "thumb") {
        return Reply::Err(40004);
    }
    let id = format!("fake_media_{}", st.next_seq());
    st.media.insert(id.clone());
    let key = if kind == "thumb" {
        "thumb_media_id"
    } else {
        "media_id"
    };
    Reply::Json(json!({ "type": kind, key: id, "created_at": unix_now() }))
}

fn material_add(_: &Shared, st: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let kind = cx.query.get("type").map(String::as_str).unwrap_or("");
    if !matches!(kind, "image" | "voice" | "video" | "thumb") {
        return Reply::Err(40004);
    }
    let id = format!("fake_material_{}", st.next_seq());
    st.materials.insert(id.clone());
    let url = if kind == "image" {
        format!("http://mmbiz.qpic.cn/fake/{id}/0")
    } else {
        String::new()
    };
    Reply::Json(json!({ "media_id": id, "url": url }))
}

fn draft_add(_: &Shared, st: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let Some(articles) = cx.body.get("articles").and_then(Value::as_array) else {
        return Reply::Err(47001);
    };
    if articles.is_empty() || articles.len() > 8 {
        return Reply::Err(47001);
    }
    for a in articles {
        if nonempty_str(a, "title").is_none() || nonempty_str(a, "content").is_none() {
            return Reply::Err(47001);
        }
        match nonempty_str(a, "thumb_media_id") {
            Some(id) if st.materials.contains(id) => {}
            _ => return Reply::Err(40007),
        }
    }
    let id = format!("fake_draft_{}", st.next_seq());
    st.drafts.insert(id.clone());
    Reply::Json(json!({ "media_id": id }))
}

// ---- 小程序 ----

fn jscode2session(shared: &Shared, _: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let q = |k: &str| {
        cx.query
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    };
    let c = &shared.config;
    let Some(appid) = q("appid") else {
        return Reply::Err(41002);
    };
    if appid != c.mp_app_id {
        return Reply::Err(40013);
    }
    let Some(secret) = q("secret") else {
        return Reply::Err(41004);
    };
    if secret != c.mp_app_secret {
        return Reply::Err(40125);
    }
    if q("grant_type") != Some("authorization_code") {
        return Reply::Err(40002);
    }
    let Some(code) = q("js_code") else {
        return Reply::Err(41008);
    };
    if code == "invalid" {
        return Reply::Err(40029);
    }
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("session_key:{code}").as_bytes());
    let session_key = base64::engine::general_purpose::STANDARD.encode(&digest[..16]);
    Reply::Json(json!({
        "openid": format!("mp_{code}"),
        "session_key": session_key,
        "unionid": format!("union_mp_{code}"),
    }))
}

fn get_user_phone_number(
    shared: &Shared,
    st: &mut State,
    cx: &Ctx<'_>,
    _: &mut Option<Sent>,
) -> Reply {
    let Some(code) = nonempty_str(cx.body, "code") else {
        return Reply::Err(47001);
    };
    let Some(phone) = st.phones.get(code) else {
        return Reply::Err(40029);
    };
    Reply::Json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": phone,
            "purePhoneNumber": phone,
            "countryCode": "86",
            "watermark": { "timestamp": unix_now(), "appid": shared.config.mp_app_id },
        },
    }))
}

fn msg_sec_check(_: &Shared, st: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let b = cx.body;
    let Some(content) = b.get("content").and_then(Value::as_str) else {
        return Reply::Err(47001);
    };
    if b.get("version").and_then(Value::as_i64) != Some(2) {
        return Reply::Err(47001);
    }
    if !matches!(b.get("scene").and_then(Value::as_i64), Some(1..=4)) {
        return Reply::Err(47001);
    }
    if !b
        .get("openid")
        .and_then(Value::as_str)
        .is_some_and(valid_openid)
    {
        return Reply::Err(40003);
    }
    let hit = |words: &[String]| {
        words
            .iter()
            .find(|w| !w.is_empty() && content.contains(w.as_str()))
            .cloned()
    };
    let (suggest, label, keyword) = if let Some(w) = hit(&st.sec_risky) {
        ("risky", 20006, Some(w))
    } else if let Some(w) = hit(&st.sec_review) {
        ("review", 21000, Some(w))
    } else {
        ("pass", 100, None)
    };
    let mut detail =
        json!({"strategy": "keyword", "errcode": 0, "suggest": suggest, "label": label});
    if let Some(k) = keyword {
        detail["keyword"] = json!(k);
        detail["level"] = json!(90);
    }
    Reply::Json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "result": { "suggest": suggest, "label": label },
        "detail": [detail],
        "trace_id": format!("fake_trace_{}", st.next_seq()),
    }))
}

fn subscribe_send(shared: &Shared, st: &mut State, cx: &Ctx<'_>, sent: &mut Option<Sent>) -> Reply {
    let b = cx.body;
    let touser = b.get("touser").and_then(Value::as_str);
    if let Err(code) = st.check_recipient(touser) {
        return Reply::Err(code);
    }
    if nonempty_str(b, "template_id").is_none() {
        return Reply::Err(40037);
    }
    if !b.get("data").is_some_and(Value::is_object) {
        return Reply::Err(47003);
    }
    *sent = Some(Sent {
        channel: "subscribe",
        to_user: touser.map(str::to_owned),
        msgid: next_msgid(shared),
    });
    ok()
}

/// 发送订阅通知 (公众号): like 发送订阅消息, with an official-account token, and the optional
/// `page` / `miniprogram{appid, pagepath}` checked for shape.
fn subscribe_bizsend(
    shared: &Shared,
    st: &mut State,
    cx: &Ctx<'_>,
    sent: &mut Option<Sent>,
) -> Reply {
    let b = cx.body;
    let touser = b.get("touser").and_then(Value::as_str);
    if let Err(code) = st.check_recipient(touser) {
        return Reply::Err(code);
    }
    if nonempty_str(b, "template_id").is_none() {
        return Reply::Err(40037);
    }
    let data_ok = b.get("data").and_then(Value::as_object).is_some_and(|d| {
        !d.is_empty()
            && d.values()
                .all(|v| v.get("value").is_some_and(Value::is_string))
    });
    if !data_ok {
        return Reply::Err(47003);
    }
    if let Some(mp) = b.get("miniprogram") {
        if nonempty_str(mp, "appid").is_none() {
            return Reply::Err(47003);
        }
    }
    if b.get("page").is_some_and(|p| !p.is_string()) {
        return Reply::Err(47001);
    }
    *sent = Some(Sent {
        channel: "bizsend",
        to_user: touser.map(str::to_owned),
        msgid: next_msgid(shared),
    });
    ok()
}

/// A 1×1 transparent PNG: enough for "an image came back".
const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

fn wxacode_unlimit(_: &Shared, _: &mut State, cx: &Ctx<'_>, _: &mut Option<Sent>) -> Reply {
    let Some(scene) = nonempty_str(cx.body, "scene") else {
        return Reply::Err(40169);
    };
    if scene.chars().count() > 32 {
        return Reply::Err(40169);
    }
    if nonempty_str(cx.body, "page").is_some_and(|p| p.starts_with('/')) {
        return Reply::Err(41030);
    }
    Reply::Image("image/png", PNG_1X1.to_vec())
}
