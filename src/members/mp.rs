//! The mini-program user: login (`wx.login` code → session), roster binding (WeChat-verified phone
//! + name → member), who am I, and subscribe-message consent.
//!
//! Personal data stays masked here: a member is shown with a masked phone and without ID number or
//! income. Phone numbers and names typed in are never logged or written to the audit log.

use std::{collections::BTreeMap, time::Duration};

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::mp_session::MpSession;
use crate::{
    app::AppState,
    articles::rules::rfc3339_shanghai,
    auth::{ratelimit, ClientIp},
    http::AppJson,
    members::{
        service::{self, BindRefused},
        store::{self, MemberRow},
    },
    platform::error::{AppError, AppResult},
    platform::pii::{self, DataCipher},
    push::{store as push_store, App},
};

/// Bind attempts per openid and hour: enough for typos, too few to probe the roster.
const BIND_ATTEMPTS_PER_HOUR: i64 = 10;
const BIND_WINDOW: Duration = Duration::from_secs(3600);
/// `wx.requestSubscribeMessage` takes at most 3 templates per call; a little headroom.
const MAX_SUBSCRIPTION_TEMPLATES: usize = 10;

/// The member as the mini-program sees it: masked phone, no ID number or income.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MpMemberOut {
    pub id: i64,
    pub name: String,
    pub phone: String,
    pub org_unit: String,
    pub category: String,
    pub party_status: String,
    /// Whether the member's official-account openid is known (through the UnionID): the
    /// account's template, mass and customer-service messages can reach them.
    pub account_linked: bool,
}

impl MpMemberOut {
    fn of(m: &MemberRow, cipher: &DataCipher) -> AppResult<MpMemberOut> {
        let slot = super::store::PHONE.at(m.id);
        let phone = cipher
            .open(slot, &m.phone_enc)
            .map_err(|e| AppError::Internal(crate::platform::db::sealed::refused(slot, e)))?;
        Ok(MpMemberOut {
            id: m.id,
            name: m.name.clone(),
            phone: pii::mask_phone(&phone),
            org_unit: m.org_unit.clone(),
            category: m.category.clone(),
            party_status: m.party_status.clone(),
            account_linked: m.oa_openid.is_some(),
        })
    }
}

/// `{"member": {...}}`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MemberEnvelope {
    pub member: MpMemberOut,
}

/// The roster entry bound to `openid`, if any.
async fn member_of(st: &AppState, openid: &str) -> AppResult<Option<MemberRow>> {
    Ok(store::bound_to(&st.db, openid).await?)
}

fn invalid_code(what: &str) -> AppError {
    // 400, not 401: a client that logs in again on 401 would loop on a bad code.
    AppError::rejected(
        StatusCode::BAD_REQUEST,
        "invalid_code",
        format!("the {what} code is invalid, expired or already used"),
    )
}

/// A WeChat one-time code from the client: `wx.login` or the getPhoneNumber button.
fn one_time_code<'a>(code: &'a str, field: &str) -> AppResult<&'a str> {
    let code = code.trim();
    if code.is_empty() || code.len() > 256 {
        return Err(AppError::Validation(format!(
            "{field} must be a non-empty code of at most 256 characters"
        )));
    }
    Ok(code)
}

