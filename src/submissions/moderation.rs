//! Moderation with I/O: the local sensitive-word list (from the content store), then WeChat's
//! msgSecCheck v2 on the mini-program client. The rules of what a verdict means are in
//! [`crate::submissions::rules`].
//!
//! msgSecCheck wants the author's *mini-program* openid (someone who used the mini-program in
//! the last two hours). Chat submissions only have the official-account openid; real WeChat may
//! refuse those calls (e.g. 40003), and then the item simply goes to the editors unchecked —
//! a failed check never approves anything.

use crate::{
    app::AppState,
    submissions::rules::{decide, Moderation, Verdict},
};

/// msgSecCheck scenes (场景枚举值).
pub const SCENE_SUBMISSION: u8 = 4;
pub const SCENE_BOARD: u8 = 3;

pub async fn check(st: &AppState, openid: &str, scene: u8, text: &str) -> Moderation {
    if text.trim().is_empty() {
        // Pictures only: msgSecCheck checks text, so the editors look at it unchecked.
        return decide(&Verdict::Unchecked);
    }
    let content = st.content.get();
    if let Some(word) = content.sensitive_words.find(text) {
        return decide(&Verdict::LocalHit(word.to_owned()));
    }
    let req = wechat::client::MsgSecCheck::new(openid, scene, text);
    let verdict = match st.mp.msg_sec_check(&req).await {
        Ok(r) => Verdict::Remote {
            suggest: r.result.suggest,
            label: r.result.label,
        },
        Err(e) => {
            tracing::warn!(error = %e, "msgSecCheck failed; the item goes to the editors unchecked");
            Verdict::Unchecked
        }
    };
    decide(&verdict)
}
