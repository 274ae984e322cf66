//! The activities' rules, pure (no I/O, no clock: every function is given `now`): kinds and the
//! meeting rhythm, input validation, the sign-up, cancellation and check-in windows, the rotating
//! check-in ticket, attendance marks, quarters.

use std::collections::HashMap;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::platform::time::{from_unix_ms, unix_ms, SHANGHAI};

/// A check-in ticket is valid for its 30-second window and the next one (so a code scanned just
/// before it rotates still works); a photo forwarded later has expired.
pub const TICKET_WINDOW_MS: i64 = 30_000;
/// Check-in opens this long before the start.
pub const CHECKIN_OPENS_BEFORE_MS: i64 = 30 * 60 * 1000;
/// Without `ends_at`, check-in closes this long after the start.
pub const DEFAULT_DURATION_MS: i64 = 3 * 3600 * 1000;
/// A check-in later than this after the start is recorded as `late`.
pub const LATE_AFTER_MS: i64 = 5 * 60 * 1000;
pub const MAX_CAPACITY: i64 = 100_000;
pub const MAX_AUDIENCE_UNITS: usize = 200;
/// Reminders: at most a week before the start.
pub const MAX_REMIND_MINUTES: i64 = 7 * 24 * 60;

// ---------------------------------------------------------------- kinds

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Activity,
    /// 支部党员大会
    BranchGeneralMeeting,
    /// 支部委员会会议
    BranchCommitteeMeeting,
    /// 党小组会
    PartyGroupMeeting,
    /// 党课
    PartyLecture,
    /// 主题党日
    ThemeDay,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Activity,
        Kind::BranchGeneralMeeting,
        Kind::BranchCommitteeMeeting,
        Kind::PartyGroupMeeting,
        Kind::PartyLecture,
        Kind::ThemeDay,
    ];

    /// The 三会一课, whose rhythm is counted per quarter.
    pub const RHYTHM: [Kind; 4] = [
        Kind::BranchGeneralMeeting,
        Kind::BranchCommitteeMeeting,
        Kind::PartyGroupMeeting,
        Kind::PartyLecture,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Activity => "activity",
            Kind::BranchGeneralMeeting => "branch_general_meeting",
            Kind::BranchCommitteeMeeting => "branch_committee_meeting",
            Kind::PartyGroupMeeting => "party_group_meeting",
            Kind::PartyLecture => "party_lecture",
            Kind::ThemeDay => "theme_day",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Meetings (三会一课 and 主题党日): the audience is expected to attend, each member has an
    /// attendance record, and audience members check in without signing up.
    pub fn is_meeting(self) -> bool {
        self != Kind::Activity
    }

    /// How many a branch must hold per quarter: general meeting and Party lecture quarterly,
    /// committee and Party-group meetings monthly. None: no rhythm (activities, theme days).
    pub fn required_per_quarter(self) -> Option<i64> {
        match self {
            Kind::BranchGeneralMeeting | Kind::PartyLecture => Some(1),
            Kind::BranchCommitteeMeeting | Kind::PartyGroupMeeting => Some(3),
            Kind::Activity | Kind::ThemeDay => None,
        }
    }
}

// ---------------------------------------------------------------- input

/// The fields of an activity after validation (times in unix ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub title: String,
    pub kind: Kind,
    pub description: String,
    pub location: String,
    pub capacity: i64,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub signup_opens_at: i64,
    pub signup_closes_at: i64,
    pub remind_minutes: i64,
    pub audience: Vec<i64>,
}

fn text(field: &str, v: &str, max: usize, required: bool) -> Result<String, String> {
    let v = v.trim();
    if required && v.is_empty() {
        return Err(format!("{field}: must not be empty"));
    }
    if v.chars().count() > max {
        return Err(format!("{field}: at most {max} characters"));
    }
    Ok(v.to_owned())
}

