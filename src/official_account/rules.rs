//! What the official account does with an inbound message: pure, so every rule is testable.

use wechat::message::{Event, InboundMessage, MessageBody};

use crate::platform::content::{Answer, ContentSet};

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Reply with text or an article card.
    Answer(Answer),
    /// A new (or returning) follower: record them and send the welcome.
    Welcome { scene: Option<String> },
    /// Mark the follower unsubscribed; WeChat shows nothing.
    Unsubscribed,
    /// A delivery report for a push, or a subscribe-message consent change.
    DeliveryReport,
    /// Nothing to say: answer `success`.
    Silent,
}

pub fn decide(content: &ContentSet, msg: &InboundMessage) -> Decision {
    match &msg.body {
        MessageBody::Text { content: text, .. } => {
            Decision::Answer(content.replies.answer_text(text))
        }
        // Voice with speech recognition on is as good as text.
        MessageBody::Voice {
            recognition: Some(text),
            ..
        } if !text.trim().is_empty() => Decision::Answer(content.replies.answer_text(text)),
        MessageBody::Image { .. }
        | MessageBody::Voice { .. }
        | MessageBody::Video { .. }
        | MessageBody::ShortVideo { .. }
        | MessageBody::Location { .. }
        | MessageBody::Link { .. }
        | MessageBody::File { .. } => {
            Decision::Answer(Answer::Text(content.replies.default_text.clone()))
        }
        MessageBody::Event(event) => decide_event(content, event),
        MessageBody::Unknown { .. } => Decision::Silent,
    }
}

fn decide_event(content: &ContentSet, event: &Event) -> Decision {
    match event {
        Event::Subscribe { scene, .. } => Decision::Welcome {
            scene: scene.clone(),
        },
        Event::Unsubscribe => Decision::Unsubscribed,
        Event::Click { key } => match content.menu.click_answer(key) {
            Some(answer) => Decision::Answer(answer),
            None => Decision::Answer(Answer::Text(content.replies.default_text.clone())),
        },
        // Delivery reports, and subscribe-message consent (which decides who a subscribe push may reach).
        Event::TemplateSendJobFinish { .. }
        | Event::MassSendJobFinish { .. }
        | Event::SubscribeMsgSent { .. }
        | Event::SubscribeMsgPopup { .. }
        | Event::SubscribeMsgChange { .. } => Decision::DeliveryReport,
        _ => Decision::Silent,
    }
}

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
    use super::*;

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
}
