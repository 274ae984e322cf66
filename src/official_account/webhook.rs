//! `GET/POST /wechat`: the official account's message server.
//!
//! Order of checks: signature (constant time) and timestamp window, body size, then in safe or
//! compatible mode `msg_signature` and decryption (which checks the AppId), then the XML (no
//! DOCTYPE/entities). Anything rejected gets a 4xx and changes nothing. Accepted messages go
//! through the de-duplication record, so WeChat's retries get the first reply again.
//!
//! The query `signature` covers the token, timestamp and nonce only — never the body. So in safe
//! and compatible mode only the encrypted part (`Encrypt`, covered by `msg_signature`) is trusted:
//! a request without `encrypt_type=aes` and an `Encrypt` element is refused, and compatible mode's
//! plaintext fields beside it are ignored. In plaintext mode (nothing signs the body) each signed
//! (timestamp, nonce) pair carries one body only, for the whole timestamp window: WeChat's retry
//! of the same body is answered as a retry, another body under the same signed URL is refused.

use std::{borrow::Cow, future::Future, pin::Pin, time::Duration};

use axum::{
    body::Body,
    extract::State,
    http::{header, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use secrecy::ExposeSecret;
use wechat::{
    message::InboundMessage,
    reply::{self, NewsArticle, Reply},
    signature,
};

use crate::{
    app::AppState,
    articles::store as articles,
    official_account::rules::{decide, Decision},
    official_account::store as followers,
    platform::config::MessageMode,
    platform::content::Answer,
    platform::dedup::{Claim, NonceUse, ReadAlong, Settled},
    platform::error::{AppError, AppResult},
    platform::outbound::CustomMessage,
};

const SUCCESS: &str = "success";

/// The query WeChat signs a message's URL with. Read by hand rather than through a generic
/// deserializer: the query is on every message, and the values are hex, digits and base64-ish
/// text that rarely need decoding.
/// Values borrow from the query unless they had to be decoded.
#[derive(Debug, Default)]
pub struct WechatQuery<'a> {
    signature: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    nonce: Option<Cow<'a, str>>,
    echostr: Option<Cow<'a, str>>,
    encrypt_type: Option<Cow<'a, str>>,
    msg_signature: Option<Cow<'a, str>>,
}

impl<'a> WechatQuery<'a> {
    /// `application/x-www-form-urlencoded` pairs; other names (`openid`) are ignored, a name
    /// given twice is refused.
    fn parse(query: &'a str) -> Result<WechatQuery<'a>, String> {
        let mut q = WechatQuery::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "signature" => &mut q.signature,
                "timestamp" => &mut q.timestamp,
                "nonce" => &mut q.nonce,
                "echostr" => &mut q.echostr,
                "encrypt_type" => &mut q.encrypt_type,
                "msg_signature" => &mut q.msg_signature,
                _ => continue,
            };
            if slot.is_some() {
                return Err(format!("duplicate field `{name}`"));
            }
            // Decoded as the whole pair, so that an `=` inside the value stays in it.
            *slot = Some(if value.bytes().any(|b| b == b'%' || b == b'+') {
                Cow::Owned(
                    form_urlencoded::parse(pair.as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default(),
                )
            } else {
                Cow::Borrowed(value)
            });
        }
        Ok(q)
    }
}

/// The checked query: signature valid and timestamp inside the window.
struct Verified<'a> {
    timestamp: Cow<'a, str>,
    nonce: Cow<'a, str>,
    encrypted: bool,
    msg_signature: Option<Cow<'a, str>>,
}

fn forbidden(code: &'static str, msg: &str) -> AppError {
    AppError::rejected(StatusCode::FORBIDDEN, code, msg)
}

fn bad_request(code: &'static str, msg: impl Into<String>) -> AppError {
    AppError::rejected(StatusCode::BAD_REQUEST, code, msg)
}