// ---------------------------------------------------------------- login

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LoginIn {
    #[schemars(length(min = 1, max = 256), regex(pattern = r"\S"))]
    code: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct LoginOut {
    pub token: String,
    pub expires_at: String,
    pub member: Option<MpMemberOut>,
}

/// `POST /api/mp/login {"code"}` → `{"token","expires_at","member":null|{...}}`.
pub async fn login(
    State(st): State<AppState>,
    AppJson(body): AppJson<LoginIn>,
) -> AppResult<AppJson<LoginOut>> {
    let code = one_time_code(&body.code, "code")?;
    let wx = match st.mp.jscode2session(code).await {
        Ok(s) => s,
        // 40029 invalid code, 40163 code already used.
        Err(wechat::Error::Api {
            errcode: 40029 | 40163,
            ..
        }) => return Err(invalid_code("login")),
        Err(wechat::Error::Api { errcode: 40226, .. }) => {
            return Err(AppError::rejected(
                StatusCode::FORBIDDEN,
                "login_blocked",
                "WeChat has blocked this user from logging in (high-risk account)",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    // `wx.session_key` is dropped here: never stored, sent or logged. The UnionID (when the
    // mini-program and the account share an open platform) links the member's follower.
    let member = service::mp_login(&st, &wx.openid, wx.unionid.as_deref()).await?;
    let issued = MpSession::create(&st, &wx.openid, member.as_ref().map(|m| m.id)).await?;
    let member = member
        .as_ref()
        .map(|m| MpMemberOut::of(m, &st.cipher))
        .transpose()?;
    Ok(AppJson(LoginOut {
        token: issued.token,
        expires_at: rfc3339_shanghai(issued.session.expires_at),
        member,
    }))
}

// ---------------------------------------------------------------- me

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MeOut {
    pub openid_bound: bool,
    pub member: Option<MpMemberOut>,
}

/// `GET /api/mp/me` → `{"openid_bound","member":null|{...}}` (the roster is authoritative, not the
/// session: an administrator may have re-imported or unbound the member since login).
pub async fn me(State(st): State<AppState>, mut session: MpSession) -> AppResult<AppJson<MeOut>> {
    let member = member_of(&st, &session.openid).await?;
    let id = member.as_ref().map(|m| m.id);
    if id != session.member_id {
        session.set_member(&st, id).await?;
    }
    let member = member
        .as_ref()
        .map(|m| MpMemberOut::of(m, &st.cipher))
        .transpose()?;
    Ok(AppJson(MeOut {
        openid_bound: id.is_some(),
        member,
    }))
}

// ---------------------------------------------------------------- bind

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct BindIn {
    name: String,
    phone_code: String,
}

fn member_not_found() -> AppError {
    // One answer for a wrong phone and a wrong name: the roster can't be probed either way.
    AppError::rejected(
        StatusCode::NOT_FOUND,
        "member_not_found",
        "no roster entry matches this name and phone number; check the name or ask your branch secretary",
    )
}

fn already_bound(message: &str) -> AppError {
    AppError::rejected(StatusCode::CONFLICT, "already_bound", message)
}

/// `POST /api/mp/bind {"name","phone_code"}` → `{"member":{...}}`: the phone comes from WeChat
/// (`getuserphonenumber`), so only the owner of a roster phone can bind to its entry.
pub async fn bind(
    State(st): State<AppState>,
    mut session: MpSession,
    ip: ClientIp,
    AppJson(body): AppJson<BindIn>,
) -> AppResult<AppJson<MemberEnvelope>> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::Validation(
            "name is required (at most 100 characters)".into(),
        ));
    }
    let phone_code = one_time_code(&body.phone_code, "phone_code")?;
    ratelimit::hit_in(
        &st,
        &format!("mp_bind:{}", session.openid),
        BIND_ATTEMPTS_PER_HOUR,
        BIND_WINDOW,
    )
    .await?;

    let info = match st.mp.get_user_phone_number(phone_code).await {
        Ok(info) => info,
        Err(wechat::Error::Api {
            errcode: 40029 | 40163,
            ..
        }) => return Err(invalid_code("phone")),
        Err(e) => return Err(e.into()),
    };
    // The roster holds mainland numbers only; anything else can't match.
    let phone = pii::normalize_phone(&info.pure_phone_number).filter(|_| info.country_code == "86");
    let found = match phone {
        Some(p) => store::find_by_phone(&st.db, &st.cipher, &p).await?,
        None => None,
    };
    // Only the active roster binds: a member who left or moved away is not found.
    let Some(m) = found.filter(|m| m.name.trim() == name && m.is_active()) else {
        tracing::info!("mini-program bind: no roster match");
        return Err(member_not_found());
    };
    match m.openid.as_deref() {
        Some(o) if o == session.openid => {
            // Already ours (a retry): answer the same, write nothing.
            session.set_member(&st, Some(m.id)).await?;
            return Ok(AppJson(MemberEnvelope {
                member: MpMemberOut::of(&m, &st.cipher)?,
            }));
        }
        Some(_) => {
            return Err(already_bound(
                "this member is already bound to another WeChat account; ask your branch secretary to unbind it",
            ))
        }
        None => {}
    }
    if let Some(other) = member_of(&st, &session.openid).await? {
        tracing::info!(
            member_id = other.id,
            "mini-program bind: openid already bound to another member"
        );
        return Err(already_bound(
            "this WeChat account is already bound to another member",
        ));
    }

    let m = match service::bind(&st, &m, &session.openid, ip.0.map(|a| a.to_string())).await? {
        Ok(m) => m,
        Err(BindRefused::MemberTaken) => {
            return Err(already_bound(
                "this member has just been bound to another WeChat account",
            ))
        }
        Err(BindRefused::OpenidTaken) => {
            return Err(already_bound(
                "this WeChat account is already bound to another member",
            ))
        }
    };
    tracing::info!(member_id = m.id, "mini-program account bound to the roster");
    session.set_member(&st, Some(m.id)).await?;
    Ok(AppJson(MemberEnvelope {
        member: MpMemberOut::of(&m, &st.cipher)?,
    }))
}

// ---------------------------------------------------------------- subscriptions

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SubscriptionsIn {
    template_ids: Vec<String>,
    /// The object `wx.requestSubscribeMessage` resolves with (its `errMsg` is ignored).
    results: BTreeMap<String, Value>,
    /// Optional: an id the mini-program makes once per `wx.requestSubscribeMessage` call and sends
    /// again when it retries the report (8–64 of `A-Za-z0-9_-`). A report repeated with the same
    /// id adds no credit a second time.
    #[serde(default)]
    request_id: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SubscriptionsOut {
    /// Template id → the answer recorded.
    pub recorded: BTreeMap<String, String>,
}

/// `POST /api/mp/subscriptions {"template_ids":[..],"results":{"<id>":"accept"|"reject"|"ban"}}`:
/// records the user's answer so that subscribe pushes may (or may no longer) reach them. Each
/// `accept` is one send credit (one-time subscriptions); `filter` (WeChat did not ask) is skipped.
pub async fn subscriptions(
    State(st): State<AppState>,
    session: MpSession,
    AppJson(body): AppJson<SubscriptionsIn>,
) -> AppResult<AppJson<SubscriptionsOut>> {
    if body.template_ids.is_empty() || body.template_ids.len() > MAX_SUBSCRIPTION_TEMPLATES {
        return Err(AppError::Validation(format!(
            "template_ids must list 1 to {MAX_SUBSCRIPTION_TEMPLATES} template ids"
        )));
    }
    if let Some(bad) = body
        .template_ids
        .iter()
        .position(|t| t.trim().is_empty() || t.len() > 128)
    {
        return Err(AppError::Validation(format!(
            "template_ids[{bad}] is not a template id"
        )));
    }
    let mut answers: Vec<(&str, &str)> = Vec::new();
    for (id, status) in &body.results {
        if id == "errMsg" {
            continue;
        }
        if !body.template_ids.contains(id) {
            return Err(AppError::Validation(format!(
                "results has {id:?}, which is not in template_ids"
            )));
        }
        match status.as_str() {
            Some(s @ ("accept" | "reject" | "ban")) => answers.push((id, s)),
            Some("filter") => {}
            _ => {
                return Err(AppError::Validation(format!(
                    "results[{id:?}] must be \"accept\", \"reject\", \"ban\" or \"filter\""
                )))
            }
        }
    }
    let request_id = match body.request_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(r)
            if (8..=64).contains(&r.len())
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            // Scoped to the user: two users' ids never collide.
            Some(format!("{}:{r}", session.openid))
        }
        Some(_) => {
            return Err(AppError::Validation(
                "request_id must be 8 to 64 of A-Za-z0-9_-".into(),
            ))
        }
    };
    let now = st.clock.unix_ms();
    // The mini-program's consent (订阅消息), not the account's; one transaction for the request.
    push_store::record_consents(
        &st.db,
        App::Mp,
        &session.openid,
        request_id.as_deref(),
        &answers,
        now,
    )
    .await?;
    let recorded = answers
        .iter()
        .map(|(id, status)| (id.to_string(), status.to_string()))
        .collect();
    Ok(AppJson(SubscriptionsOut { recorded }))
}
