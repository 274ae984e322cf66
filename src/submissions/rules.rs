//! Moderation decisions, with no I/O: the local sensitive-word list, and what a verdict means for
//! a submission or a board post. Nothing user-written is ever approved by a machine: the best a
//! machine check can do is send it to the editors' queue marked as checked.

use wechat::{
    client::Suggest,
    message::{InboundMessage, MessageBody},
};

pub use crate::platform::content::SensitiveWords;

/// What the checks said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The local list matched this word.
    LocalHit(String),
    /// WeChat's msgSecCheck v2 answered.
    Remote { suggest: Suggest, label: i64 },
    /// msgSecCheck could not be reached or refused the call: a human decides.
    Unchecked,
}

/// The state a moderated item starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initial {
    /// In the editors' queue.
    Pending,
    /// Refused automatically; the author gets a polite reply.
    Rejected,
}

impl Initial {
    pub fn as_str(self) -> &'static str {
        match self {
            Initial::Pending => "pending",
            Initial::Rejected => "rejected",
        }
    }
}

/// The outcome recorded with the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moderation {
    pub initial: Initial,
    /// `local`, `pass`, `review`, `risky` or `unchecked`.
    pub suggest: &'static str,
    /// WeChat's label number, or the matched local word.
    pub label: Option<String>,
}

pub fn decide(verdict: &Verdict) -> Moderation {
    match verdict {
        Verdict::LocalHit(word) => Moderation {
            initial: Initial::Rejected,
            suggest: "local",
            label: Some(word.clone()),
        },
        Verdict::Remote {
            suggest: Suggest::Risky,
            label,
        } => Moderation {
            initial: Initial::Rejected,
            suggest: "risky",
            label: Some(label.to_string()),
        },
        // Pass only means "machine-checked": an editor still approves.
        Verdict::Remote {
            suggest: Suggest::Pass,
            label,
        } => Moderation {
            initial: Initial::Pending,
            suggest: "pass",
            label: Some(label.to_string()),
        },
        // Review, and any suggestion WeChat may add later.
        Verdict::Remote { label, .. } => Moderation {
            initial: Initial::Pending,
            suggest: "review",
            label: Some(label.to_string()),
        },
        Verdict::Unchecked => Moderation {
            initial: Initial::Pending,
            suggest: "unchecked",
            label: None,
        },
    }
}

/// The moderation recorded with an existing item (the duplicate rule answers with it again).
pub fn stored_moderation(status: &str, suggest: Option<&str>, label: Option<String>) -> Moderation {
    let suggest = match suggest.unwrap_or("unchecked") {
        "local" => "local",
        "pass" => "pass",
        "review" => "review",
        "risky" => "risky",
        _ => "unchecked",
    };
    Moderation {
        initial: if status == "rejected" && matches!(suggest, "local" | "risky") {
            Initial::Rejected
        } else {
            Initial::Pending
        },
        suggest,
        label,
    }
}

/// Longest submission text (chat and mini-program alike), in characters.
pub const MAX_SUBMISSION_CHARS: usize = 5000;
/// Longest board post (chat and mini-program alike), in characters.
pub const MAX_BOARD_CHARS: usize = 1000;

/// `field` must hold 1 to `max` characters (after trimming): the same caps on every path.
pub fn check_length(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.trim().is_empty() || text.chars().count() > max {
        return Err(format!("{field}: 1 to {max} characters"));
    }
    Ok(())
}

/// An editor's decision on a pending item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EditorDecision {
    Approve,
    Reject,
}

impl EditorDecision {
    pub fn status(self) -> &'static str {
        match self {
            EditorDecision::Approve => "approved",
            EditorDecision::Reject => "rejected",
        }
    }
}

// ---- 投稿 and 留言 in chat ------------------------------------------------------------------