/// `now`: the request's arrival (Unix seconds), for the timestamp window.
fn verify_query<'a>(
    st: &AppState,
    uri: &'a Uri,
    now: i64,
) -> AppResult<(Verified<'a>, Option<Cow<'a, str>>)> {
    let q = WechatQuery::parse(uri.query().unwrap_or("")).map_err(|e| {
        bad_request(
            "bad_query",
            format!("Failed to deserialize query string: {e}"),
        )
    })?;
    let WechatQuery {
        signature: Some(sig),
        timestamp: Some(ts),
        nonce: Some(nonce),
        echostr,
        encrypt_type,
        msg_signature,
    } = q
    else {
        return Err(bad_request(
            "bad_query",
            "signature, timestamp and nonce are required",
        ));
    };
    let token = st.webhook.token.expose_secret();
    if !signature::verify_signature(token, &ts, &nonce, &sig) {
        return Err(forbidden("bad_signature", "signature does not match"));
    }
    let ts_num: i64 = ts
        .parse()
        .map_err(|_| bad_request("bad_query", "timestamp is not a number"))?;
    if (now - ts_num).abs() > st.settings.webhook_timestamp_skew_secs {
        return Err(forbidden(
            "stale_timestamp",
            "timestamp outside the accepted window",
        ));
    }
    let encrypted = match encrypt_type.as_deref() {
        None | Some("raw") => false,
        Some("aes") => true,
        Some(_) => return Err(bad_request("bad_query", "unknown encrypt_type")),
    };
    let verified = Verified {
        timestamp: ts,
        nonce,
        encrypted,
        msg_signature,
    };
    Ok((verified, echostr))
}

/// URL verification (服务器配置): echo `echostr` when the signature is right.
pub async fn verify_url(State(st): State<AppState>, uri: Uri) -> AppResult<Response> {
    let (_, echostr) = verify_query(&st, &uri, st.clock.now().unix_timestamp())?;
    let echostr = echostr
        .ok_or_else(|| bad_request("bad_query", "echostr is required"))?
        .into_owned();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        echostr,
    )
        .into_response())
}

/// Every message and event.
pub async fn receive(State(st): State<AppState>, uri: Uri, body: Body) -> AppResult<Response> {
    // WeChat's 5 s run from here: reading the body, waiting behind a running first delivery and
    // handling all come out of the same budget.
    let arrived = tokio::time::Instant::now();
    // The one wall-clock reading of a message: its timestamp window, its handling and the
    // reply's timestamp all use it.
    let now = st.clock.now();
    let result = receive_inner(&st, &uri, body, arrived, now).await;
    if result.is_err() {
        st.metrics.outcome("rejected");
    }
    result
}

async fn receive_inner(
    st: &AppState,
    uri: &Uri,
    body: Body,
    arrived: tokio::time::Instant,
    now: time::OffsetDateTime,
) -> AppResult<Response> {
    let now_s = now.unix_timestamp();
    let (v, _) = verify_query(st, uri, now_s)?;
    let bytes = axum::body::to_bytes(body, st.settings.webhook_max_body_bytes)
        .await
        .map_err(|_| AppError::PayloadTooLarge)?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| bad_request("bad_body", "body is not UTF-8"))?;

    let mode = st.settings.wechat_message_mode;
    let plaintext;
    let xml: &str = match (mode, v.encrypted) {
        (MessageMode::Plaintext, true) => {
            return Err(bad_request(
                "encryption_not_enabled",
                "this server is configured for plaintext messages",
            ));
        }
        (MessageMode::Plaintext, false) => {
            check_plaintext_nonce(st, &v, &bytes).await?;
            text
        }
        (_, false) => {
            // Nothing signs a plaintext body: in safe and compatible mode it is an attack or a
            // misconfiguration, never accepted.
            return Err(encryption_required());
        }
        (_, true) => {
            let envelope = match reply::parse_encrypted_envelope(text) {
                Ok(e) => e,
                // Well-formed XML without the encrypted part (compatible mode's plaintext fields
                // alone) is not trusted.
                Err(_) if wechat::xml::parse_flat(text).is_ok() => {
                    return Err(encryption_required())
                }
                Err(e) => return Err(bad_request("bad_xml", e.to_string())),
            };
            let msg_sig = v.msg_signature.as_deref().ok_or_else(|| {
                bad_request(
                    "bad_query",
                    "msg_signature is required for encrypted messages",
                )
            })?;
            let token = st.webhook.token.expose_secret();
            if !signature::verify_msg_signature(
                token,
                &v.timestamp,
                &v.nonce,
                &envelope.encrypt,
                msg_sig,
            ) {
                return Err(forbidden(
                    "bad_msg_signature",
                    "msg_signature does not match",
                ));
            }
            let clear = st.webhook.crypto.decrypt(&envelope.encrypt).map_err(|_| {
                forbidden(
                    "decrypt_failed",
                    "message could not be decrypted for this AppId",
                )
            })?;
            plaintext = String::from_utf8(clear)
                .map_err(|_| bad_request("bad_body", "decrypted message is not UTF-8"))?;
            &plaintext
        }
    };
    let msg = InboundMessage::from_xml(xml).map_err(|e| bad_request("bad_xml", e.to_string()))?;
    st.metrics.message(&msg);

    let deadline = arrived + Duration::from_millis(st.settings.reply_budget_ms);
    let reply_xml = dispatch(st, msg, deadline, now).await?;
    Ok(render(st, &v, reply_xml, now_s))
}