impl Fields {
    /// Check the whole record (creation, and after applying an update).
    pub fn validate(mut self) -> Result<Fields, String> {
        self.title = text("title", &self.title, 200, true)?;
        self.description = text("description", &self.description, 20_000, false)?;
        self.location = text("location", &self.location, 200, false)?;
        if !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(format!("capacity: a whole number from 1 to {MAX_CAPACITY}"));
        }
        if self.signup_opens_at >= self.signup_closes_at {
            return Err("signup_opens_at: must be before signup_closes_at".into());
        }
        if self.signup_closes_at > self.starts_at {
            return Err("signup_closes_at: must not be after starts_at".into());
        }
        if let Some(end) = self.ends_at {
            if end <= self.starts_at {
                return Err("ends_at: must be after starts_at".into());
            }
        }
        if !(0..=MAX_REMIND_MINUTES).contains(&self.remind_minutes) {
            return Err(format!(
                "remind_minutes: from 0 (no reminder) to {MAX_REMIND_MINUTES}"
            ));
        }
        self.audience.sort_unstable();
        self.audience.dedup();
        if self.audience.len() > MAX_AUDIENCE_UNITS {
            return Err(format!(
                "audience_org_units: at most {MAX_AUDIENCE_UNITS} org units"
            ));
        }
        if self.kind.is_meeting() && self.audience.is_empty() {
            return Err(format!(
                "audience_org_units: a {} needs the org units expected to attend",
                self.kind.as_str()
            ));
        }
        Ok(self)
    }
}

/// An RFC 3339 field.
pub fn time_field(field: &str, v: &str) -> Result<i64, String> {
    crate::platform::time::parse_rfc3339(v)
        .ok_or_else(|| format!("{field}: an RFC 3339 time such as 2026-11-05T09:30:00+08:00"))
}

// ---------------------------------------------------------------- windows

/// Why a member's request is refused. The service maps each to a status and a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Cancelled,
    SignupNotOpen,
    SignupClosed,
    AlreadyStarted,
    CheckinNotOpen,
    CheckinClosed,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Cancelled => "activity_cancelled",
            Refusal::SignupNotOpen => "signup_not_open",
            Refusal::SignupClosed => "signup_closed",
            Refusal::AlreadyStarted => "activity_started",
            Refusal::CheckinNotOpen => "checkin_not_open",
            Refusal::CheckinClosed => "checkin_closed",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Cancelled => "the activity has been cancelled",
            Refusal::SignupNotOpen => "sign-up has not opened yet",
            Refusal::SignupClosed => "sign-up has closed",
            Refusal::AlreadyStarted => "the activity has already started",
            Refusal::CheckinNotOpen => "check-in opens 30 minutes before the start",
            Refusal::CheckinClosed => "check-in has closed",
        }
    }
}

/// The times a decision needs.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub cancelled: bool,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub signup_opens_at: i64,
    pub signup_closes_at: i64,
}

/// Sign-up is open from `signup_opens_at` (inclusive) to `signup_closes_at` (exclusive).
pub fn may_sign_up(t: &Times, now: i64) -> Result<(), Refusal> {
    if t.cancelled {
        Err(Refusal::Cancelled)
    } else if now < t.signup_opens_at {
        Err(Refusal::SignupNotOpen)
    } else if now >= t.signup_closes_at {
        Err(Refusal::SignupClosed)
    } else {
        Ok(())
    }
}

/// A sign-up may be withdrawn until the start (after sign-up closes too: the place goes to the
/// waitlist).
pub fn may_withdraw(t: &Times, now: i64) -> Result<(), Refusal> {
    if t.cancelled {
        Err(Refusal::Cancelled)
    } else if now >= t.starts_at {
        Err(Refusal::AlreadyStarted)
    } else {
        Ok(())
    }
}

/// `[from, until)` of check-in: 30 minutes before the start until the end (or start + 3 h).
pub fn checkin_window(t: &Times) -> (i64, i64) {
    (
        t.starts_at - CHECKIN_OPENS_BEFORE_MS,
        t.ends_at.unwrap_or(t.starts_at + DEFAULT_DURATION_MS),
    )
}

/// Check-in is possible now; `Ok(status)` is what the attendance record becomes.
pub fn may_check_in(t: &Times, now: i64) -> Result<Attendance, Refusal> {
    let (from, until) = checkin_window(t);
    if t.cancelled {
        Err(Refusal::Cancelled)
    } else if now < from {
        Err(Refusal::CheckinNotOpen)
    } else if now >= until {
        Err(Refusal::CheckinClosed)
    } else if now > t.starts_at + LATE_AFTER_MS {
        Ok(Attendance::Late)
    } else {
        Ok(Attendance::Present)
    }
}