/// Submissions and the message board in chat, routed before the keyword rules so no rule can
/// swallow them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatCommand {
    /// `投稿` alone: open a draft.
    StartDraft,
    /// `投稿 <text>`: submit at once.
    SubmitNow(String),
    /// `留言 <text>`.
    BoardPost(String),
    /// `留言` alone: tell how to use it.
    BoardHelp,
}

/// While a draft is open: what a message does to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftStep {
    Finish,
    Cancel,
    AddText(String),
    AddImage { pic_url: String, media_id: String },
}

/// The text of a text message, or of a voice message with recognition on.
fn text_of(msg: &InboundMessage) -> Option<&str> {
    match &msg.body {
        MessageBody::Text { content, .. } => Some(content),
        MessageBody::Voice {
            recognition: Some(text),
            ..
        } => Some(text),
        _ => None,
    }
}

/// `投稿`/`留言` commands; the keyword and its text may be separated by a space, a colon or nothing.
pub fn chat_command(msg: &InboundMessage) -> Option<ChatCommand> {
    let text = text_of(msg)?.trim();
    let rest = |kw: &str| {
        text.strip_prefix(kw).map(|r| {
            r.trim_start_matches([':', '：', ' ', '\u{3000}'])
                .trim()
                .to_owned()
        })
    };
    if let Some(r) = rest("投稿") {
        return Some(if r.is_empty() {
            ChatCommand::StartDraft
        } else {
            ChatCommand::SubmitNow(r)
        });
    }
    if let Some(r) = rest("留言") {
        return Some(if r.is_empty() {
            ChatCommand::BoardHelp
        } else {
            ChatCommand::BoardPost(r)
        });
    }
    None
}

/// Whether `msg` could be a step of an open draft ([`draft_step`] is `Some`) without being a
/// command: what the webhook asks before reading the sender's draft marker along with its claim.
/// It answers without building the step (no copy of the text); a test holds it to `draft_step`.
pub fn may_continue_draft(msg: &InboundMessage) -> bool {
    matches!(msg.body, MessageBody::Image { .. })
        || (chat_command(msg).is_none() && text_of(msg).is_some_and(|t| !t.trim().is_empty()))
}

