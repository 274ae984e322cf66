//! The API client against the fake WeChat: every endpoint round-trips, errcodes map to
//! `Error::Api`, the access token is fetched once across replicas, and faults are retried (or not)
//! as the retry policy says.
#![cfg(feature = "fake")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wechat::client::{
    api, Button, Client, ClientConfig, CustomMessage, DraftArticle, Lang, MassContent, MassFilter,
    MassMessage, MediaUploadKind, Menu, MiniProgram, MiniProgramPage, MsgSecCheck, NewsArticle,
    RetryPolicy, SubscribeMessage, Suggest, TemplateInfo, TemplateMessage, TokenPolicy,
    WxaCodeUnlimit,
};
use wechat::fake::{FakeConfig, FakeServer, FakeWechat, Fault};
use wechat::token::{MemoryTokenStore, TokenStore};
use wechat::Error;

struct Env {
    fake: FakeWechat,
    server: FakeServer,
    store: Arc<MemoryTokenStore>,
    oa: Client,
    mp: Client,
}

fn fast(mut c: ClientConfig) -> ClientConfig {
    c.timeout = Duration::from_secs(5);
    c.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
    };
    c.token = TokenPolicy {
        poll_interval: Duration::from_millis(2),
        max_wait: Duration::from_secs(5),
        failure_cooldown: Duration::ZERO,
        ..TokenPolicy::default()
    };
    c
}

fn oa_config(fake: &FakeWechat, base: &str) -> ClientConfig {
    let c = fake.config();
    fast(ClientConfig::new(
        base,
        c.app_id.clone(),
        c.app_secret.clone(),
    ))
}

fn mp_config(fake: &FakeWechat, base: &str) -> ClientConfig {
    let c = fake.config();
    fast(ClientConfig::new(
        base,
        c.mp_app_id.clone(),
        c.mp_app_secret.clone(),
    ))
}

async fn env() -> Env {
    let fake = FakeWechat::new(FakeConfig::default());
    let server = fake.spawn().await;
    let store = Arc::new(MemoryTokenStore::new());
    let oa = Client::new(oa_config(&fake, &server.base_url), store.clone()).unwrap();
    let mp = Client::new(mp_config(&fake, &server.base_url), store.clone()).unwrap();
    Env {
        fake,
        server,
        store,
        oa,
        mp,
    }
}

fn errcode<T: std::fmt::Debug>(r: Result<T, Error>) -> i64 {
    match r {
        Err(Error::Api { errcode, .. }) => errcode,
        other => panic!("expected Error::Api, got {other:?}"),
    }
}

fn openids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, wechat::client::TemplateValue> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).into()))
        .collect()
}

// ---- token endpoints ----

#[tokio::test]
async fn token_endpoints_issue_tokens_and_reject_bad_credentials() {
    let e = env().await;
    let t = e.oa.get_token().await.unwrap();
    assert_eq!(t.expires_in, 7200);
    assert!(!t.access_token.is_empty());

    let s1 = e.oa.get_stable_token(false).await.unwrap();
    let s2 = e.oa.get_stable_token(false).await.unwrap();
    assert_eq!(
        s1.access_token, s2.access_token,
        "stable_token returns the current token"
    );
    let s3 = e.oa.get_stable_token(true).await.unwrap();
    assert_ne!(
        s1.access_token, s3.access_token,
        "force_refresh issues a new one"
    );

    let mut bad_secret = oa_config(&e.fake, &e.server.base_url);
    bad_secret.app_secret = "wrong".into();
    let c = Client::new(bad_secret, e.store.clone()).unwrap();
    assert_eq!(errcode(c.get_token().await), 40125);
    assert_eq!(
        errcode(c.menu_get().await),
        40125,
        "managed token surfaces the error"
    );

    let mut bad_appid = oa_config(&e.fake, &e.server.base_url);
    bad_appid.app_id = "wxnotanapp".into();
    let c = Client::new(bad_appid, e.store.clone()).unwrap();
    assert_eq!(errcode(c.get_stable_token(false).await), 40013);

    let recorded = e.fake.calls_to(api::TOKEN);
    assert_eq!(
        recorded[0].query.get("secret").map(String::as_str),
        Some("***")
    );
    assert_eq!(e.fake.calls_to(api::STABLE_TOKEN)[0].body["secret"], "***");
}