// ---------------------------------------------------------------- ticket

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in a ticket (128 bits: unforgeable, short enough for a small QR code).
const MAC_LEN: usize = 16;

/// A ticket as shown on the venue's screen: `<activity>.<window>.<base64url MAC>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub text: String,
    pub window: i64,
    /// When the screen should show the next code (the end of this window).
    pub refresh_at: i64,
    /// When this ticket stops being accepted (the end of the next window).
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketError {
    /// Not a ticket at all, or a MAC that is not ours.
    Invalid,
    /// A genuine ticket of another activity.
    OtherActivity,
    /// A genuine ticket from an earlier window (a forwarded photo), or from the future.
    Expired,
}

impl TicketError {
    pub fn code(self) -> &'static str {
        match self {
            TicketError::Invalid => "ticket_invalid",
            TicketError::OtherActivity => "ticket_other_activity",
            TicketError::Expired => "ticket_expired",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            TicketError::Invalid => "this is not a valid check-in code",
            TicketError::OtherActivity => "this check-in code belongs to another activity",
            TicketError::Expired => "this check-in code has expired; scan the code on the screen",
        }
    }
}

pub fn window_of(now_ms: i64) -> i64 {
    now_ms.div_euclid(TICKET_WINDOW_MS)
}

fn mac(key: &[u8; 32], activity: i64, window: i64) -> [u8; MAC_LEN] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(format!("dangjian checkin v1|{activity}|{window}").as_bytes());
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// The ticket of `activity` for the window containing `now_ms`.
pub fn issue_ticket(key: &[u8; 32], activity: i64, now_ms: i64) -> Ticket {
    let window = window_of(now_ms);
    Ticket {
        text: format!(
            "{activity}.{window}.{}",
            B64.encode(mac(key, activity, window))
        ),
        window,
        refresh_at: (window + 1) * TICKET_WINDOW_MS,
        expires_at: (window + 2) * TICKET_WINDOW_MS,
    }
}

/// Accept a ticket of `activity` from the current or the previous window only.
pub fn verify_ticket(
    key: &[u8; 32],
    ticket: &str,
    activity: i64,
    now_ms: i64,
) -> Result<(), TicketError> {
    let mut parts = ticket.trim().splitn(3, '.');
    let (Some(a), Some(w), Some(m)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(TicketError::Invalid);
    };
    let number = |s: &str| {
        (!s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
    };
    let (Some(a), Some(w)) = (number(a), number(w)) else {
        return Err(TicketError::Invalid);
    };
    let Ok(given) = B64.decode(m) else {
        return Err(TicketError::Invalid);
    };
    if given.len() != MAC_LEN || !bool::from(given.ct_eq(&mac(key, a, w))) {
        return Err(TicketError::Invalid);
    }
    if a != activity {
        return Err(TicketError::OtherActivity);
    }
    let current = window_of(now_ms);
    if w == current || w == current - 1 {
        Ok(())
    } else {
        Err(TicketError::Expired)
    }
}

// ---------------------------------------------------------------- attendance

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Attendance {
    Present,
    Late,
    Absent,
    Leave,
}

impl Attendance {
    pub fn as_str(self) -> &'static str {
        match self {
            Attendance::Present => "present",
            Attendance::Late => "late",
            Attendance::Absent => "absent",
            Attendance::Leave => "leave",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LeaveKind {
    Sick,
    Official,
    Personal,
}

impl LeaveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveKind::Sick => "sick",
            LeaveKind::Official => "official",
            LeaveKind::Personal => "personal",
        }
    }
}

/// A secretary's mark: leave needs its kind; only leave has one; reason up to 500 characters.
pub fn validate_mark(
    status: Attendance,
    leave_kind: Option<LeaveKind>,
    reason: Option<&str>,
) -> Result<Option<String>, String> {
    match (status, leave_kind) {
        (Attendance::Leave, None) => {
            return Err("leave_kind: sick, official or personal for status \"leave\"".into())
        }
        (s, Some(_)) if s != Attendance::Leave => {
            return Err("leave_kind: only with status \"leave\"".into())
        }
        _ => {}
    }
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > 500) {
        return Err("reason: at most 500 characters".into());
    }
    Ok(reason.map(str::to_owned))
}