/// What a message means to an open draft; None = not draft material (events, video, ...).
pub fn draft_step(msg: &InboundMessage) -> Option<DraftStep> {
    if let MessageBody::Image {
        pic_url, media_id, ..
    } = &msg.body
    {
        return Some(DraftStep::AddImage {
            pic_url: pic_url.clone(),
            media_id: media_id.clone(),
        });
    }
    let text = text_of(msg)?.trim();
    Some(match text {
        "完成" => DraftStep::Finish,
        "取消" => DraftStep::Cancel,
        "" => return None,
        t => DraftStep::AddText(t.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    fn text(s: &str) -> InboundMessage {
        InboundMessage::from_xml(&format!(
            "<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>text</MsgType><Content><![CDATA[{s}]]></Content><MsgId>1</MsgId></xml>"
        ))
        .unwrap()
    }

    #[test]
    fn submission_and_board_commands() {
        assert_eq!(chat_command(&text(" 投稿 ")), Some(ChatCommand::StartDraft));
        assert_eq!(
            chat_command(&text("投稿：支部活动心得")),
            Some(ChatCommand::SubmitNow("支部活动心得".into()))
        );
        assert_eq!(
            chat_command(&text("留言 食堂几点开门")),
            Some(ChatCommand::BoardPost("食堂几点开门".into()))
        );
        assert_eq!(chat_command(&text("留言")), Some(ChatCommand::BoardHelp));
        assert_eq!(chat_command(&text("帮助")), None);
        assert_eq!(draft_step(&text("完成")), Some(DraftStep::Finish));
        assert_eq!(draft_step(&text(" 取消")), Some(DraftStep::Cancel));
        assert_eq!(
            draft_step(&text("第二段")),
            Some(DraftStep::AddText("第二段".into()))
        );
    }

    use super::*;

    #[test]
    fn may_continue_draft_is_a_step_that_is_not_a_command() {
        let image = InboundMessage::from_xml(
            "<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>image</MsgType><PicUrl>http://p/1.jpg</PicUrl><MediaId>m1</MediaId><MsgId>2</MsgId></xml>",
        )
        .unwrap();
        let event = InboundMessage::from_xml(
            "<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>event</MsgType><Event>subscribe</Event></xml>",
        )
        .unwrap();
        let cases = [
            text("第二段"),
            text("完成"),
            text(" 取消 "),
            text("   "),
            text("投稿"),
            text("投稿：心得"),
            text("留言 你好"),
            image,
            event,
        ];
        for msg in &cases {
            assert_eq!(
                may_continue_draft(msg),
                chat_command(msg).is_none() && draft_step(msg).is_some(),
                "{msg:?}"
            );
        }
        assert!(may_continue_draft(&cases[0]) && may_continue_draft(&cases[7]));
        assert!(!may_continue_draft(&cases[3]) && !may_continue_draft(&cases[4]));
    }

    #[test]
    fn word_list_skips_comments_and_matches_folded_text() {
        let w = SensitiveWords::parse("# comment\n刷单\n\n  SPAM  # trailing\n刷单\n");
        assert_eq!(w.len(), 2);
        assert_eq!(w.find("我们 刷 单 吧"), Some("刷单"));
        assert_eq!(w.find("buy Spam now"), Some("spam"));
        assert_eq!(w.find("学习心得"), None);
        assert!(SensitiveWords::parse("# only comments\n").is_empty());
    }

    #[test]
    fn builtin_list_parses_and_is_short() {
        let w = SensitiveWords::parse(include_str!("../../content/sensitive_words.txt"));
        assert!(!w.is_empty() && w.len() < 50);
        assert_eq!(w.find("学习二十大精神心得体会"), None);
    }

    #[test]
    fn the_same_length_caps_on_every_path() {
        assert!(check_length("content", "x", MAX_BOARD_CHARS).is_ok());
        assert!(check_length("content", "  ", MAX_BOARD_CHARS).is_err());
        assert!(check_length("content", &"字".repeat(1000), MAX_BOARD_CHARS).is_ok());
        assert!(check_length("content", &"字".repeat(1001), MAX_BOARD_CHARS).is_err());
        assert!(check_length("content", &"字".repeat(5001), MAX_SUBMISSION_CHARS).is_err());
        let m = stored_moderation("rejected", Some("local"), Some("刷单".into()));
        assert_eq!((m.initial, m.suggest), (Initial::Rejected, "local"));
        let m = stored_moderation("approved", Some("pass"), None);
        assert_eq!((m.initial, m.suggest), (Initial::Pending, "pass"));
    }

    #[test]
    fn nothing_is_approved_by_a_machine() {
        let pass = decide(&Verdict::Remote {
            suggest: Suggest::Pass,
            label: 100,
        });
        assert_eq!((pass.initial, pass.suggest), (Initial::Pending, "pass"));
        let review = decide(&Verdict::Remote {
            suggest: Suggest::Review,
            label: 21000,
        });
        assert_eq!(review.initial, Initial::Pending);
        let unknown = decide(&Verdict::Remote {
            suggest: Suggest::Unknown,
            label: 1,
        });
        assert_eq!(
            (unknown.initial, unknown.suggest),
            (Initial::Pending, "review")
        );
        assert_eq!(decide(&Verdict::Unchecked).initial, Initial::Pending);
        let risky = decide(&Verdict::Remote {
            suggest: Suggest::Risky,
            label: 20006,
        });
        assert_eq!(risky.initial, Initial::Rejected);
        let local = decide(&Verdict::LocalHit("刷单".into()));
        assert_eq!(
            (local.initial, local.label.as_deref()),
            (Initial::Rejected, Some("刷单"))
        );
    }
}
