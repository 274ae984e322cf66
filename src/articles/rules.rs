//! Articles and focus banners (横幅焦点): the editorial status machine and field rules, no I/O.
//!
//! An article moves `draft → review → published → archived`; an editor may also publish a draft
//! directly, send a reviewed article back to draft, and restore an archived one as a draft.
//! Everything else is refused, so a published article can't silently become a draft again.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Draft,
    Review,
    Published,
    Archived,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Draft,
        Status::Review,
        Status::Published,
        Status::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Review => "review",
            Status::Published => "published",
            Status::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an editor does to an article.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// draft → review
    Submit,
    /// review → draft (sent back by the reviewer)
    Reject,
    /// draft | review → published
    Publish,
    /// draft | review: publish later (the status stays until the time comes)
    Schedule,
    /// published → archived
    Archive,
    /// archived → draft
    Restore,
    /// change fields; the status stays
    Edit,
    /// remove for good: drafts only
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Reject => "reject",
            Action::Publish => "publish",
            Action::Schedule => "schedule",
            Action::Archive => "archive",
            Action::Restore => "restore",
            Action::Edit => "edit",
            Action::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} an article that is {from}", action.as_str())]
pub struct TransitionRefused {
    pub from: Status,
    pub action: Action,
}

/// The status after `action`, or why it is refused. `Edit` and `Delete` keep the status.
pub fn next(from: Status, action: Action) -> Result<Status, TransitionRefused> {
    use Action as A;
    use Status as S;
    let to = match (action, from) {
        (A::Submit, S::Draft) => S::Review,
        (A::Reject, S::Review) => S::Draft,
        (A::Publish, S::Draft | S::Review) => S::Published,
        (A::Schedule, S::Draft | S::Review) => from,
        (A::Archive, S::Published) => S::Archived,
        (A::Restore, S::Archived) => S::Draft,
        // Archived articles are a record of what was published: restore before editing.
        (A::Edit, S::Draft | S::Review | S::Published) => from,
        (A::Delete, S::Draft) => from,
        _ => return Err(TransitionRefused { from, action }),
    };
    Ok(to)
}

// ---- field rules -------------------------------------------------------------------------------

/// WeChat's news-card limits: a longer title or digest is cut off in the chat.
pub const TITLE_MAX: usize = 64;
pub const SUMMARY_MAX: usize = 120;
pub const AUTHOR_MAX: usize = 32;
pub const SOURCE_MAX: usize = 200;
pub const BODY_MAX: usize = 200_000;
pub const URL_MAX: usize = 1024;
pub const TAG_MAX: usize = 20;
pub const TAGS_MAX: usize = 10;
pub const CATEGORY_NAME_MAX: usize = 32;

/// An article as an editor sends it (create and full-replacement edit).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArticleInput {
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")
    )]
    pub title: String,
    #[serde(default)]
    #[schemars(length(max = 120))]
    pub summary: String,
    #[schemars(length(min = 1, max = 200000), regex(pattern = r"\S"))]
    pub body_md: String,
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")
    )]
    pub category: String,
    #[serde(default)]
    pub cover_url: Option<String>,
    #[serde(default)]
    /// Blank is the same as absent.
    #[schemars(length(max = 32), regex(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"))]
    pub author: Option<String>,
    #[serde(default)]
    /// Blank is the same as absent.
    #[schemars(length(max = 200), regex(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"))]
    pub source: Option<String>,
    #[serde(default)]
    #[schemars(length(min = 0, max = 10))]
    pub tags: Vec<String>,
}

/// A checked, normalised article: trimmed, blanks turned into `None`, tags de-duplicated.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidArticle {
    pub title: String,
    pub summary: String,
    pub body_md: String,
    pub category: String,
    pub cover_url: Option<String>,
    pub author: Option<String>,
    pub source: Option<String>,
    pub tags: Vec<String>,
}

/// A field that breaks a rule; shown to the editor as `field: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