// ---------------------------------------------------------------- audience

/// Whether a member of `unit` is in an audience of org units (their subtrees count; an empty
/// audience is everyone). `parents` maps every org unit to its parent.
pub fn in_audience(audience: &[i64], unit: i64, parents: &HashMap<i64, Option<i64>>) -> bool {
    if audience.is_empty() {
        return true;
    }
    let mut at = Some(unit);
    // The depth bound stops on a corrupted (cyclic) tree.
    for _ in 0..=parents.len() {
        let Some(u) = at else { return false };
        if audience.contains(&u) {
            return true;
        }
        at = parents.get(&u).copied().flatten();
    }
    false
}

// ---------------------------------------------------------------- quarters

/// `2026Q4` → `[start, end)` in unix ms, quarters of the Asia/Shanghai calendar.
pub fn parse_quarter(s: &str) -> Option<(i64, i64)> {
    let (year, q) = s
        .trim()
        .to_ascii_uppercase()
        .split_once('Q')
        .map(|(y, q)| (y.parse::<i32>().ok(), q.parse::<u8>().ok()))?;
    let (year, q) = (year?, q?);
    if !(1..=4).contains(&q) || !(2000..=2200).contains(&year) {
        return None;
    }
    let start = quarter_start(year, q)?;
    let end = if q == 4 {
        quarter_start(year + 1, 1)?
    } else {
        quarter_start(year, q + 1)?
    };
    Some((start, end))
}

fn quarter_start(year: i32, q: u8) -> Option<i64> {
    let month = time::Month::try_from(3 * (q - 1) + 1).ok()?;
    let date = time::Date::from_calendar_date(year, month, 1).ok()?;
    Some(unix_ms(date.midnight().assume_offset(SHANGHAI)))
}

/// The quarter (`2026Q4`) containing `ms`, Asia/Shanghai.
pub fn quarter_of(ms: i64) -> String {
    let t = from_unix_ms(ms).to_offset(SHANGHAI);
    format!("{}Q{}", t.year(), (u8::from(t.month()) - 1) / 3 + 1)
}

// ---------------------------------------------------------------- minutes

/// A meeting's minutes after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minutes {
    pub host: String,
    pub recorder: String,
    pub minutes: String,
}

/// Host and recorder: names of 1 to 50 characters; the minutes 1 to 50 000 characters; at most
/// 20 photo URLs (http or https).
pub fn validate_minutes(
    host: &str,
    recorder: &str,
    minutes: &str,
    photo_urls: &[String],
) -> Result<Minutes, String> {
    let short = |field: &str, v: &str| -> Result<String, String> {
        let v = v.trim();
        if v.is_empty() || v.chars().count() > 50 {
            return Err(format!("{field}: a name of 1 to 50 characters"));
        }
        Ok(v.to_owned())
    };
    let host = short("host", host)?;
    let recorder = short("recorder", recorder)?;
    let text = minutes.trim();
    if text.is_empty() || text.chars().count() > 50_000 {
        return Err("minutes: 1 to 50000 characters".into());
    }
    if photo_urls.len() > 20
        || photo_urls
            .iter()
            .any(|p| !(p.starts_with("https://") || p.starts_with("http://")) || p.len() > 1000)
    {
        return Err("photos: at most 20 http(s) URLs".into());
    }
    Ok(Minutes {
        host,
        recorder,
        minutes: text.to_owned(),
    })
}

// ---------------------------------------------------------------- minutes photos

/// A photo of the minutes is at most this large.
pub const MAX_PHOTO_BYTES: usize = 5 * 1024 * 1024;
/// A meeting keeps at most this many photos.
pub const MAX_PHOTOS: i64 = 20;

/// Why an uploaded file is not taken as a photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoRefusal {
    Empty,
    TooLarge,
    NotAnImage,
}