fn encryption_required() -> AppError {
    bad_request(
        "encryption_required",
        "only the encrypted part of a message is accepted (encrypt_type=aes with an Encrypt element)",
    )
}

/// Plaintext mode: one signed (timestamp, nonce) pair, one body, for the whole timestamp window.
async fn check_plaintext_nonce(st: &AppState, v: &Verified<'_>, body: &[u8]) -> AppResult<()> {
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest(body));
    // The window reaches `skew` into the past and the future of now.
    let ttl = Duration::from_secs(2 * st.settings.webhook_timestamp_skew_secs.max(1) as u64 + 1);
    let pair = format!("{}:{}", v.timestamp, v.nonce);
    match st.dedup.bind_nonce(&pair, &hash, ttl).await {
        NonceUse::First | NonceUse::SameBody => Ok(()),
        NonceUse::OtherBody => Err(forbidden(
            "replayed_signature",
            "this signed timestamp and nonce were already used for another message",
        )),
    }
}

/// `now`: the message's arrival (Unix seconds), the reply's timestamp.
fn render(st: &AppState, v: &Verified<'_>, reply_xml: String, now: i64) -> Response {
    if reply_xml == SUCCESS {
        return (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            SUCCESS,
        )
            .into_response();
    }
    let body = if v.encrypted {
        let encrypt = st.webhook.crypto.encrypt(reply_xml.as_bytes());
        let timestamp = now.to_string();
        let sig = signature::msg_signature(
            st.webhook.token.expose_secret(),
            &timestamp,
            &v.nonce,
            &encrypt,
        );
        reply::encrypted_reply_xml(&encrypt, &sig, &timestamp, &v.nonce)
    } else {
        reply_xml
    };
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The reply to a message, and how to deliver it later if the 5-second budget runs out.
struct Outgoing {
    xml: String,
    follow_up: Option<CustomMessage>,
}

async fn dispatch(
    st: &AppState,
    msg: InboundMessage,
    deadline: tokio::time::Instant,
    now: time::OffsetDateTime,
) -> AppResult<String> {
    let read_along = crate::submissions::service::read_along_key(&msg);
    let key = msg.dedup_key();
    // A budget spent before this point (receiving a slow body) means WeChat no longer waits:
    // the usual path answers by customer-service message then.
    let quick = if tokio::time::Instant::now() < deadline {
        quick_reply(st, &msg, read_along.as_deref(), now)
    } else {
        None
    };
    let claim = match quick {
        Some(xml) => {
            // On Redis the settle's script looks at the draft marker; in process it was looked
            // at above.
            let unless = read_along
                .as_deref()
                .filter(|_| st.cache.as_memory().is_none());
            match st.dedup.settle(&key, &xml, unless, deadline).await {
                Settled::Recorded => {
                    st.interactions
                        .record(&msg.from_user, crate::platform::time::unix_ms(now));
                    st.metrics.outcome("replied");
                    return Ok(xml);
                }
                Settled::Answered(reply) => Claim::Answered(reply),
                Settled::Claimed(claim) => claim,
            }
        }
        None => {
            st.dedup
                .claim_reading(&key, read_along.as_deref(), deadline)
                .await
        }
    };
    match claim {
        Claim::Answered(reply) => {
            st.metrics.outcome("retry_replayed");
            Ok(reply)
        }
        Claim::StillRunning => {
            st.metrics.outcome("retry_while_running");
            Ok(SUCCESS.to_owned())
        }
        Claim::First(mut ticket) => {
            let marker = ticket.take_read_along();
            let (tx, mut rx) = tokio::sync::oneshot::channel::<Outgoing>();
            let task_state = st.clone();
            // Handled inline while the budget lasts (no task hop in the common case), but never
            // cancelled half-way: when the budget runs out, or WeChat hangs up and this request
            // is dropped, the rest runs on as a task of its own ([`Detach`]); it finishes and
            // follows up by customer-service message. The work owns the ticket: if the handler
            // panics, dropping the ticket releases the claim, so WeChat's retry handles the
            // message instead of waiting for nothing.
            let work = async move {
                let st = task_state;
                let openid = msg.from_user.clone();
                match handle(&st, &msg, marker, now).await {
                    Ok(out) => {
                        let xml = out.xml.clone();
                        // What the follower actually got is what retries get.
                        let (answered, late) = match tx.send(out) {
                            Ok(()) => (xml, None),
                            Err(out) => (SUCCESS.to_owned(), out.follow_up),
                        };
                        st.dedup.complete(ticket, &answered).await;
                        if let Some(message) = late {
                            if let Err(e) = st.outbound.send_custom(&openid, message).await {
                                tracing::warn!(error = %e, "late reply could not be delivered");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "handling a WeChat message failed; WeChat will retry");
                        st.dedup.abandon(ticket).await;
                    }
                }
            };
            // The reply is taken as soon as the handler sends it; what is left of the work
            // (recording the answer for retries) finishes in place when it can, else as a task.
            let mut work = Detach::new(work, st.tasks.clone());
            // The deadline first: a budget spent before this point (receiving a slow body) means
            // WeChat no longer waits, so the answer goes by customer-service message instead.
            // The timer is polled last, so a message answered without waiting (most are) never
            // registers it.
            let answer = if tokio::time::Instant::now() >= deadline {
                None
            } else {
                tokio::select! {
                    biased;
                    r = &mut rx => Some(r.map_err(|_| ())),
                    () = &mut work => Some(rx.try_recv().map_err(|_| ())),
                    () = tokio::time::sleep_until(deadline) => None,
                }
            };
            drop(work);
            let out = match answer {
                Some(Ok(out)) => out,
                // The handler failed (and released the claim): WeChat's retry handles it.
                Some(Err(_)) => return Err(anyhow::anyhow!("message handler failed").into()),
                None => {
                    rx.close();
                    match rx.try_recv() {
                        Ok(out) => out, // finished at the wire
                        Err(_) => {
                            st.metrics.outcome("deferred");
                            return Ok(SUCCESS.to_owned());
                        }
                    }
                }
            };
            st.metrics.outcome("replied");
            Ok(out.xml)
        }
    }
}

/// The reply to a message that has no side effect and needs no I/O (a keyword answer, the
/// default text, silence), known before the message is claimed, so that the claim records it
/// at once ([`crate::platform::dedup::Dedup::settle`]). `None` for everything else: commands,
/// events that change something, answers read from the database, and (in process, where the
/// marker is read here) a text from a sender with an open chat draft. `marker`: the sender's
/// draft-marker key when the message could continue a draft. The same decision as [`handle`]'s.
fn quick_reply(
    st: &AppState,
    msg: &InboundMessage,
    marker: Option<&str>,
    now: time::OffsetDateTime,
) -> Option<String> {
    if crate::submissions::service::is_chat_command(msg) {
        return None;
    }
    if let (Some(marker), Some(cache)) = (marker, st.cache.as_memory()) {
        if cache.get_now(marker).is_some() {
            return None;
        }
    }
    match decide(&st.content.get(), msg) {
        Decision::Answer(Answer::Text(content)) => {
            Some(Reply::Text { content }.to_xml(&msg.from_user, &msg.to_user, now.unix_timestamp()))
        }
        Decision::Silent => Some(SUCCESS.to_owned()),
        _ => None,
    }
}

/// Run the decision for one message: side effects happen here, once per message.
/// `marker`: what the claim read along for the chat side (the sender's draft marker); `now`: the
/// message's arrival.
async fn handle(
    st: &AppState,
    msg: &InboundMessage,
    marker: ReadAlong,
    now: time::OffsetDateTime,
) -> AppResult<Outgoing> {
    let content = st.content.get();
    let now_ms = crate::platform::time::unix_ms(now);
    let now_s = now.unix_timestamp();
    // Submissions and the board come before the keyword rules, so no rule can swallow them.
    if let Some(text) = crate::submissions::service::handle_chat(st, msg, marker, now_ms).await? {
        st.interactions.record(&msg.from_user, now_ms);
        let reply = Reply::Text { content: text };
        return Ok(Outgoing {
            xml: reply.to_xml(&msg.from_user, &msg.to_user, now_s),
            follow_up: custom_of(&reply),
        });
    }
    let decision = decide(&content, msg);
    if !matches!(decision, Decision::Unsubscribed | Decision::DeliveryReport) {
        st.interactions.record(&msg.from_user, now_ms);
    }
    let reply = match decision {
        Decision::Answer(answer) => Some(answer_reply(st, &answer).await?),
        Decision::Welcome { scene } => {
            followers::subscribe(&st.db, &msg.from_user, scene.as_deref(), now_ms).await?;
            // Who is this follower? (UnionID → member), after the reply.
            let st2 = st.clone();
            let openid = msg.from_user.clone();
            st.tasks.spawn(async move {
                crate::official_account::service::identify_follower(&st2, &openid).await
            });
            if content.replies.welcome_newest_article {
                let st2 = st.clone();
                let openid = msg.from_user.clone();
                st.tasks
                    .spawn(async move { send_welcome_card(&st2, &openid).await });
            }
            Some(Reply::Text {
                content: content.replies.welcome_text.clone(),
            })
        }
        Decision::Unsubscribed => {
            followers::unsubscribe(&st.db, &msg.from_user, now_ms).await?;
            None
        }
        Decision::DeliveryReport => {
            crate::push::reports::handle(st, msg).await?;
            None
        }
        Decision::Silent => None,
    };
    Ok(match reply {
        None => Outgoing {
            xml: SUCCESS.to_owned(),
            follow_up: None,
        },
        Some(reply) => Outgoing {
            xml: reply.to_xml(&msg.from_user, &msg.to_user, now_s),
            follow_up: custom_of(&reply),
        },
    })
}

async fn answer_reply(st: &AppState, answer: &Answer) -> AppResult<Reply> {
    Ok(match answer {
        Answer::Text(text) => Reply::Text {
            content: text.clone(),
        },
        Answer::NewestArticle { category } => {
            match articles::newest_in_category(&st.db, category).await? {
                Some(card) => Reply::News {
                    article: st.news_card(&card),
                },
                None => Reply::Text {
                    content: format!("“{category}”栏目暂无文章，敬请期待。"),
                },
            }
        }
    })
}

async fn send_welcome_card(st: &AppState, openid: &str) {
    match articles::newest(&st.db).await {
        Ok(Some(card)) => {
            let a = st.news_card(&card);
            let message = CustomMessage::News {
                title: a.title,
                description: a.description,
                url: a.url,
                pic_url: a.pic_url,
            };
            if let Err(e) = st.outbound.send_custom(openid, message).await {
                tracing::warn!(error = %e, "welcome article card not delivered");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "welcome article lookup failed"),
    }
}

/// The customer-service message that carries the same content as a passive reply.
fn custom_of(reply: &Reply) -> Option<CustomMessage> {
    match reply {
        Reply::Text { content } => Some(CustomMessage::Text(content.clone())),
        Reply::News { article } => Some(CustomMessage::News {
            title: article.title.clone(),
            description: article.description.clone(),
            url: article.url.clone(),
            pic_url: article.pic_url.clone(),
        }),
        _ => None,
    }
}

impl AppState {
    /// The news card of an article: its public page under `DANGJIAN_PUBLIC_URL`.
    pub fn news_card(&self, card: &articles::ArticleCard) -> NewsArticle {
        let base = self.settings.public_url.trim_end_matches('/');
        NewsArticle {
            title: card.title.clone(),
            description: card.summary.clone(),
            // No cover: WeChat shows the card without a picture.
            pic_url: card.cover_url.clone().unwrap_or_default(),
            url: format!("{base}/articles/{}", card.id),
        }
    }
}

/// A future run in place that, if it is dropped or [`detach`](Detach::detach)ed before it
/// finishes, goes on as a task of its own instead of being cancelled.
struct Detach<F: Future<Output = ()> + Send + 'static> {
    work: Option<Pin<Box<F>>>,
    tasks: tokio_util::task::TaskTracker,
}

impl<F: Future<Output = ()> + Send + 'static> Detach<F> {
    fn new(work: F, tasks: tokio_util::task::TaskTracker) -> Self {
        Detach {
            work: Some(Box::pin(work)),
            tasks,
        }
    }

    /// Let the rest run as a task (a no-op once finished).
    fn detach(&mut self) {
        if let Some(work) = self.work.take() {
            // Outside a runtime (only while it shuts down) there is nowhere to run it.
            if tokio::runtime::Handle::try_current().is_ok() {
                self.tasks.spawn(work);
            }
        }
    }
}

impl<F: Future<Output = ()> + Send + 'static> Future for Detach<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let Some(work) = self.work.as_mut() else {
            return std::task::Poll::Ready(());
        };
        let done = work.as_mut().poll(cx);
        if done.is_ready() {
            self.work = None;
        }
        done
    }
}

