//! WeChat's delivery reports and consent events, from the webhook:
//! TEMPLATESENDJOBFINISH (by `msgid` → delivery row), MASSSENDJOBFINISH (by `msg_id` → push),
//! subscribe_msg_popup_event / subscribe_msg_change_event (→ `subscribe_grants` of the official
//! account: these events are the account's 订阅通知 consent, not the mini-program's; recorded
//! once per event identity, see [`consent_event_id`]).

use std::time::Duration;

use wechat::message::{Event, InboundMessage, MessageBody};

use super::store;
use crate::app::AppState;

/// Handle one report or consent event. A template report can arrive before the worker has recorded
/// the msgid (it records a batch at a time): then it is tried again a few times in the background.
pub async fn handle(st: &AppState, msg: &InboundMessage) -> anyhow::Result<()> {
    let MessageBody::Event(event) = &msg.body else {
        return Ok(());
    };
    let now = st.clock.unix_ms();
    match event {
        Event::TemplateSendJobFinish { msg_id, status } => {
            template_report(st, *msg_id, status, now).await?
        }
        Event::MassSendJobFinish {
            msg_id,
            status,
            total_count,
            filter_count,
            sent_count,
            error_count,
        } => {
            let report = serde_json::json!({
                "status": status,
                "total_count": total_count,
                "filter_count": filter_count,
                "sent_count": sent_count,
                "error_count": error_count,
            });
            if store::mass_report(&st.db, *msg_id, &report, now).await? == 0 {
                tracing::info!(msg_id, "mass report for no known push");
            }
        }
        Event::SubscribeMsgPopup { items } | Event::SubscribeMsgChange { items } => {
            let answers: Vec<(&str, &str)> = items
                .iter()
                .map(|item| {
                    let status = match item.status.as_str() {
                        "accept" => "accept",
                        "ban" => "ban",
                        _ => "reject",
                    };
                    (item.template_id.as_str(), status)
                })
                .collect();
            store::record_consents(
                &st.db,
                super::App::Oa,
                &msg.from_user,
                Some(&consent_event_id(msg)),
                &answers,
                now,
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// The identity of a consent event: WeChat resends an event with the same `FromUserName`,
/// `CreateTime` and `Event` (the template ids are keyed beside it), so a retry — after a partial
/// failure, a lost answer or the de-duplication window — is recognised and credits nothing.
pub fn consent_event_id(msg: &InboundMessage) -> String {
    format!(
        "{}:{}:{}",
        msg.from_user,
        msg.create_time,
        msg.event_name().unwrap_or_default()
    )
}

/// TEMPLATESENDJOBFINISH → the delivery row with that msgid; retried in the background when the
/// row isn't recorded yet.
async fn template_report(st: &AppState, msg_id: i64, status: &str, now: i64) -> anyhow::Result<()> {
    if store::template_report(&st.db, msg_id, status, now).await? == 0 {
        let (st2, msg_id, status) = (st.clone(), msg_id, status.to_owned());
        st.tasks.spawn(async move {
            for _ in 0..5 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = st2.shutdown.cancelled() => return,
                }
                match store::template_report(&st2.db, msg_id, &status, st2.clock.unix_ms()).await {
                    Ok(0) => continue,
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, msg_id, "template report not recorded");
                        return;
                    }
                }
            }
            tracing::info!(msg_id, "template report for no known push delivery");
        });
    }
    Ok(())
}