/// The image type of an upload, read from its magic bytes (what the client calls it does not
/// count): JPEG, PNG or WebP.
pub fn photo_type(bytes: &[u8]) -> Result<&'static str, PhotoRefusal> {
    if bytes.is_empty() {
        return Err(PhotoRefusal::Empty);
    }
    if bytes.len() > MAX_PHOTO_BYTES {
        return Err(PhotoRefusal::TooLarge);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok("image/png")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Ok("image/webp")
    } else {
        Err(PhotoRefusal::NotAnImage)
    }
}

// ---------------------------------------------------------------- notices

/// What an `activity_notices` row tells a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    Cancelled,
    Promoted,
    Reminder,
}

impl NoticeKind {
    pub fn parse(s: &str) -> Option<NoticeKind> {
        match s {
            "cancelled" => Some(NoticeKind::Cancelled),
            "promoted" => Some(NoticeKind::Promoted),
            "reminder" => Some(NoticeKind::Reminder),
            _ => None,
        }
    }

    /// `pushes.notice.kind`.
    pub fn push_kind(self) -> &'static str {
        match self {
            NoticeKind::Cancelled => "activity_cancelled",
            NoticeKind::Promoted => "activity_promoted",
            NoticeKind::Reminder => "activity_reminder",
        }
    }
}

/// What a notice says about its activity.
pub struct NoticeFacts<'a> {
    pub activity_id: i64,
    pub title: &'a str,
    pub starts_at: i64,
    pub location: &'a str,
    pub cancel_reason: Option<&'a str>,
}

/// The mini-program page of an activity.
pub fn activity_page(id: i64) -> String {
    format!("pages/activity/index?id={id}")
}

