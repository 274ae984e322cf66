//! Pushes: an editor's articles sent to an audience over one channel, now or at a time — or a
//! [`Notice`] (a title, a short text, links, template data) that another feature sends to a list of
//! members through [`service::create_notice`] (activity cancellations, promotions and reminders,
//! dues reminders).
//!
//! A push (`pushes` row) moves through
//!
//! ```text
//! scheduled ──start (audience materialised)──▶ running ──no pending/in-flight rows──▶ completed
//!     │                                         │  ▲ │
//!     │                                   pause │  │ resume          quota error ──▶ failed ──resume──▶ running
//!     │                                         ▼  │ │
//!     └──────────────cancel──────────────▶ cancelled ◀─ paused
//! ```
//!
//! Each recipient is one durable `push_deliveries` row (UNIQUE(push_id, openid)), created in one
//! transaction when the push starts:
//!
//! ```text
//! pending ──claim (lease)──▶ in_flight (claimed) ──mark sending──▶ in_flight (sending) ──ok──▶ sent
//!  ▲ ▲                          │                                   │ ├── -1 / 5xx ──▶ pending (backoff)
//!  │ └── lease expired (crash) ─┘                                   │ ├── 43004 / 48 h / consent ──▶ skipped
//!  └────────────────────────────────────────────────────────────────┘ ├── other errcode ──▶ failed
//!                                                                     └── timeout, crash ──▶ unknown
//! ```
//!
//! A row is `in_flight`, with the worker's id and a lease, *before* WeChat is called. It is first
//! only *claimed*; a sender marks `push_concurrency` rows at a time *sending* (`sending_at`, one
//! statement) just before their calls start and records their outcomes as soon as they answered.
//! A crash therefore leaves two kinds of rows once the lease expires: claimed rows, never sent,
//! go back to `pending` and are sent by the next worker; sending rows (at most one group per
//! sender) become `unknown` and are reported, never sent again automatically. The API counts both
//! kinds as `in_flight`. Mass sends (群发) are one API call per push, not rows: the push records the
//! call's state (`mass_state`) and WeChat's `msg_id`, and MASSSENDJOBFINISH fills in the counts.
//!
//! **Notices.** A notice push is an ordinary row-by-row push (template, custom, subscribe or
//! subscribe_oa) whose content is `pushes.notice` instead of articles, to the members listed. A
//! caller names the channels in order of preference; each member goes to the first channel that
//! reaches them *now* (an openid of that channel's app, following, consent left for the template,
//! inside the 48-hour window), found with the same SQL that materialises an audience, and the
//! members no channel reaches go to the last one, where they are `skipped` with that channel's
//! reason. Per-member choice is one push per channel used, all created and started (delivery rows
//! materialised) in the caller's transaction: the caller records which delivery row each of its
//! notices went into in the same commit, so a notice is handed over exactly once and every
//! guarantee of delivery rows (leases, `unknown` never resent, consent spent) applies to it.

pub mod admin;
pub mod audience_store;
pub mod console;
pub mod limits;
pub mod rate;
pub mod reports;
pub mod service;
pub mod store;
pub mod templates;
pub mod worker;

use serde::{Deserialize, Serialize};

/// Which WeChat app a push goes through: its API, its access token and its openids. A member has
/// one openid per app (`members.oa_openid` and `members.openid`), and consent is per app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum App {
    /// The official account (公众号).
    Oa,
    /// The mini-program (小程序).
    Mp,
}