impl<F: Future<Output = ()> + Send + 'static> Drop for Detach<F> {
    fn drop(&mut self) {
        self.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::WechatQuery;

    #[test]
    fn the_query_is_read_like_a_form() {
        let q = WechatQuery::parse(
            "signature=ab12&timestamp=1700000000&nonce=n%20o+nce&openid=o_x&encrypt_type=aes&msg_signature=&echostr=a%2Bb",
        )
        .unwrap();
        assert_eq!(q.signature.as_deref(), Some("ab12"));
        assert_eq!(q.timestamp.as_deref(), Some("1700000000"));
        assert_eq!(q.nonce.as_deref(), Some("n o nce"));
        assert_eq!(q.encrypt_type.as_deref(), Some("aes"));
        assert_eq!(q.msg_signature.as_deref(), Some(""));
        assert_eq!(q.echostr.as_deref(), Some("a+b"));
        // An `=` inside a value (base64 padding) stays in it, decoded or not.
        let q = WechatQuery::parse("echostr=a%2Bb==&nonce=x=y").unwrap();
        assert_eq!(q.echostr.as_deref(), Some("a+b=="));
        assert_eq!(q.nonce.as_deref(), Some("x=y"));
        let q = WechatQuery::parse("&&nonce&signature=x").unwrap();
        assert_eq!(q.nonce.as_deref(), Some(""));
        assert_eq!(q.signature.as_deref(), Some("x"));
        assert!(q.timestamp.is_none());
        assert!(WechatQuery::parse("").unwrap().signature.is_none());
    }

    #[test]
    fn a_name_given_twice_is_refused() {
        let e = WechatQuery::parse("nonce=a&nonce=b").unwrap_err();
        assert!(e.contains("nonce"), "{e}");
        // Unknown names may repeat.
        assert!(WechatQuery::parse("openid=a&openid=b").is_ok());
    }
}
