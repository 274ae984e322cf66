//! Developer conveniences: simulate a follower talking to the running server (correctly signed
//! and, in safe/compatible mode, encrypted), and the dev-mode outbox of the built-in fake WeChat.

use anyhow::Context;
use axum::{extract::State, Json};
use secrecy::ExposeSecret;
use wechat::{crypto::MessageCrypto, signature};

use crate::{
    app::AppState,
    platform::config::{MessageMode, Settings},
    platform::error::{AppError, AppResult},
};

/// POST one text message as WeChat would to `DANGJIAN_PUBLIC_URL/wechat`; returns the reply XML
/// (decrypted when the server answered in safe mode).
pub async fn send_text(settings: &Settings, from: &str, text: &str) -> anyhow::Result<String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let msg_id = now * 1000 + i64::from(rand::random::<u16>() % 1000);
    let mut xml = String::from("<xml>");
    for (name, value) in [
        ("ToUserName", "gh_dev"),
        ("FromUserName", from),
        ("MsgType", "text"),
        ("Content", text),
    ] {
        xml.push('<');
        xml.push_str(name);
        xml.push('>');
        wechat::xml::write_cdata(&mut xml, value);
        xml.push_str("</");
        xml.push_str(name);
        xml.push('>');
    }
    xml.push_str(&format!(
        "<CreateTime>{now}</CreateTime><MsgId>{msg_id}</MsgId></xml>"
    ));

    let token = settings.wechat_token.expose_secret();
    let ts = now.to_string();
    let nonce = format!("{}", rand::random::<u32>());
    let mut url = format!(
        "{}/wechat?signature={}&timestamp={ts}&nonce={nonce}&openid={from}",
        settings.public_url.trim_end_matches('/'),
        signature::signature(token, &ts, &nonce)
    );
    let crypto = MessageCrypto::new(
        settings.wechat_aes_key.expose_secret(),
        &settings.wechat_app_id,
    )?;
    let body = if settings.wechat_message_mode == MessageMode::Plaintext {
        xml
    } else {
        let encrypt = crypto.encrypt(xml.as_bytes());
        url.push_str(&format!(
            "&encrypt_type=aes&msg_signature={}",
            signature::msg_signature(token, &ts, &nonce, &encrypt)
        ));
        format!("<xml><ToUserName><![CDATA[gh_dev]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
    };
    let resp = reqwest::Client::new()
        .post(&url)
        .body(body)
        .send()
        .await
        .context("is the server running?")?;
    let status = resp.status();
    let text = resp.text().await?;
    anyhow::ensure!(status.is_success(), "server answered {status}: {text}");
    match wechat::xml::parse_flat(&text)
        .ok()
        .and_then(|f| f.get("Encrypt").map(str::to_owned))
    {
        Some(encrypted) => Ok(String::from_utf8(crypto.decrypt(&encrypted)?)?),
        None => Ok(text),
    }
}

/// `GET /dev/wechat/outbox`: what the built-in fake WeChat "delivered" (dev mode only).
pub async fn outbox(State(st): State<AppState>) -> AppResult<Json<serde_json::Value>> {
    let fake = st
        .dev_fake
        .as_ref()
        .ok_or_else(|| AppError::NotFound("route".into()))?;
    Ok(Json(
        serde_json::json!({ "messages": fake.outbox_recent(200) }),
    ))
}