impl App {
    pub fn as_str(self) -> &'static str {
        match self {
            App::Oa => "oa",
            App::Mp => "mp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// 模板消息 (service accounts), one call per recipient.
    Template,
    /// 群发 by tag or to all: one call per push, quota 1/day (subscription) or 4/month (service).
    Mass,
    /// 客服消息: only to followers who interacted in the last 48 hours.
    Custom,
    /// 小程序订阅消息 (`message/subscribe/send`, the mini-program's token and openids): only to
    /// users who accepted the template in the mini-program.
    Subscribe,
    /// 公众号订阅通知 (`message/subscribe/bizsend`, the account's token and openids): only to
    /// followers who accepted the template in the account's popup.
    #[serde(rename = "subscribe_oa")]
    SubscribeOa,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Template,
        Channel::Mass,
        Channel::Custom,
        Channel::Subscribe,
        Channel::SubscribeOa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Template => "template",
            Channel::Mass => "mass",
            Channel::Custom => "custom",
            Channel::Subscribe => "subscribe",
            Channel::SubscribeOa => "subscribe_oa",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// A comma-separated order of channels (a setting such as `subscribe,custom`); unknown names
    /// are left out (the settings were validated at start-up).
    pub fn parse_list(s: &str) -> Vec<Channel> {
        let mut out = Vec::new();
        for c in s.split(',').filter_map(|c| Channel::parse(c.trim())) {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// The app whose API, token and openids this channel uses.
    pub fn app(self) -> App {
        match self {
            Channel::Subscribe => App::Mp,
            _ => App::Oa,
        }
    }

    /// Whether a send names a template (template messages and both subscribe channels).
    pub fn needs_template(self) -> bool {
        matches!(
            self,
            Channel::Template | Channel::Subscribe | Channel::SubscribeOa
        )
    }

    /// Whether a send spends a one-time consent (订阅消息 / 订阅通知).
    pub fn needs_consent(self) -> bool {
        matches!(self, Channel::Subscribe | Channel::SubscribeOa)
    }

    /// `pushes.channel`: both subscribe channels are `subscribe`, told apart by `pushes.app`.
    pub fn db_channel(self) -> &'static str {
        match self {
            Channel::SubscribeOa => "subscribe",
            other => other.as_str(),
        }
    }

    /// The channel of a `pushes` row (`app` NULL on rows older than the column: the mini-program
    /// for subscribe).
    pub fn from_db(channel: &str, app: Option<&str>) -> Option<Channel> {
        match (channel, app) {
            ("subscribe", Some("oa")) => Some(Channel::SubscribeOa),
            (c, _) => Channel::parse(c).filter(|c| *c != Channel::SubscribeOa),
        }
    }
}

/// What a notice push says (stored as JSON in `pushes.notice`, rendered by
/// [`templates::render_notice`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Notice {
    /// What it is about (`activity_cancelled`, `activity_promoted`, `activity_reminder`,
    /// `dues_reminder`, ...), for the push list and the logs.
    pub kind: String,
    /// A short heading (`活动取消`); customer-service messages start with it.
    pub title: String,
    /// The message of a customer-service text (a sentence or two).
    pub text: String,
    /// A web page (template messages, the account's subscribe notices, customer-service text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A mini-program page with its query (`pages/activity/index?id=7`): subscribe messages, and
    /// the mini-program link of template messages and the account's subscribe notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Keyword → value of template and subscribe messages (`thing1`, `time2`, ...), checked
    /// against WeChat's value limits.
    #[serde(default)]
    pub data: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PushStatus {
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
    Failed,
}

impl PushStatus {
    pub const ALL: [PushStatus; 6] = [
        PushStatus::Scheduled,
        PushStatus::Running,
        PushStatus::Paused,
        PushStatus::Completed,
        PushStatus::Cancelled,
        PushStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PushStatus::Scheduled => "scheduled",
            PushStatus::Running => "running",
            PushStatus::Paused => "paused",
            PushStatus::Completed => "completed",
            PushStatus::Cancelled => "cancelled",
            PushStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<PushStatus> {
        PushStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// What an editor may do to a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Cancel,
    Pause,
    Resume,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::Pause => "pause",
            Action::Resume => "resume",
        }
    }

    /// The states an action applies to, and where it leads. Cancel is allowed before the start and
    /// while running or paused (what is still pending is skipped; sends in flight finish). A push
    /// stopped by a quota error may be resumed once the quota is back.
    pub fn transition(self, from: PushStatus) -> Option<PushStatus> {
        use PushStatus::*;
        match (self, from) {
            (Action::Cancel, Scheduled | Running | Paused) => Some(Cancelled),
            (Action::Pause, Running) => Some(Paused),
            (Action::Resume, Paused | Failed) => Some(Running),
            _ => None,
        }
    }

    /// The source states of [`transition`](Self::transition), for the guarded UPDATE.
    pub fn sources(self) -> Vec<PushStatus> {
        PushStatus::ALL
            .into_iter()
            .filter(|s| self.transition(*s).is_some())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    InFlight,
    Sent,
    Failed,
    Unknown,
    Skipped,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 6] = [
        DeliveryStatus::Pending,
        DeliveryStatus::InFlight,
        DeliveryStatus::Sent,
        DeliveryStatus::Failed,
        DeliveryStatus::Unknown,
        DeliveryStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::InFlight => "in_flight",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Unknown => "unknown",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AudienceKind {
    /// Every subscribed follower.
    All,
    /// Followers with one of the WeChat tags `ids`.
    Tag,
    /// Members of the org units `ids` and their sub-units.
    OrgUnit,
    /// The members `ids`.
    Members,
}

impl AudienceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AudienceKind::All => "all",
            AudienceKind::Tag => "tag",
            AudienceKind::OrgUnit => "org_unit",
            AudienceKind::Members => "members",
        }
    }

    pub fn parse(s: &str) -> Option<AudienceKind> {
        [
            AudienceKind::All,
            AudienceKind::Tag,
            AudienceKind::OrgUnit,
            AudienceKind::Members,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Audience {
    pub kind: AudienceKind,
    #[serde(default)]
    pub ids: Vec<i64>,
}

/// How one send ended, decided from WeChat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        msgid: Option<i64>,
    },
    /// Not sent and worth another try later (-1 busy, HTTP 5xx, token trouble).
    Retry {
        code: String,
        error: String,
    },
    /// Not sent and never will be (unsubscribed, consent withdrawn).
    Skipped {
        code: String,
        error: String,
    },
    /// Refused for good (bad OpenID, bad data).
    Failed {
        code: String,
        error: String,
    },
    /// A quota or frequency limit: this row was not sent; the push stops.
    Quota {
        code: String,
        error: String,
    },
    /// The request may have reached WeChat (timeout, reset, unreadable answer): never resent.
    Unknown {
        code: String,
        error: String,
    },
}

/// Errcodes that mean "this recipient will not get it" rather than "the send failed".
pub const UNSUBSCRIBED: i64 = 43004;
/// 用户拒绝接受消息: no subscribe consent left (refused, or the one-time grant is used up).
pub const SUBSCRIBE_REFUSED: i64 = 43101;

/// Classify the result of a send. The client has already retried -1/5xx/connect failures a few
/// times; what comes back here is the final word for this attempt.
pub fn classify(result: Result<Option<i64>, &wechat::Error>) -> Outcome {
    use wechat::client::errcode;
    let err = match result {
        Ok(msgid) => return Outcome::Sent { msgid },
        Err(e) => e,
    };
    match err {
        wechat::Error::Api {
            errcode: code,
            errmsg,
        } => {
            let (code, c) = (code.to_string(), *code);
            let error = errmsg.clone();
            if c == UNSUBSCRIBED || c == SUBSCRIBE_REFUSED {
                Outcome::Skipped { code, error }
            } else if errcode::is_quota(c) {
                Outcome::Quota { code, error }
            } else if c == errcode::SYSTEM_BUSY || errcode::is_token_error(c) {
                Outcome::Retry { code, error }
            } else {
                Outcome::Failed { code, error }
            }
        }
        // A gateway answered with a 5xx: the request was refused before WeChat handled it. The
        // client words these `<api>: HTTP <status>`; anything else from the transport (timeout,
        // reset after sending) may have been delivered.
        wechat::Error::Http(m) => match http_status(m) {
            Some(s) if s >= 500 => Outcome::Retry {
                code: "http_5xx".into(),
                error: m.clone(),
            },
            Some(s) => Outcome::Failed {
                code: format!("http_{s}"),
                error: m.clone(),
            },
            None => Outcome::Unknown {
                code: "transport".into(),
                error: m.clone(),
            },
        },
        wechat::Error::Decode(m) => Outcome::Unknown {
            code: "decode".into(),
            error: m.clone(),
        },
        other => Outcome::Failed {
            code: "local".into(),
            error: other.to_string(),
        },
    }
}

/// The status of a non-2xx answer without a WeChat error body (the client's `<api>: HTTP <status>`).
fn http_status(m: &str) -> Option<u16> {
    let (_, rest) = m.rsplit_once(": HTTP ")?;
    rest.get(..3)?.parse().ok()
}

impl Outcome {
    /// The metric labels of this outcome: its name and WeChat's error code.
    pub fn labels(&self) -> (&'static str, Option<&str>) {
        match self {
            Outcome::Sent { .. } => ("sent", None),
            Outcome::Retry { code, .. } => ("retry", Some(code)),
            Outcome::Skipped { code, .. } => ("skipped", Some(code)),
            Outcome::Failed { code, .. } => ("failed", Some(code)),
            Outcome::Quota { code, .. } => ("quota", Some(code)),
            Outcome::Unknown { code, .. } => ("unknown", Some(code)),
        }
    }
}

/// The editors' push pages (`/admin/pushes...`); startup wraps them in the console's layers.
pub fn console_router() -> axum::Router<crate::app::AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/admin/pushes", get(console::list))
        .route(
            "/admin/pushes/new",
            get(console::new_page).post(console::create),
        )
        .route("/admin/pushes/{id}", get(console::detail))
        .route("/admin/pushes/{id}/{action}", post(console::act))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_state_machine() {
        use PushStatus::*;
        assert_eq!(Action::Cancel.transition(Scheduled), Some(Cancelled));
        assert_eq!(Action::Cancel.transition(Completed), None);
        assert_eq!(Action::Pause.transition(Scheduled), None);
        assert_eq!(Action::Pause.transition(Running), Some(Paused));
        assert_eq!(Action::Resume.transition(Paused), Some(Running));
        assert_eq!(Action::Resume.transition(Cancelled), None);
        assert_eq!(Action::Pause.sources(), vec![Running]);
    }

    #[test]
    fn each_channel_goes_through_its_app_and_round_trips_the_database() {
        for c in Channel::ALL {
            assert_eq!(
                Channel::from_db(c.db_channel(), Some(c.app().as_str())),
                Some(c)
            );
        }
        assert_eq!(Channel::Subscribe.app(), App::Mp);
        assert_eq!(Channel::SubscribeOa.app(), App::Oa);
        assert_eq!(Channel::Template.app(), App::Oa);
        // Rows from before `pushes.app`: subscribe was the mini-program's.
        assert_eq!(
            Channel::from_db("subscribe", None),
            Some(Channel::Subscribe)
        );
        assert_eq!(Channel::from_db("subscribe_oa", None), None);
        assert_eq!(
            serde_json::to_value(Channel::SubscribeOa).unwrap(),
            "subscribe_oa"
        );
    }

    #[test]
    fn outcomes_never_resend_what_may_have_arrived() {
        let api = |c: i64| wechat::Error::Api {
            errcode: c,
            errmsg: "x".into(),
        };
        assert_eq!(classify(Ok(Some(7))), Outcome::Sent { msgid: Some(7) });
        assert!(matches!(classify(Err(&api(-1))), Outcome::Retry { .. }));
        assert!(matches!(
            classify(Err(&api(43004))),
            Outcome::Skipped { .. }
        ));
        assert!(matches!(classify(Err(&api(45009))), Outcome::Quota { .. }));
        assert!(matches!(classify(Err(&api(45047))), Outcome::Quota { .. }));
        assert!(matches!(classify(Err(&api(40003))), Outcome::Failed { .. }));
        let gw = wechat::Error::Http("cgi-bin/message/template/send: HTTP 502 Bad Gateway".into());
        assert!(matches!(classify(Err(&gw)), Outcome::Retry { .. }));
        let timeout = wechat::Error::Http("error sending request".into());
        assert!(matches!(classify(Err(&timeout)), Outcome::Unknown { .. }));
        let not_found =
            wechat::Error::Http("cgi-bin/message/template/send: HTTP 404 Not Found".into());
        assert!(matches!(classify(Err(&not_found)), Outcome::Failed { .. }));
    }
}
