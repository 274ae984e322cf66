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