fn field_err(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field,
        reason: reason.into(),
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn required(field: &'static str, value: &str, max: usize) -> Result<String, FieldError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(field_err(field, "must not be empty"));
    }
    if chars(v) > max {
        return Err(field_err(field, format!("at most {max} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(field_err(field, "must not contain control characters"));
    }
    Ok(v.to_owned())
}

fn optional(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, FieldError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => required(field, v, max).map(Some),
    }
}

/// An absolute http(s) URL (covers, banner images); no spaces, quotes or angle brackets.
pub fn check_http_url(field: &'static str, value: &str) -> Result<String, FieldError> {
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => {}
        _ => return Err(field_err(field, "must be an http:// or https:// URL")),
    }
    if v.len() > URL_MAX {
        return Err(field_err(field, format!("at most {URL_MAX} bytes")));
    }
    if v.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
    {
        return Err(field_err(
            field,
            "must not contain spaces, quotes or angle brackets",
        ));
    }
    Ok(v.to_owned())
}

fn optional_url(field: &'static str, value: Option<&str>) -> Result<Option<String>, FieldError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => check_http_url(field, v).map(Some),
    }
}

/// Trimmed, de-duplicated in order, each 1..=TAG_MAX characters, at most TAGS_MAX.
pub fn normalise_tags(tags: &[String]) -> Result<Vec<String>, FieldError> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = required("tags", t, TAG_MAX)?;
        if t.contains(',') {
            return Err(field_err("tags", "a tag must not contain a comma"));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.len() > TAGS_MAX {
        return Err(field_err("tags", format!("at most {TAGS_MAX} tags")));
    }
    Ok(out)
}

impl ArticleInput {
    pub fn validate(&self) -> Result<ValidArticle, FieldError> {
        let title = required("title", &self.title, TITLE_MAX)?;
        let summary = self.summary.trim().to_owned();
        if chars(&summary) > SUMMARY_MAX {
            return Err(field_err(
                "summary",
                format!("at most {SUMMARY_MAX} characters"),
            ));
        }
        if self.body_md.trim().is_empty() {
            return Err(field_err("body_md", "must not be empty"));
        }
        if self.body_md.len() > BODY_MAX {
            return Err(field_err("body_md", format!("at most {BODY_MAX} bytes")));
        }
        Ok(ValidArticle {
            title,
            summary,
            body_md: self.body_md.clone(),
            category: required("category", &self.category, CATEGORY_NAME_MAX)?,
            cover_url: optional_url("cover_url", self.cover_url.as_deref())?,
            author: optional("author", self.author.as_deref(), AUTHOR_MAX)?,
            source: optional("source", self.source.as_deref(), SOURCE_MAX)?,
            tags: normalise_tags(&self.tags)?,
        })
    }
}

pub fn check_category_name(name: &str) -> Result<String, FieldError> {
    let n = required("name", name, CATEGORY_NAME_MAX)?;
    // Numeric names would be ambiguous with ids in `?category=`.
    if n.parse::<i64>().is_ok() {
        return Err(field_err("name", "must not be a number"));
    }
    Ok(n)
}

// ---- banners (横幅焦点) ----------------------------------------------------------------------

/// A focus banner as an editor sends it. `link_url` is an http(s) URL or a mini-program page
/// path (`/pages/...`); a banner links to an article or a URL, not both (or to nothing).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BannerInput {
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")
    )]
    pub title: String,
    #[schemars(
        length(max = 1024),
        regex(
            pattern = r#"^https?://[^/\s"\'<>`\x00-\x1f\x7f-\x9f][^\s"\'<>`\x00-\x1f\x7f-\x9f]*$"#
        )
    )]
    pub image_url: String,
    #[serde(default)]
    pub article_id: Option<i64>,
    #[serde(default)]
    pub link_url: Option<String>,
    #[serde(default)]
    pub position: Option<i64>,
    /// RFC 3339; `null` = no lower bound.
    #[serde(default)]
    pub valid_from: Option<String>,
    /// RFC 3339; `null` = no upper bound.
    #[serde(default)]
    pub valid_until: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidBanner {
    pub title: String,
    pub image_url: String,
    pub article_id: Option<i64>,
    pub link_url: Option<String>,
    pub position: i64,
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
}