#[tokio::test]
async fn stable_token_mode_fetches_once() {
    let e = env().await;
    let mut cfg = oa_config(&e.fake, &e.server.base_url);
    cfg.use_stable_token = true;
    let c = Client::new(cfg, Arc::new(MemoryTokenStore::new())).unwrap();
    c.menu_delete().await.unwrap();
    c.menu_delete().await.unwrap();
    assert_eq!(e.fake.count_calls(api::STABLE_TOKEN), 1);
    assert_eq!(e.fake.count_calls(api::TOKEN), 0);
}

#[tokio::test]
async fn fake_checks_the_access_token_and_the_json() {
    let e = env().await;
    let http = reqwest::Client::new();
    let base = &e.server.base_url;
    let get = |q: &'static str| {
        let http = http.clone();
        let url = format!("{base}/cgi-bin/menu/get{q}");
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(get("").await["errcode"], 41001);
    assert_eq!(get("?access_token=forged").await["errcode"], 40001);

    let token = e.oa.access_token().await.unwrap();
    let resp: serde_json::Value = http
        .post(format!(
            "{base}/cgi-bin/message/custom/send?access_token={token}"
        ))
        .body("{not json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["errcode"], 47001);

    // An official-account token is no good for mini-program APIs.
    let resp: serde_json::Value = http
        .post(format!("{base}/wxa/msg_sec_check?access_token={token}"))
        .json(&serde_json::json!({"content": "x", "version": 2, "scene": 2, "openid": "o1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["errcode"], 48001);

    e.fake.expire_tokens();
    assert_eq!(get_with(&http, base, &token).await["errcode"], 42001);
    assert!(e
        .fake
        .calls_to(api::MENU_GET)
        .iter()
        .all(|c| c.query.get("access_token").is_none_or(|t| t == "***")));
}

async fn get_with(http: &reqwest::Client, base: &str, token: &str) -> serde_json::Value {
    http.get(format!("{base}/cgi-bin/menu/get?access_token={token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

// ---- official account endpoints ----

#[tokio::test]
async fn menu_create_get_delete_round_trip() {
    let e = env().await;
    let menu = Menu {
        button: vec![
            Button::click("今日要闻", "NEWS_TODAY"),
            Button::parent(
                "学习园地",
                vec![
                    Button::view("理论学习", "https://example.org/study"),
                    Button::miniprogram(
                        "小程序",
                        "https://example.org",
                        "wxmp",
                        "pages/index/index",
                    ),
                ],
            ),
        ],
    };
    e.oa.menu_create(&menu).await.unwrap();
    assert_eq!(e.oa.menu_get().await.unwrap().menu, menu);
    e.oa.menu_delete().await.unwrap();
    assert_eq!(errcode(e.oa.menu_get().await), 46003);

    let too_many = Menu {
        button: (0..4)
            .map(|i| Button::click(format!("b{i}"), "k"))
            .collect(),
    };
    assert_eq!(errcode(e.oa.menu_create(&too_many).await), 40016);
}

#[tokio::test]
async fn followers_page_with_next_openid_and_batchget() {
    let e = env().await;
    let all = openids("oFollower", 25);
    e.fake.add_followers(&all);
    e.fake.set_user_page_size(10);

    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = e.oa.user_get(next.as_deref()).await.unwrap();
        assert_eq!(page.total, 25);
        if page.count == 0 {
            break;
        }
        seen.extend_from_slice(page.openids());
        next = Some(page.next_openid.clone());
    }
    assert_eq!(seen, all);

    e.fake.remove_follower(&all[1]);
    let infos =
        e.oa.user_info_batchget(&all[..3], Lang::ZhCn)
            .await
            .unwrap();
    assert_eq!(infos.len(), 3);
    assert!(infos[0].is_subscribed() && infos[0].subscribe_time.is_some());
    assert!(!infos[1].is_subscribed());
    assert_eq!(infos[1].openid, all[1]);
    assert_eq!(e.oa.user_get(None).await.unwrap().total, 24);

    assert_eq!(
        errcode(
            e.oa.user_info_batchget(&["bad openid!".into()], Lang::ZhCn)
                .await
        ),
        40003
    );
}

#[tokio::test]
async fn user_info_and_code2session_give_one_unionid_for_linked_openids() {
    let e = env().await;
    e.fake.add_followers(&["oAccount1".to_owned()]);
    // By default each openid gets its own UnionID.
    let info = e.oa.user_info("oAccount1", Lang::ZhCn).await.unwrap();
    assert!(info.is_subscribed());
    assert_eq!(info.unionid.as_deref(), Some("union_oAccount1"));
    // One person, two apps, one open platform: the same UnionID on both sides.
    e.fake.set_unionid("oAccount1", Some("uPerson1"));
    e.fake.set_unionid("mp_person1", Some("uPerson1"));
    let info = e.oa.user_info("oAccount1", Lang::ZhCn).await.unwrap();
    assert_eq!(info.unionid.as_deref(), Some("uPerson1"));
    let batch =
        e.oa.user_info_batchget(&["oAccount1".to_owned()], Lang::En)
            .await
            .unwrap();
    assert_eq!(batch[0].unionid.as_deref(), Some("uPerson1"));
    let s = e.mp.jscode2session("person1").await.unwrap();
    assert_eq!(s.unionid.as_deref(), Some("uPerson1"));
    // Not on one open platform: no UnionID at all.
    e.fake.set_unionid("mp_person2", None);
    assert_eq!(e.mp.jscode2session("person2").await.unwrap().unionid, None);
    // An unfollowed user: subscribe 0; a bad openid: 40003; the mini-program token: 48001.
    let gone = e.oa.user_info("oNeverFollowed", Lang::ZhCn).await.unwrap();
    assert!(!gone.is_subscribed());
    assert_eq!(
        errcode(e.oa.user_info("bad openid!", Lang::ZhCn).await),
        40003
    );
    assert_eq!(
        errcode(e.mp.user_info("oAccount1", Lang::ZhCn).await),
        48001
    );
}

#[tokio::test]
async fn tags_create_list_tag_members() {
    let e = env().await;
    let members = openids("oTag", 5);
    e.fake.add_followers(&members);
    let tag = e.oa.tags_create("第一支部").await.unwrap();
    assert_eq!(tag.name, "第一支部");
    assert_eq!(errcode(e.oa.tags_create("第一支部").await), 45157);

    e.oa.tags_members_batchtagging(tag.id, &members[..3])
        .await
        .unwrap();
    let tags = e.oa.tags_get().await.unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!((tags[0].id, tags[0].count), (tag.id, 3));

    let page = e.oa.user_tag_get(tag.id, None).await.unwrap();
    assert_eq!(page.openids(), &members[..3]);
    let rest =
        e.oa.user_tag_get(tag.id, Some(&page.next_openid))
            .await
            .unwrap();
    assert_eq!(rest.count, 0);

    let infos =
        e.oa.user_info_batchget(&members[..1], Lang::ZhCn)
            .await
            .unwrap();
    assert_eq!(infos[0].tagid_list, vec![tag.id]);
    assert_eq!(errcode(e.oa.user_tag_get(9999, None).await), 45159);
}

#[tokio::test]
async fn custom_messages_arrive_in_the_outbox() {
    let e = env().await;
    e.oa.custom_send(&CustomMessage::text("oUser1", "你好"))
        .await
        .unwrap();
    e.oa.custom_send(&CustomMessage::news(
        "oUser1",
        NewsArticle {
            title: "学习贯彻".into(),
            description: "摘要".into(),
            url: "https://example.org/a/1".into(),
            picurl: "https://example.org/a/1.jpg".into(),
        },
    ))
    .await
    .unwrap();
    e.oa.custom_send(&CustomMessage::mini_program_page(
        "oUser2",
        MiniProgramPage {
            title: "活动报名".into(),
            appid: "wxmp".into(),
            pagepath: "pages/activity/index?id=1".into(),
            thumb_media_id: "thumb".into(),
        },
    ))
    .await
    .unwrap();

    let out = e.fake.outbox();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|m| m.channel == "custom"));
    assert_eq!(out[0].to_user.as_deref(), Some("oUser1"));
    assert_eq!(out[0].body["text"]["content"], "你好");
    assert_eq!(out[1].body["news"]["articles"][0]["title"], "学习贯彻");
    assert_eq!(out[2].body["msgtype"], "miniprogrampage");
    assert!(out[0].msgid < out[1].msgid && out[1].msgid < out[2].msgid);

    assert_eq!(
        errcode(e.oa.custom_send(&CustomMessage::text("", "x")).await),
        40003
    );
    assert_eq!(
        errcode(e.oa.custom_send(&CustomMessage::text("oUser1", "")).await),
        47001
    );
    e.fake.add_followers(&["oGone".into()]);
    e.fake.remove_follower("oGone");
    assert_eq!(
        errcode(e.oa.custom_send(&CustomMessage::text("oGone", "x")).await),
        43004
    );
    assert_eq!(e.fake.outbox_len(), 3);
}

#[tokio::test]
async fn template_messages_send_and_list() {
    let e = env().await;
    e.fake.add_template(TemplateInfo {
        template_id: "TPL_NEWS".into(),
        title: "学习提醒".into(),
        content: "{{thing1.DATA}}\n{{time2.DATA}}".into(),
        ..TemplateInfo::default()
    });
    let list = e.oa.template_list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].template_id, "TPL_NEWS");

    let mut msg = TemplateMessage {
        touser: "oUser1".into(),
        template_id: "TPL_NEWS".into(),
        url: Some("https://example.org/a/1".into()),
        miniprogram: Some(MiniProgram {
            appid: "wxmp".into(),
            pagepath: Some("pages/a".into()),
        }),
        client_msg_id: None,
        data: data(&[("thing1", "新文章"), ("time2", "2026-11-01 10:00")]),
    };
    let id1 = e.oa.template_send(&msg).await.unwrap();
    let id2 = e.oa.template_send(&msg).await.unwrap();
    assert!(id2 > id1);
    let out = e.fake.outbox();
    assert_eq!(out[0].channel, "template");
    assert_eq!(out[0].msgid, id1);
    assert_eq!(out[0].body["data"]["thing1"]["value"], "新文章");

    msg.client_msg_id = Some("delivery-42".into());
    let id3 = e.oa.template_send(&msg).await.unwrap();
    let id4 = e.oa.template_send(&msg).await.unwrap();
    assert_eq!(id3, id4, "same client_msg_id: one message");
    assert_eq!(e.fake.outbox_len(), 3);

    msg.template_id = "TPL_UNKNOWN".into();
    assert_eq!(errcode(e.oa.template_send(&msg).await), 40037);
}

#[tokio::test]
async fn mass_send_by_tag_and_to_all_and_preview() {
    let e = env().await;
    let img =
        e.oa.material_add_image("cover.png", "image/png", b"\x89PNG fake")
            .await
            .unwrap();
    assert!(!img.media_id.is_empty() && !img.url.is_empty());
    let media_id =
        e.oa.draft_add(&[DraftArticle {
            title: "十月主题党日".into(),
            content: "<p>正文</p>".into(),
            thumb_media_id: img.media_id.clone(),
            digest: Some("摘要".into()),
            ..DraftArticle::default()
        }])
        .await
        .unwrap();
    let tag = e.oa.tags_create("在职党员").await.unwrap();

    let by_tag =
        e.oa.mass_send_all(&MassMessage {
            filter: MassFilter::tag(tag.id),
            content: MassContent::mpnews(&media_id),
            send_ignore_reprint: 0,
            clientmsgid: Some("push-1".into()),
        })
        .await
        .unwrap();
    assert!(by_tag.msg_data_id.is_some());

    let to_all =
        e.oa.mass_send_all(&MassMessage {
            filter: MassFilter::all(),
            content: MassContent::text("通知：周五学习"),
            send_ignore_reprint: 0,
            clientmsgid: None,
        })
        .await
        .unwrap();
    assert!(to_all.msg_id > by_tag.msg_id);
    assert_eq!(to_all.msg_data_id, None);

    e.oa.mass_preview("oEditor", &MassContent::mpnews(&media_id))
        .await
        .unwrap();

    let out = e.fake.outbox();
    assert_eq!(
        out.iter().map(|m| m.channel).collect::<Vec<_>>(),
        ["mass", "mass", "preview"]
    );
    assert_eq!(out[0].to_user, None);
    assert_eq!(out[0].body["filter"]["tag_id"], tag.id);
    assert_eq!(out[2].to_user.as_deref(), Some("oEditor"));

    let dup = MassMessage {
        filter: MassFilter::tag(tag.id),
        content: MassContent::mpnews(&media_id),
        send_ignore_reprint: 0,
        clientmsgid: Some("push-1".into()),
    };
    assert_eq!(errcode(e.oa.mass_send_all(&dup).await), 45065);
    let unknown = MassMessage {
        content: MassContent::mpnews("nope"),
        clientmsgid: None,
        ..dup
    };
    assert_eq!(errcode(e.oa.mass_send_all(&unknown).await), 40007);
    let bad_draft = DraftArticle {
        title: "t".into(),
        content: "c".into(),
        thumb_media_id: "temporary".into(),
        ..DraftArticle::default()
    };
    assert_eq!(errcode(e.oa.draft_add(&[bad_draft]).await), 40007);
}

#[tokio::test]
async fn media_upload_is_multipart() {
    let e = env().await;
    let up =
        e.oa.media_upload(
            MediaUploadKind::Image,
            "a.jpg",
            "image/jpeg",
            &[0xFF, 0xD8, 1, 2, 3],
        )
        .await
        .unwrap();
    assert_eq!(up.kind, "image");
    assert!(!up.media_id.is_empty());
    let thumb =
        e.oa.media_upload(MediaUploadKind::Thumb, "t.jpg", "image/jpeg", b"x")
            .await
            .unwrap();
    assert_eq!(thumb.kind, "thumb");
    let calls = e.fake.calls_to(api::MEDIA_UPLOAD);
    assert_eq!(
        calls[0].query.get("type").map(String::as_str),
        Some("image")
    );
    assert!(calls[0].body["multipart_bytes"].as_u64().unwrap() > 5);
}

// ---- mini-program endpoints ----

#[tokio::test]
async fn jscode2session_maps_codes_and_rejects_invalid() {
    let e = env().await;
    let s = e.mp.jscode2session("abc123").await.unwrap();
    assert_eq!(s.openid, "mp_abc123");
    assert!(!s.session_key.is_empty());
    assert!(!format!("{s:?}").contains(&s.session_key));
    assert_eq!(
        e.mp.jscode2session("abc123").await.unwrap().openid,
        s.openid,
        "deterministic"
    );
    assert_eq!(errcode(e.mp.jscode2session("invalid").await), 40029);
    assert_eq!(
        errcode(e.oa.jscode2session("abc").await),
        40013,
        "official-account appid"
    );
    assert_eq!(e.fake.token_fetches(), 0, "no access token needed");
    assert_eq!(
        e.fake.calls_to(api::JSCODE2SESSION)[0].query["secret"],
        "***"
    );
}

#[tokio::test]
async fn phone_number_sec_check_subscribe_and_wxacode() {
    let e = env().await;
    e.fake.set_phone("phonecode1", "13800138000");
    let p = e.mp.get_user_phone_number("phonecode1").await.unwrap();
    assert_eq!(p.pure_phone_number, "13800138000");
    assert_eq!(p.country_code, "86");
    assert!(!format!("{p:?}").contains("13800138000"));
    assert_eq!(errcode(e.mp.get_user_phone_number("other").await), 40029);

    e.fake
        .set_sec_words(vec!["待审".into()], vec!["违禁".into()]);
    let check = |c: &str| MsgSecCheck::new("mp_abc", 2, c);
    let r = e.mp.msg_sec_check(&check("今天学习了")).await.unwrap();
    assert_eq!((r.result.suggest, r.result.label), (Suggest::Pass, 100));
    assert_eq!(
        e.mp.msg_sec_check(&check("这句待审"))
            .await
            .unwrap()
            .result
            .suggest,
        Suggest::Review
    );
    let risky = e.mp.msg_sec_check(&check("含违禁词")).await.unwrap();
    assert_eq!(risky.result.suggest, Suggest::Risky);
    assert_eq!(risky.detail[0].keyword.as_deref(), Some("违禁"));
    assert_eq!(
        errcode(e.mp.msg_sec_check(&MsgSecCheck::new("", 2, "x")).await),
        40003
    );

    let sub = SubscribeMessage {
        touser: "mp_abc".into(),
        template_id: "SUB_TPL".into(),
        page: Some("pages/activity/index?id=3".into()),
        data: data(&[("thing1", "主题党日"), ("time2", "2026-11-05 09:00")]),
        ..SubscribeMessage::default()
    };
    e.mp.subscribe_send(&sub).await.unwrap();
    let out = e.fake.outbox();
    assert_eq!(
        (out[0].channel, out[0].to_user.as_deref()),
        ("subscribe", Some("mp_abc"))
    );
    e.fake.fail_openid("mp_refused", 43101);
    let refused = SubscribeMessage {
        touser: "mp_refused".into(),
        ..sub
    };
    assert_eq!(errcode(e.mp.subscribe_send(&refused).await), 43101);

    let code =
        e.mp.get_wxacode_unlimit(&WxaCodeUnlimit {
            scene: "a=12&t=abcdef".into(),
            page: Some("pages/checkin/index".into()),
            width: Some(430),
            ..WxaCodeUnlimit::default()
        })
        .await
        .unwrap();
    assert_eq!(code.content_type, "image/png");
    assert!(code.bytes.starts_with(b"\x89PNG"));
    let too_long = WxaCodeUnlimit {
        scene: "x".repeat(33),
        ..WxaCodeUnlimit::default()
    };
    assert_eq!(errcode(e.mp.get_wxacode_unlimit(&too_long).await), 40169);

    // An official-account token is refused by mini-program APIs.
    assert_eq!(errcode(e.oa.msg_sec_check(&check("x")).await), 48001);
}

// ---- access token: single flight, invalidation, refresh ahead ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_times_100_concurrent_calls_fetch_the_token_once() {
    let e = env().await;
    let replica_a = e.oa.clone();
    let replica_b = Client::new(oa_config(&e.fake, &e.server.base_url), e.store.clone()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..100 {
        for c in [&replica_a, &replica_b] {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                c.custom_send(&CustomMessage::text(format!("oUser{i}"), "hi"))
                    .await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(e.fake.token_fetches(), 1);
    assert_eq!(e.fake.count_calls(api::CUSTOM_SEND), 200);

    // WeChat rejects the token once: exactly one more fetch, and the call still succeeds.
    e.fake.inject(api::CUSTOM_SEND, Fault::Errcode(40001), 1);
    replica_b
        .custom_send(&CustomMessage::text("oUser1", "again"))
        .await
        .unwrap();
    assert_eq!(e.fake.token_fetches(), 2);
    assert_eq!(e.fake.count_calls(api::CUSTOM_SEND), 202);

    // No herd afterwards: replica A keeps its still-valid token, B uses the new one.
    let calls_before = e.fake.count_calls(api::CUSTOM_SEND);
    let mut tasks = Vec::new();
    for i in 0..50 {
        for c in [&replica_a, &replica_b] {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                c.custom_send(&CustomMessage::text(format!("oUser{i}"), "hi"))
                    .await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(e.fake.token_fetches(), 2);
    assert_eq!(e.fake.count_calls(api::CUSTOM_SEND), calls_before + 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_token_seen_by_many_callers_is_refreshed_once() {
    let e = env().await;
    e.oa.menu_delete().await.unwrap();
    e.fake.revoke_tokens();
    let replica_b = Client::new(oa_config(&e.fake, &e.server.base_url), e.store.clone()).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        for c in [&e.oa, &replica_b] {
            let c = c.clone();
            tasks.push(tokio::spawn(async move { c.menu_delete().await }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(e.fake.token_fetches(), 2);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_and_the_call_retried() {
    let e = env().await;
    e.oa.menu_delete().await.unwrap();
    e.fake.expire_tokens();
    e.oa.menu_delete().await.unwrap();
    assert_eq!(e.fake.token_fetches(), 2);
    assert_eq!(
        e.fake.count_calls(api::MENU_DELETE),
        3,
        "first, rejected (42001), retried"
    );
}

#[tokio::test]
async fn a_token_rejected_twice_is_not_retried_forever() {
    let e = env().await;
    e.oa.menu_delete().await.unwrap();
    e.fake.inject(api::MENU_DELETE, Fault::Errcode(40001), 5);
    assert_eq!(errcode(e.oa.menu_delete().await), 40001);
    assert_eq!(e.fake.count_calls(api::MENU_DELETE), 3);
    assert_eq!(e.fake.token_fetches(), 2);
}

#[tokio::test]
async fn the_token_is_refreshed_ahead_of_expiry() {
    let e = env().await;
    // 200 s left is inside the 300 s refresh-ahead window: the next call refreshes, although the
    // token still works.
    e.fake.set_token_expires_in(200);
    e.oa.menu_delete().await.unwrap();
    assert_eq!(e.fake.token_fetches(), 1);
    e.oa.menu_delete().await.unwrap();
    assert_eq!(e.fake.token_fetches(), 2);
    let old = e
        .store
        .load(&e.fake.config().app_id)
        .await
        .unwrap()
        .unwrap();

    // While another process holds the refresh lock, callers keep using the still-valid token.
    let lock = e
        .store
        .try_lock(&e.fake.config().app_id, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let fresh_client =
        Client::new(oa_config(&e.fake, &e.server.base_url), e.store.clone()).unwrap();
    assert_eq!(fresh_client.access_token().await.unwrap(), old.token);
    fresh_client.menu_delete().await.unwrap();
    assert_eq!(e.fake.token_fetches(), 2);
    e.store
        .unlock(&e.fake.config().app_id, &lock)
        .await
        .unwrap();

    // With 7200 s, nothing more is fetched.
    e.fake.set_token_expires_in(7200);
    e.oa.menu_delete().await.unwrap();
    assert_eq!(e.fake.token_fetches(), 3);
    e.oa.menu_delete().await.unwrap();
    assert_eq!(e.fake.token_fetches(), 3);
}

#[tokio::test]
async fn a_replica_without_a_token_waits_for_the_lock_holder() {
    let e = env().await;
    let key = e.fake.config().app_id.clone();
    let lock = e
        .store
        .try_lock(&key, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let waiter = {
        let c = e.oa.clone();
        tokio::spawn(async move { c.access_token().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "no token and the lock is taken: wait"
    );
    assert_eq!(e.fake.token_fetches(), 0);

    // The "other process" fetches and saves.
    let t = e.mp.get_token().await.unwrap(); // any valid token string will do for this check
    let token = wechat::token::AccessToken {
        token: t.access_token.clone(),
        expires_at: i64::MAX / 2,
    };
    e.store.save(&key, &token).await.unwrap();
    e.store.unlock(&key, &lock).await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), t.access_token);
    assert_eq!(e.fake.token_fetches(), 1);
}

// ---- retries ----

#[tokio::test]
async fn system_busy_and_5xx_are_retried_with_backoff() {
    let e = env().await;
    e.oa.menu_delete().await.unwrap();
    e.fake.inject(api::MENU_DELETE, Fault::Errcode(-1), 2);
    e.oa.menu_delete().await.unwrap();
    assert_eq!(e.fake.count_calls(api::MENU_DELETE), 4);

    e.fake.inject(api::CUSTOM_SEND, Fault::Status(500), 1);
    e.fake.inject(api::CUSTOM_SEND, Fault::Status(503), 1);
    e.oa.custom_send(&CustomMessage::text("oUser1", "hi"))
        .await
        .unwrap();
    assert_eq!(e.fake.count_calls(api::CUSTOM_SEND), 3);
    assert_eq!(e.fake.outbox_len(), 1);

    // Bounded: 3 attempts, then the last error.
    e.fake.inject("*", Fault::Errcode(-1), 10);
    assert_eq!(errcode(e.oa.menu_get().await), -1);
    assert_eq!(e.fake.count_calls(api::MENU_GET), 3);
    e.fake.clear_faults();

    e.fake.inject(api::TEMPLATE_LIST, Fault::Status(502), 3);
    assert!(matches!(e.oa.template_list().await, Err(Error::Http(m)) if m.contains("502")));
}

#[tokio::test]
async fn token_fetch_is_retried_too() {
    let e = env().await;
    e.fake.inject(api::TOKEN, Fault::Status(500), 1);
    e.fake.inject(api::TOKEN, Fault::Errcode(-1), 1);
    e.oa.menu_delete().await.unwrap();
    assert_eq!(e.fake.token_fetches(), 3);
}

#[tokio::test]
async fn quota_errors_are_not_retried() {
    let e = env().await;
    e.oa.menu_delete().await.unwrap();
    e.fake.inject(api::TEMPLATE_SEND, Fault::Errcode(45009), 1);
    let msg = TemplateMessage {
        touser: "oUser1".into(),
        template_id: "T".into(),
        ..TemplateMessage::default()
    };
    assert_eq!(errcode(e.oa.template_send(&msg).await), 45009);
    assert_eq!(e.fake.count_calls(api::TEMPLATE_SEND), 1);

    e.fake.inject(api::CUSTOM_SEND, Fault::Errcode(45047), 1);
    assert_eq!(
        errcode(e.oa.custom_send(&CustomMessage::text("oUser1", "x")).await),
        45047
    );
    assert_eq!(e.fake.count_calls(api::CUSTOM_SEND), 1);
    assert_eq!(e.fake.outbox_len(), 0);
}

#[tokio::test]
async fn a_failing_recipient_gets_its_errcode() {
    let e = env().await;
    e.fake.fail_openid("oUnsubscribed", 43004);
    let r =
        e.oa.custom_send(&CustomMessage::text("oUnsubscribed", "hi"))
            .await;
    assert!(matches!(r, Err(Error::Api { errcode: 43004, .. })));
    assert_eq!(e.fake.count_calls(api::CUSTOM_SEND), 1, "not retried");
    e.oa.custom_send(&CustomMessage::text("oOther", "hi"))
        .await
        .unwrap();
    e.fake.unfail_openid("oUnsubscribed");
    e.oa.custom_send(&CustomMessage::text("oUnsubscribed", "hi"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_timed_out_send_is_not_resent_but_a_timed_out_read_is() {
    let e = env().await;
    let mut cfg = oa_config(&e.fake, &e.server.base_url);
    cfg.timeout = Duration::from_millis(150);
    let c = Client::new(cfg, e.store.clone()).unwrap();
    c.menu_delete().await.unwrap();

    e.fake.inject(
        api::CUSTOM_SEND,
        Fault::Latency(Duration::from_millis(400)),
        1,
    );
    let r = c.custom_send(&CustomMessage::text("oUser1", "hi")).await;
    assert!(matches!(r, Err(Error::Http(_))), "{r:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        e.fake.count_calls(api::CUSTOM_SEND),
        1,
        "outcome unknown: not resent"
    );

    e.fake.inject(
        api::TEMPLATE_LIST,
        Fault::Latency(Duration::from_millis(400)),
        1,
    );
    let started = Instant::now();
    assert!(c.template_list().await.unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn connection_refused_is_an_http_error_after_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let cfg = fast(ClientConfig::new(
        format!("http://{addr}"),
        "wxapp",
        "secret",
    ));
    let c = Client::new(cfg, Arc::new(MemoryTokenStore::new())).unwrap();
    let r = c.get_token().await;
    match r {
        Err(Error::Http(m)) => assert!(!m.contains("secret"), "no URL in errors: {m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn recording_can_be_cleared_and_counts_everything() {
    let e = env().await;
    e.oa.menu_delete().await.unwrap();
    assert_eq!(e.fake.calls().len(), 2);
    assert_eq!(e.fake.calls()[0].api, "cgi-bin/token");
    e.fake.clear_calls();
    assert_eq!((e.fake.calls().len(), e.fake.token_fetches()), (0, 0));
    assert_eq!(e.fake.calls_to("/cgi-bin/menu/delete").len(), 0);
}

#[test]
fn client_config_rejects_a_bad_base_url() {
    let c = ClientConfig::new("api.weixin.qq.com", "wx", "s");
    assert!(matches!(
        Client::new(c, Arc::new(MemoryTokenStore::new())),
        Err(Error::Config(_))
    ));
}