/// The notice of `kind` (Chinese): a heading, a sentence for customer-service text, the
/// mini-program page, and template data — `thing1` the title, `time2` the start, `thing3` the
/// place, `thing4` what happened (free text is cut to WeChat's 20 characters when sent).
pub fn notice(kind: NoticeKind, f: &NoticeFacts<'_>) -> crate::push::Notice {
    let when = crate::push::templates::shanghai_datetime(f.starts_at);
    let place = match f.location.trim() {
        "" => "待定",
        p => p,
    };
    let title = f.title.trim();
    let (heading, text, what) = match kind {
        NoticeKind::Cancelled => {
            let reason = f
                .cancel_reason
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| format!("取消原因：{r}。"))
                .unwrap_or_default();
            (
                "活动取消",
                format!("您报名的活动「{title}」（{when}，{place}）已取消。{reason}"),
                match f.cancel_reason.map(str::trim).filter(|r| !r.is_empty()) {
                    Some(r) => format!("活动已取消：{r}"),
                    None => "活动已取消".to_owned(),
                },
            )
        }
        NoticeKind::Promoted => (
            "候补转正",
            format!("您已由候补转为活动「{title}」的正式报名。时间：{when}，地点：{place}。"),
            "您已由候补转为正式报名".to_owned(),
        ),
        NoticeKind::Reminder => (
            "活动提醒",
            match f.location.trim() {
                "" => format!("您报名的活动「{title}」将于{when}开始，请准时参加。"),
                p => format!("您报名的活动「{title}」将于{when}在{p}开始，请准时参加。"),
            },
            "活动即将开始，请准时参加".to_owned(),
        ),
    };
    crate::push::Notice {
        kind: kind.push_kind().to_owned(),
        title: heading.to_owned(),
        text,
        url: None,
        page: Some(activity_page(f.activity_id)),
        data: [
            ("thing1", title.to_owned()),
            ("time2", when),
            ("thing3", place.to_owned()),
            ("thing4", what),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::time::parse_rfc3339;

    fn ms(s: &str) -> i64 {
        parse_rfc3339(s).unwrap()
    }

    fn fields() -> Fields {
        Fields {
            title: " 主题党日 ".into(),
            kind: Kind::Activity,
            description: String::new(),
            location: "礼堂".into(),
            capacity: 100,
            starts_at: ms("2026-12-01T09:00:00+08:00"),
            ends_at: None,
            signup_opens_at: ms("2026-11-20T09:00:00+08:00"),
            signup_closes_at: ms("2026-11-30T18:00:00+08:00"),
            remind_minutes: 60,
            audience: vec![3, 1, 3],
        }
    }

    #[test]
    fn validation_trims_dedups_and_names_the_field() {
        let ok = fields().validate().unwrap();
        assert_eq!(ok.title, "主题党日");
        assert_eq!(ok.audience, vec![1, 3]);
        type Change = Box<dyn Fn(&mut Fields)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|f| f.title = "  ".into()), "title"),
            (Box::new(|f| f.title = "长".repeat(201)), "title"),
            (Box::new(|f| f.capacity = 0), "capacity"),
            (Box::new(|f| f.capacity = MAX_CAPACITY + 1), "capacity"),
            (
                Box::new(|f| f.signup_opens_at = f.signup_closes_at),
                "signup_opens_at",
            ),
            (
                Box::new(|f| f.signup_closes_at = f.starts_at + 1),
                "signup_closes_at",
            ),
            (Box::new(|f| f.ends_at = Some(f.starts_at)), "ends_at"),
            (Box::new(|f| f.remind_minutes = -1), "remind_minutes"),
            (
                Box::new(|f| {
                    f.kind = Kind::BranchGeneralMeeting;
                    f.audience.clear()
                }),
                "audience_org_units",
            ),
            (
                Box::new(|f| f.audience = (0..=MAX_AUDIENCE_UNITS as i64).collect()),
                "audience_org_units",
            ),
        ];
        for (change, field) in cases {
            let mut f = fields();
            change(&mut f);
            let e = f.validate().unwrap_err();
            assert!(e.starts_with(field), "{field}: {e}");
        }
        // Sign-up may close exactly at the start.
        let mut f = fields();
        f.signup_closes_at = f.starts_at;
        assert!(f.validate().is_ok());
    }

    #[test]
    fn kinds_and_rhythm() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("meeting"), None);
        assert!(!Kind::Activity.is_meeting());
        assert!(Kind::ThemeDay.is_meeting() && Kind::PartyLecture.is_meeting());
        let required: Vec<_> = Kind::RHYTHM
            .iter()
            .map(|k| k.required_per_quarter())
            .collect();
        assert_eq!(required, vec![Some(1), Some(3), Some(3), Some(1)]);
        assert_eq!(Kind::ThemeDay.required_per_quarter(), None);
    }

    fn times() -> Times {
        Times {
            cancelled: false,
            starts_at: 10_000_000,
            ends_at: None,
            signup_opens_at: 1_000,
            signup_closes_at: 5_000_000,
        }
    }

    #[test]
    fn signup_window_is_half_open_and_cancelled_wins() {
        let t = times();
        for (now, want) in [
            (999, Err(Refusal::SignupNotOpen)),
            (1_000, Ok(())),
            (4_999_999, Ok(())),
            (5_000_000, Err(Refusal::SignupClosed)),
            (20_000_000, Err(Refusal::SignupClosed)),
        ] {
            assert_eq!(may_sign_up(&t, now), want, "{now}");
        }
        let c = Times {
            cancelled: true,
            ..t
        };
        assert_eq!(may_sign_up(&c, 2_000), Err(Refusal::Cancelled));
        assert_eq!(may_withdraw(&t, 9_999_999), Ok(()));
        assert_eq!(may_withdraw(&t, 10_000_000), Err(Refusal::AlreadyStarted));
        assert_eq!(may_withdraw(&c, 2_000), Err(Refusal::Cancelled));
    }

    #[test]
    fn checkin_from_30_minutes_before_until_the_end_late_after_5_minutes() {
        let t = times();
        let start = t.starts_at;
        for (now, want) in [
            (
                start - CHECKIN_OPENS_BEFORE_MS - 1,
                Err(Refusal::CheckinNotOpen),
            ),
            (start - CHECKIN_OPENS_BEFORE_MS, Ok(Attendance::Present)),
            (start + LATE_AFTER_MS, Ok(Attendance::Present)),
            (start + LATE_AFTER_MS + 1, Ok(Attendance::Late)),
            (start + DEFAULT_DURATION_MS - 1, Ok(Attendance::Late)),
            (start + DEFAULT_DURATION_MS, Err(Refusal::CheckinClosed)),
        ] {
            assert_eq!(may_check_in(&t, now), want, "{now}");
        }
        let with_end = Times {
            ends_at: Some(start + 3_600_000),
            ..t
        };
        assert_eq!(
            may_check_in(&with_end, start + 3_600_000),
            Err(Refusal::CheckinClosed)
        );
        let c = Times {
            cancelled: true,
            ..t
        };
        assert_eq!(may_check_in(&c, start), Err(Refusal::Cancelled));
    }

    #[test]
    fn tickets_rotate_and_only_the_current_and_previous_window_pass() {
        let key = [7u8; 32];
        let t0 = 1_764_000_000_000; // a window boundary: 1_764_000_000_000 / 30_000 is whole
        assert_eq!(t0 % TICKET_WINDOW_MS, 0);
        let ticket = issue_ticket(&key, 42, t0 + 1);
        assert_eq!(ticket.window, t0 / TICKET_WINDOW_MS);
        assert_eq!(ticket.refresh_at, t0 + TICKET_WINDOW_MS);
        assert_eq!(ticket.expires_at, t0 + 2 * TICKET_WINDOW_MS);
        assert!(ticket.text.starts_with(&format!("42.{}.", ticket.window)));
        assert_eq!(
            ticket.text.len(),
            format!("42.{}.", ticket.window).len() + 22
        );
        // Same window → same ticket; the next window → another.
        assert_eq!(issue_ticket(&key, 42, t0 + 29_999), ticket);
        assert_ne!(issue_ticket(&key, 42, t0 + 30_000).text, ticket.text);
        for (now, want) in [
            (t0, Ok(())),
            (t0 + 29_999, Ok(())),
            (t0 + 30_000, Ok(())),
            (t0 + 59_999, Ok(())),
            (t0 + 60_000, Err(TicketError::Expired)),
            (t0 + 3_600_000, Err(TicketError::Expired)),
            (t0 - 1, Err(TicketError::Expired)),
        ] {
            assert_eq!(verify_ticket(&key, &ticket.text, 42, now), want, "{now}");
        }
        assert_eq!(
            verify_ticket(&key, &ticket.text, 43, t0),
            Err(TicketError::OtherActivity)
        );
        assert_eq!(
            verify_ticket(&[8u8; 32], &ticket.text, 42, t0),
            Err(TicketError::Invalid)
        );
        // Forgeries: changed window or activity with the old MAC, bad encodings.
        let mac = ticket.text.rsplit('.').next().unwrap();
        let w = ticket.window;
        for forged in [
            format!("42.{}.{mac}", w + 1),
            format!("43.{w}.{mac}"),
            format!("42.{w}.{}", &mac[..21]),
            format!("42.{w}.{mac}A"),
            format!("42.{w}.!!!!"),
            format!("42.{w}"),
            format!("+42.{w}.{mac}"),
            format!("42.-{w}.{mac}"),
            String::new(),
            "not a ticket".into(),
        ] {
            assert_eq!(
                verify_ticket(&key, &forged, 42, t0),
                Err(TicketError::Invalid),
                "{forged}"
            );
        }
    }

    #[test]
    fn marks_need_a_leave_kind_only_for_leave() {
        use Attendance::*;
        assert_eq!(validate_mark(Present, None, None), Ok(None));
        assert_eq!(
            validate_mark(Leave, Some(LeaveKind::Sick), Some("  发烧 ")),
            Ok(Some("发烧".into()))
        );
        assert_eq!(validate_mark(Absent, None, Some(" ")), Ok(None));
        assert!(validate_mark(Leave, None, None)
            .unwrap_err()
            .starts_with("leave_kind"));
        assert!(validate_mark(Late, Some(LeaveKind::Official), None)
            .unwrap_err()
            .starts_with("leave_kind"));
        assert!(validate_mark(Absent, None, Some(&"x".repeat(501)))
            .unwrap_err()
            .starts_with("reason"));
    }

    #[test]
    fn audiences_include_subtrees() {
        // 1 ─ 2 ─ 4, 1 ─ 3
        let parents: HashMap<i64, Option<i64>> =
            [(1, None), (2, Some(1)), (3, Some(1)), (4, Some(2))].into();
        assert!(in_audience(&[], 4, &parents));
        assert!(in_audience(&[1], 4, &parents));
        assert!(in_audience(&[2], 4, &parents));
        assert!(!in_audience(&[3], 4, &parents));
        assert!(!in_audience(&[4], 2, &parents));
        assert!(in_audience(&[3, 4], 4, &parents));
        let cyclic: HashMap<i64, Option<i64>> = [(1, Some(2)), (2, Some(1))].into();
        assert!(!in_audience(&[9], 1, &cyclic));
    }

    #[test]
    fn quarters_follow_the_shanghai_calendar() {
        let (s, e) = parse_quarter("2026Q4").unwrap();
        assert_eq!(s, ms("2026-10-01T00:00:00+08:00"));
        assert_eq!(e, ms("2027-01-01T00:00:00+08:00"));
        assert_eq!(
            parse_quarter("2026q1").unwrap(),
            (
                ms("2026-01-01T00:00:00+08:00"),
                ms("2026-04-01T00:00:00+08:00")
            )
        );
        for bad in ["2026Q0", "2026Q5", "2026", "Q4", "abcdQ1", "2026Q4x", ""] {
            assert_eq!(parse_quarter(bad), None, "{bad}");
        }
        assert_eq!(quarter_of(ms("2026-09-30T23:59:59+08:00")), "2026Q3");
        assert_eq!(quarter_of(ms("2026-09-30T16:00:00Z")), "2026Q4");
    }

    #[test]
    fn photos_are_known_by_their_magic_bytes() {
        let big = vec![0xFF; MAX_PHOTO_BYTES + 1];
        let cases: [(&[u8], Result<&str, PhotoRefusal>); 7] = [
            (b"\xFF\xD8\xFF\xE0rest", Ok("image/jpeg")),
            (b"\x89PNG\r\n\x1a\n\0\0", Ok("image/png")),
            (b"RIFF\x10\0\0\0WEBPVP8 ", Ok("image/webp")),
            (b"RIFF\x10\0\0\0WAVEfmt ", Err(PhotoRefusal::NotAnImage)),
            (b"hello, I am a .jpg", Err(PhotoRefusal::NotAnImage)),
            (b"", Err(PhotoRefusal::Empty)),
            (&big, Err(PhotoRefusal::TooLarge)),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                photo_type(bytes),
                want,
                "{:?}",
                &bytes[..bytes.len().min(12)]
            );
        }
    }

    #[test]
    fn notices_say_what_happened_in_chinese() {
        let facts = |reason| NoticeFacts {
            activity_id: 7,
            title: "主题党日",
            starts_at: 1_727_766_060_000,
            location: "",
            cancel_reason: reason,
        };
        struct Case {
            kind: NoticeKind,
            reason: Option<&'static str>,
            heading: &'static str,
            text: &'static str,
            what: &'static str,
        }
        for c in [
            Case {
                kind: NoticeKind::Cancelled,
                reason: Some("天气原因"),
                heading: "活动取消",
                text: "您报名的活动「主题党日」（2024年10月1日 15:01，待定）已取消。取消原因：天气原因。",
                what: "活动已取消：天气原因",
            },
            Case {
                kind: NoticeKind::Cancelled,
                reason: Some("  "),
                heading: "活动取消",
                text: "您报名的活动「主题党日」（2024年10月1日 15:01，待定）已取消。",
                what: "活动已取消",
            },
            Case {
                kind: NoticeKind::Promoted,
                reason: None,
                heading: "候补转正",
                text: "您已由候补转为活动「主题党日」的正式报名。时间：2024年10月1日 15:01，地点：待定。",
                what: "您已由候补转为正式报名",
            },
            Case {
                kind: NoticeKind::Reminder,
                reason: None,
                heading: "活动提醒",
                text: "您报名的活动「主题党日」将于2024年10月1日 15:01开始，请准时参加。",
                what: "活动即将开始，请准时参加",
            },
        ] {
            let n = notice(c.kind, &facts(c.reason));
            assert_eq!(n.title, c.heading);
            assert_eq!(n.text, c.text);
            assert_eq!(n.data["thing4"], c.what);
            assert_eq!(n.data["time2"], "2024年10月1日 15:01");
            assert_eq!(n.data["thing3"], "待定");
            assert_eq!(n.page.as_deref(), Some("pages/activity/index?id=7"));
            assert_eq!(n.kind, c.kind.push_kind());
            assert_eq!(NoticeKind::parse(&c.kind.push_kind()[9..]), Some(c.kind));
        }
    }
}