impl BannerInput {
    pub fn validate(&self) -> Result<ValidBanner, FieldError> {
        let link_url = match self
            .link_url
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            None => None,
            Some(p) if p.starts_with('/') && !p.starts_with("//") => {
                if p.len() > URL_MAX
                    || p.chars().any(|c| {
                        c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>')
                    })
                {
                    return Err(field_err("link_url", "not a valid mini-program page path"));
                }
                Some(p.to_owned())
            }
            Some(u) => Some(check_http_url("link_url", u)?),
        };
        if self.article_id.is_some() && link_url.is_some() {
            return Err(field_err(
                "link_url",
                "give article_id or link_url, not both",
            ));
        }
        let valid_from = parse_time_field("valid_from", self.valid_from.as_deref())?;
        let valid_until = parse_time_field("valid_until", self.valid_until.as_deref())?;
        if let (Some(f), Some(u)) = (valid_from, valid_until) {
            if f >= u {
                return Err(field_err("valid_until", "must be after valid_from"));
            }
        }
        Ok(ValidBanner {
            title: required("title", &self.title, TITLE_MAX)?,
            image_url: check_http_url("image_url", &self.image_url)?,
            article_id: self.article_id,
            link_url,
            position: self.position.unwrap_or(0),
            valid_from,
            valid_until,
        })
    }
}

/// Shown now (`now_ms`), given an optional window `[from, until)`.
pub fn banner_is_valid(valid_from: Option<i64>, valid_until: Option<i64>, now_ms: i64) -> bool {
    valid_from.is_none_or(|f| f <= now_ms) && valid_until.is_none_or(|u| now_ms < u)
}

// ---- times at the edges ------------------------------------------------------------------------

pub use crate::platform::time::{parse_rfc3339 as parse_rfc3339_ms, rfc3339_shanghai};

pub fn parse_time_field(
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<i64>, FieldError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_rfc3339_ms(v).map(Some).ok_or_else(|| {
            field_err(
                field,
                "must be an RFC 3339 time, e.g. 2026-07-01T08:00:00+08:00",
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ArticleInput {
        ArticleInput {
            title: "  标题  ".into(),
            summary: "摘要".into(),
            body_md: "正文".into(),
            category: "党建动态".into(),
            cover_url: Some("https://img.example.com/a.jpg".into()),
            author: Some(" ".into()),
            source: None,
            tags: vec!["学习".into(), " 学习 ".into(), "党课".into()],
        }
    }

    #[test]
    fn allowed_transitions_follow_the_editorial_flow() {
        use Action as A;
        use Status as S;
        assert_eq!(next(S::Draft, A::Submit), Ok(S::Review));
        assert_eq!(next(S::Review, A::Reject), Ok(S::Draft));
        assert_eq!(next(S::Draft, A::Publish), Ok(S::Published));
        assert_eq!(next(S::Review, A::Publish), Ok(S::Published));
        assert_eq!(next(S::Published, A::Archive), Ok(S::Archived));
        assert_eq!(next(S::Archived, A::Restore), Ok(S::Draft));
        assert_eq!(next(S::Published, A::Edit), Ok(S::Published));
        assert_eq!(next(S::Draft, A::Delete), Ok(S::Draft));
        assert_eq!(next(S::Review, A::Schedule), Ok(S::Review));
    }

    #[test]
    fn every_other_transition_is_refused() {
        use Action as A;
        use Status as S;
        let allowed = [
            (A::Submit, S::Draft),
            (A::Reject, S::Review),
            (A::Publish, S::Draft),
            (A::Publish, S::Review),
            (A::Schedule, S::Draft),
            (A::Schedule, S::Review),
            (A::Archive, S::Published),
            (A::Restore, S::Archived),
            (A::Edit, S::Draft),
            (A::Edit, S::Review),
            (A::Edit, S::Published),
            (A::Delete, S::Draft),
        ];
        let actions = [
            A::Submit,
            A::Reject,
            A::Publish,
            A::Schedule,
            A::Archive,
            A::Restore,
            A::Edit,
            A::Delete,
        ];
        for a in actions {
            for s in Status::ALL {
                let result = next(s, a);
                assert_eq!(
                    result.is_ok(),
                    allowed.contains(&(a, s)),
                    "{a:?} from {s:?}"
                );
            }
        }
        let e = next(S::Published, A::Delete).unwrap_err();
        assert_eq!(e.to_string(), "cannot delete an article that is published");
    }

    #[test]
    fn status_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("Published"), None);
    }

    #[test]
    fn input_is_trimmed_and_tags_deduplicated() {
        let v = input().validate().unwrap();
        assert_eq!(v.title, "标题");
        assert_eq!(v.author, None);
        assert_eq!(v.tags, vec!["学习".to_string(), "党课".to_string()]);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut a = input();
        a.title = "   ".into();
        assert_eq!(a.validate().unwrap_err().field, "title");
        let mut a = input();
        a.title = "题".repeat(TITLE_MAX + 1);
        assert_eq!(a.validate().unwrap_err().field, "title");
        let mut a = input();
        a.title = "题".repeat(TITLE_MAX);
        assert!(
            a.validate().is_ok(),
            "the limit counts characters, not bytes"
        );
        let mut a = input();
        a.summary = "字".repeat(SUMMARY_MAX + 1);
        assert_eq!(a.validate().unwrap_err().field, "summary");
        let mut a = input();
        a.body_md = "\n".into();
        assert_eq!(a.validate().unwrap_err().field, "body_md");
        for bad in [
            "javascript:alert(1)",
            "ftp://x/y",
            "https://",
            "https://a b",
            "//evil.example/x",
            "https:///x",
        ] {
            let mut a = input();
            a.cover_url = Some(bad.into());
            assert_eq!(a.validate().unwrap_err().field, "cover_url", "{bad}");
        }
        let mut a = input();
        a.tags = (0..=TAGS_MAX).map(|i| format!("t{i}")).collect();
        assert_eq!(a.validate().unwrap_err().field, "tags");
        let mut a = input();
        a.tags = vec!["a,b".into()];
        assert_eq!(a.validate().unwrap_err().field, "tags");
    }

    #[test]
    fn category_names_are_not_numbers() {
        assert!(check_category_name("12").is_err());
        assert_eq!(check_category_name(" 新栏目 ").unwrap(), "新栏目");
    }

    fn banner() -> BannerInput {
        BannerInput {
            title: "七一专题".into(),
            image_url: "https://img.example.com/b.jpg".into(),
            article_id: None,
            link_url: None,
            position: None,
            valid_from: Some("2026-07-01T00:00:00+08:00".into()),
            valid_until: Some("2026-07-02T00:00:00+08:00".into()),
        }
    }

    #[test]
    fn banner_window_and_links_are_checked() {
        let b = banner().validate().unwrap();
        assert_eq!(b.valid_until.unwrap() - b.valid_from.unwrap(), 86_400_000);
        let mut x = banner();
        x.valid_until = x.valid_from.clone();
        assert_eq!(x.validate().unwrap_err().field, "valid_until");
        let mut x = banner();
        x.valid_from = Some("yesterday".into());
        assert_eq!(x.validate().unwrap_err().field, "valid_from");
        let mut x = banner();
        x.article_id = Some(1);
        x.link_url = Some("https://example.com".into());
        assert_eq!(x.validate().unwrap_err().field, "link_url");
        let mut x = banner();
        x.link_url = Some("/pages/activity/index?id=3".into());
        assert!(x.validate().is_ok());
        let mut x = banner();
        x.link_url = Some("javascript:alert(1)".into());
        assert_eq!(x.validate().unwrap_err().field, "link_url");
    }

    #[test]
    fn banner_validity_is_half_open() {
        assert!(banner_is_valid(None, None, 5));
        assert!(banner_is_valid(Some(5), Some(6), 5));
        assert!(!banner_is_valid(Some(5), Some(6), 6));
        assert!(!banner_is_valid(Some(5), None, 4));
    }

    #[test]
    fn times_are_shown_in_shanghai() {
        let ms = parse_rfc3339_ms("2026-07-01T00:00:00Z").unwrap();
        assert_eq!(rfc3339_shanghai(ms), "2026-07-01T08:00:00+08:00");
        assert_eq!(parse_rfc3339_ms(&rfc3339_shanghai(ms)), Some(ms));
        assert_eq!(rfc3339_shanghai(ms + 123), "2026-07-01T08:00:00.123+08:00");
    }
}
