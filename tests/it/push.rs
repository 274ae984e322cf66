//! Pushes end to end against the fake WeChat over HTTP: exactly-once fan-out, transient errors,
//! unsubscribed followers, cancel/pause/resume, scheduling with a manual clock, channel rules,
//! delivery reports, and worker processes killed mid-push.

use dangjian_test_macros::backend_test;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use dangjian::platform::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wechat::{client::api, fake::Fault};

use crate::{
    each_backend,
    helpers::{backends, Backend, Spawn, TestApp, ACCOUNT, ADMIN_PASSWORD, ADMIN_USER},
};

fn push_settings(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = vec![
        ("push_rate_per_second", "0".into()),
        ("push_poll_ms", "20".into()),
        ("push_retry_base_ms", "50".into()),
        ("push_batch_size", "200".into()),
        ("push_concurrency", "32".into()),
        ("push_workers", "4".into()),
    ];
    for (k, val) in extra {
        v.retain(|(key, _)| key != k);
        v.push((k, (*val).to_owned()));
    }
    v
}

fn spawn(extra: &[(&'static str, &str)]) -> Spawn {
    Spawn {
        overrides: push_settings(extra),
        ..Default::default()
    }
}

fn template_recipients(app: &TestApp) -> Vec<String> {
    app.fake
        .outbox()
        .into_iter()
        .filter(|m| m.channel == "template")
        .filter_map(|m| m.to_user)
        .collect()
}

fn assert_no_duplicates(openids: &[String]) {
    let mut seen = HashSet::new();
    for o in openids {
        assert!(seen.insert(o), "{o} was sent twice");
    }
}

#[backend_test]
async fn template_push_to_10k_followers_delivers_each_exactly_once() {
    each_backend!(spawn = spawn(&[]), |app| {
        app.register_template();
        let token = app.admin_token().await;
        let followers = app.seed_followers("f", 10_000, None).await;
        let article = app.article("学习贯彻党的二十届三中全会精神").await;
        let id = app
            .create_push(&token, json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "template", "scheduled_at": null}))
            .await;
        let v = app
            .wait_status(&token, id, "completed", Duration::from_secs(60))
            .await;
        assert_eq!(
            v["counts"],
            json!({"pending": 0, "in_flight": 0, "sent": 10_000, "failed": 0, "unknown": 0, "skipped": 0})
        );
        let sent = template_recipients(&app);
        assert_eq!(sent.len(), 10_000);
        assert_no_duplicates(&sent);
        assert_eq!(
            sent.iter().collect::<HashSet<_>>(),
            followers.iter().collect::<HashSet<_>>()
        );
        // The message as WeChat got it: the configured template, WeChat's limits applied.
        let msg = app
            .fake
            .outbox()
            .into_iter()
            .find(|m| m.channel == "template")
            .unwrap();
        assert_eq!(msg.body["template_id"], "demo-news-template");
        assert_eq!(
            msg.body["data"]["thing1"]["value"],
            "学习贯彻党的二十届三中全会精神"
        );
        assert!(msg.body["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/articles/{article}")));
        // WeChat's msgid is recorded on every row.
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM push_deliveries WHERE push_id = {id} AND msgid IS NOT NULL"
            ))
            .await,
            10_000
        );
        let metrics = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics
                .contains("dangjian_push_sends_total{channel=\"template\",outcome=\"sent\"} 10000"),
            "{metrics}"
        );
        let (status, list) = app
            .admin(&token, reqwest::Method::GET, "/api/admin/pushes", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["pushes"][0]["id"], id);
    });
}

#[backend_test]
async fn transient_errors_are_retried_until_the_push_completes() {
    each_backend!(spawn = spawn(&[]), |app| {
        app.register_template();
        let token = app.admin_token().await;
        let followers = app.seed_followers("t", 2_000, None).await;
        let article = app.article("组织生活会通知").await;
        // More faults than the client's own three attempts absorb: some rows come back to the
        // worker as -1 / 502 and are retried with backoff.
        app.fake.inject(api::TEMPLATE_SEND, Fault::Status(502), 40);
        app.fake.inject(api::TEMPLATE_SEND, Fault::Errcode(-1), 40);
        let id = app.create_push(&token, json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "template"})).await;
        let v = app
            .wait_status(&token, id, "completed", Duration::from_secs(60))
            .await;
        assert_eq!(v["counts"]["sent"], 2_000, "{v}");
        let sent = template_recipients(&app);
        assert_no_duplicates(&sent);
        assert_eq!(sent.len(), followers.len());
    });
}

#[backend_test]
async fn unsubscribed_followers_are_marked_and_skipped() {
    each_backend!(spawn = spawn(&[]), |app| {
        app.register_template();
        let token = app.admin_token().await;
        let followers = app.seed_followers("u", 500, None).await;
        for o in followers.iter().step_by(50) {
            app.fake.fail_openid(o, 43004);
        }
        let article = app.article("主题党日活动").await;
        let id = app.create_push(&token, json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "template"})).await;
        let v = app
            .wait_status(&token, id, "completed", Duration::from_secs(30))
            .await;
        assert_eq!(v["counts"]["skipped"], 10, "{v}");
        assert_eq!(v["counts"]["sent"], 490, "{v}");
        assert_eq!(v["errors_by_code"]["43004"], 10, "{v}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM followers WHERE status = 'unsubscribed'")
                .await,
            10
        );
        assert_eq!(template_recipients(&app).len(), 490);
    });
}

#[backend_test]
async fn pause_stops_sending_resume_finishes_and_cancel_skips_the_rest() {
    // A slow rate so that the push is still running when it is paused.
    each_backend!(
        spawn = spawn(&[("push_rate_per_second", "400"), ("push_batch_size", "20")]),
        |app| {
            app.register_template();
            let token = app.admin_token().await;
            app.seed_followers("p", 1_500, None).await;
            let article = app.article("党费收缴通知").await;
            let id = app.create_push(&token, json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "template"})).await;
            app.wait_for_outbox(100, Duration::from_secs(60)).await;
            let (s, v) = app
                .admin(
                    &token,
                    reqwest::Method::POST,
                    &format!("/api/admin/pushes/{id}/pause"),
                    None,
                )
                .await;
            assert_eq!((s, v["status"].clone()), (StatusCode::OK, json!("paused")));
            // Sends in flight finish; then nothing more goes out.
            let start = Instant::now();
            while app.push(&token, id).await["counts"]["in_flight"] != 0 {
                assert!(start.elapsed() < Duration::from_secs(10));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let at_pause = app.fake.outbox_len();
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert_eq!(app.fake.outbox_len(), at_pause);
            assert!(at_pause < 1_500);
            let (s, _) = app
                .admin(
                    &token,
                    reqwest::Method::POST,
                    &format!("/api/admin/pushes/{id}/pause"),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::CONFLICT);
            let (s, v) = app
                .admin(
                    &token,
                    reqwest::Method::POST,
                    &format!("/api/admin/pushes/{id}/resume"),
                    None,
                )
                .await;
            assert_eq!((s, v["status"].clone()), (StatusCode::OK, json!("running")));
            let v = app.push(&token, id).await;
            assert!(
                v["rate"].as_f64().is_some() && v.get("eta_seconds").is_some(),
                "{v}"
            );
            // Cancel while running: what is pending is skipped, and the push stays cancelled.
            app.wait_for_outbox(at_pause + 100, Duration::from_secs(60))
                .await;
            let (s, v) = app
                .admin(
                    &token,
                    reqwest::Method::POST,
                    &format!("/api/admin/pushes/{id}/cancel"),
                    None,
                )
                .await;
            assert_eq!(
                (s, v["status"].clone()),
                (StatusCode::OK, json!("cancelled")),
                "{v}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            let v = app.push(&token, id).await;
            assert_eq!(v["status"], "cancelled");
            let c = &v["counts"];
            assert_eq!(c["pending"], 0);
            assert_eq!(c["in_flight"], 0);
            assert!(c["skipped"].as_i64().unwrap() > 0, "{v}");
            assert_eq!(
                c["sent"].as_i64().unwrap() + c["skipped"].as_i64().unwrap(),
                1_500,
                "{v}"
            );
            let sent = template_recipients(&app);
            assert_no_duplicates(&sent);
            assert_eq!(sent.len() as i64, c["sent"].as_i64().unwrap());
            // A finished push can't be resumed; audit trail of every action.
            let (s, _) = app
                .admin(
                    &token,
                    reqwest::Method::POST,
                    &format!("/api/admin/pushes/{id}/resume"),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::CONFLICT);
            assert_eq!(
                app.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'push.%'")
                    .await,
                4
            );
        }
    );
}

#[backend_test]
async fn a_scheduled_push_starts_on_time_by_the_app_clock_and_can_be_cancelled_before() {
    for backend in backends() {
        let t0 = time::macros::datetime!(2026-11-02 00:00 UTC);
        let clock = ManualClock::at(t0);
        let mut s = spawn(&[]);
        s.clock = Some(Arc::new(clock.clone()));
        let app = TestApp::spawn_with(&backend, s).await;
        app.register_template();
        let token = app.admin_token().await;
        app.seed_followers("s", 50, None).await;
        let article = app.article("党课预告").await;
        // 09:00 in Asia/Shanghai is 01:00 UTC.
        let body = json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "template", "scheduled_at": "2026-11-02T09:00:00+08:00"});
        let id = app.create_push(&token, body.clone()).await;
        let other = app.create_push(&token, body).await;
        let v = app.push(&token, id).await;
        assert_eq!(v["status"], "scheduled");
        assert_eq!(v["scheduled_at"], 1_793_581_200_000i64);
        let (s, _) = app
            .admin(
                &token,
                reqwest::Method::POST,
                &format!("/api/admin/pushes/{other}/cancel"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        clock.advance(Duration::from_secs(59 * 60));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(app.push(&token, id).await["status"], "scheduled");
        assert_eq!(app.fake.outbox_len(), 0);
        clock.advance(Duration::from_secs(60));
        let v = app
            .wait_status(&token, id, "completed", Duration::from_secs(20))
            .await;
        assert_eq!(v["counts"]["sent"], 50);
        assert_eq!(v["started_at"], 1_793_581_200_000i64);
        assert_eq!(app.push(&token, other).await["status"], "cancelled");
        assert_eq!(template_recipients(&app).len(), 50);
        app.stop().await;
    }
}

#[backend_test]
async fn channel_rules_are_checked_before_anything_is_sent() {
    each_backend!(
        spawn = spawn(&[("wechat_account_type", "subscription")]),
        |app| {
            let token = app.admin_token().await;
            app.seed_followers("r", 3, None).await;
            let article = app.article("通知").await;
            let post = |body: Value| {
                let token = token.clone();
                let app = &app;
                async move {
                    app.admin(
                        &token,
                        reqwest::Method::POST,
                        "/api/admin/pushes",
                        Some(body),
                    )
                    .await
                }
            };
            // Template messages need a service account.
            let (s, v) = post(json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "template"})).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
            assert!(v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("service account"));
            // Mass sends go to all or one tag.
            let (s, _) = post(json!({"article_ids": [article], "audience": {"kind": "members", "ids": [1]}, "channel": "mass"})).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
            // Unknown and unpublished articles, bad times.
            let (s, _) = post(
                json!({"article_ids": [99999], "audience": {"kind": "all"}, "channel": "mass"}),
            )
            .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
            let (s, _) = post(json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "mass", "scheduled_at": "tomorrow"})).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
            let (s, _) = post(json!({"article_ids": [article], "audience": {"kind": "galaxy"}, "channel": "mass"})).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
            // One mass send per day on a subscription account: one API call, not one per follower.
            let (s, v) = post(
                json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "mass"}),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            let id = v["id"].as_i64().unwrap();
            let v = app
                .wait_status(&token, id, "completed", Duration::from_secs(10))
                .await;
            assert_eq!(app.fake.count_calls(api::MASS_SENDALL), 1);
            let msg_id = v["mass_msg_id"].as_i64().unwrap();
            let (s, v) = post(
                json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "mass"}),
            )
            .await;
            assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
            assert_eq!(v["error"]["code"], "quota_exhausted");
            assert_eq!(app.count("SELECT COUNT(*) FROM push_deliveries").await, 0);
            // MASSSENDJOBFINISH fills in WeChat's counts.
            app.post_event(&format!(
            "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[oSystem]]></FromUserName>\
             <CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[MASSSENDJOBFINISH]]></Event>\
             <MsgID>{msg_id}</MsgID><Status><![CDATA[send success]]></Status><TotalCount>3</TotalCount>\
             <FilterCount>3</FilterCount><SentCount>3</SentCount><ErrorCount>0</ErrorCount></xml>"
        ))
        .await;
            let v = app.push(&token, id).await;
            assert_eq!(v["mass_report"]["sent_count"], 3, "{v}");
        }
    );
}

#[backend_test]
async fn custom_messages_go_only_to_followers_active_in_the_last_48_hours() {
    each_backend!(spawn = spawn(&[]), |app| {
        let token = app.admin_token().await;
        let now = app.state.clock.unix_ms();
        let active = app.seed_followers("a", 30, Some(now - 3_600_000)).await;
        app.seed_followers("i", 20, Some(now - 49 * 3_600_000))
            .await;
        app.seed_followers("n", 10, None).await;
        let article = app.article("支部书记讲党课").await;
        let id = app
            .create_push(
                &token,
                json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "custom"}),
            )
            .await;
        let v = app
            .wait_status(&token, id, "completed", Duration::from_secs(20))
            .await;
        assert_eq!(v["counts"]["sent"], 30, "{v}");
        assert_eq!(v["counts"]["skipped"], 30, "{v}");
        assert_eq!(v["errors_by_code"]["outside_48h"], 30, "{v}");
        let to: HashSet<String> = app
            .fake
            .outbox()
            .into_iter()
            .filter(|m| m.channel == "custom")
            .filter_map(|m| m.to_user)
            .collect();
        assert_eq!(to, active.into_iter().collect());
    });
}

#[backend_test]
async fn tag_audiences_template_reports_and_preview() {
    each_backend!(spawn = spawn(&[]), |app| {
        app.register_template();
        let token = app.admin_token().await;
        let followers = app.seed_followers("g", 40, None).await;
        for o in followers.iter().take(10) {
            sqlx::query("INSERT INTO follower_tags (openid, tag_id) VALUES ($1, 100), ($1, 101)")
                .bind(o)
                .execute(app.state.db.pool())
                .await
                .unwrap();
        }
        let article = app.article("先锋模范").await;
        // Preview: what one recipient would get, nothing sent.
        let (s, v) = app
            .admin(
                &token,
                reqwest::Method::POST,
                "/api/admin/pushes/preview",
                Some(json!({"article_ids": [article], "channel": "template", "openid": "oX"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["preview"]["message"]["touser"], "oX");
        assert_eq!(
            v["preview"]["message"]["data"]["thing1"]["value"],
            "先锋模范"
        );
        assert_eq!(app.fake.outbox_len(), 0);
        let id = app.create_push(&token, json!({"article_ids": [article], "audience": {"kind": "tag", "ids": [100, 101]}, "channel": "template"})).await;
        let v = app
            .wait_status(&token, id, "completed", Duration::from_secs(20))
            .await;
        assert_eq!(v["counts"]["sent"], 10, "{v}");
        assert_eq!(v["total"], 10);
        // TEMPLATESENDJOBFINISH: a blocked user turns the row into a failure.
        let msg = app
            .fake
            .outbox()
            .into_iter()
            .find(|m| m.channel == "template")
            .unwrap();
        app.post_event(&format!(
            "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{}]]></FromUserName>\
             <CreateTime>2</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>\
             <MsgID>{}</MsgID><Status><![CDATA[failed:user block]]></Status></xml>",
            msg.to_user.unwrap(),
            msg.msgid
        ))
        .await;
        let v = app.push(&token, id).await;
        assert_eq!(v["counts"]["failed"], 1, "{v}");
        assert_eq!(v["errors_by_code"]["user_block"], 1, "{v}");
        // Without a token nothing is reachable.
        let r = app
            .http
            .get(app.url(&format!("/api/admin/pushes/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    });
}

// ---- worker processes ----

/// A `dangjian worker` child process sharing the test app's database and fake WeChat.
fn start_worker(app: &TestApp, log: &std::path::Path) -> std::process::Child {
    start_worker_with(app, log, &[])
}

/// [`start_worker`] with some `DANGJIAN_*` variables changed.
fn start_worker_with(
    app: &TestApp,
    log: &std::path::Path,
    env: &[(&str, &str)],
) -> std::process::Child {
    let mut cmd = app.dangjian_binary();
    cmd.arg("worker")
        .env("DANGJIAN_ADMIN_USER", ADMIN_USER)
        .env("DANGJIAN_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("DANGJIAN_PUSH_RATE_PER_SECOND", "0")
        .env("DANGJIAN_PUSH_WORKERS", "4")
        .env("DANGJIAN_PUSH_BATCH_SIZE", "100")
        .env("DANGJIAN_PUSH_CONCURRENCY", "16")
        .env("DANGJIAN_PUSH_LEASE_SECS", "2")
        .env("DANGJIAN_PUSH_POLL_MS", "20")
        .env("DANGJIAN_FOLLOWER_SYNC_INTERVAL_HOURS", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start `dangjian worker`")
}

/// The test app creates and watches; only child processes send (push_workers = 0 here).
fn watcher() -> Spawn {
    spawn(&[
        ("push_workers", "0"),
        ("push_lease_secs", "2"),
        ("follower_sync_interval_hours", "0"),
    ])
}

async fn wait_counts(app: &TestApp, token: &str, id: i64, within: Duration) -> Value {
    let start = Instant::now();
    loop {
        let v = app.push(token, id).await;
        if v["status"] == "completed" {
            return v;
        }
        assert!(start.elapsed() < within, "push not completed: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn template_calls_per_openid(app: &TestApp) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for c in app.fake.calls_to(api::TEMPLATE_SEND) {
        *m.entry(c.body["touser"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    m
}

#[backend_test]
async fn a_worker_killed_mid_push_resumes_without_sending_anything_twice() {
    each_backend!(spawn = watcher(), |app| {
        app.register_template();
        let token = app.admin_token().await;
        app.seed_followers("c", 20_000, None).await;
        let article = app.article("关于开展主题教育的通知").await;
        let id = app.create_push(&token, json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "template"})).await;
        let dir = tempfile::tempdir().unwrap();
        let mut first = start_worker(&app, &dir.path().join("worker1.log"));
        let start = Instant::now();
        while app.fake.outbox_len() < 5_000 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the worker sends nothing: {}",
                std::fs::read_to_string(dir.path().join("worker1.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        first.kill().unwrap(); // SIGKILL
        first.wait().unwrap();
        let in_flight_at_kill = app.count(&format!("SELECT COUNT(*) FROM push_deliveries WHERE push_id = {id} AND status = 'in_flight'")).await;
        let sent_at_kill = app.fake.outbox_len();
        eprintln!("killed after {sent_at_kill} sends with {in_flight_at_kill} rows in flight");
        assert!(sent_at_kill < 20_000, "killed too late to test anything");
        assert!(
            in_flight_at_kill > 0,
            "the kill must land while the worker holds leased rows"
        );
        assert!(
            in_flight_at_kill <= 100 * 4,
            "at most a batch per sender is in flight"
        );
        let mut second = start_worker(&app, &dir.path().join("worker2.log"));
        let v = wait_counts(&app, &token, id, Duration::from_secs(120)).await;
        second.kill().unwrap();
        second.wait().unwrap();
        let c = &v["counts"];
        let (sent, unknown) = (c["sent"].as_i64().unwrap(), c["unknown"].as_i64().unwrap());
        assert_eq!(sent + unknown, 20_000, "every row is sent or unknown: {v}");
        assert!(
            unknown <= in_flight_at_kill,
            "unknown {unknown} > in flight at kill {in_flight_at_kill}"
        );
        eprintln!(
            "{unknown} rows unknown, {} resumed and sent",
            in_flight_at_kill - unknown
        );
        // Only sends whose call had started: one group of `push_concurrency` per sender at most.
        assert!(
            unknown <= 16 * 4,
            "unknown {unknown} > concurrency × workers"
        );
        // The fake's log: no recipient got two messages, and none was even called twice.
        let delivered = template_recipients(&app);
        assert_no_duplicates(&delivered);
        assert!(template_calls_per_openid(&app).values().all(|n| *n == 1));
        assert!(delivered.len() as i64 >= sent && delivered.len() as i64 <= sent + unknown);
        assert_eq!(
            v["errors_by_code"]["lease_expired"].as_i64().unwrap_or(0),
            unknown
        );
    });
}

/// Openids of push `id`'s delivery rows in `status`.
async fn openids_in(app: &TestApp, id: i64, status: &str) -> HashSet<String> {
    use sqlx::Row;
    sqlx::query("SELECT openid FROM push_deliveries WHERE push_id = $1 AND status = $2")
        .bind(id)
        .bind(status)
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[backend_test]
async fn a_worker_killed_mid_batch_leaves_only_its_started_sends_unknown() {
    each_backend!(spawn = watcher(), |app| {
        const CONCURRENCY: i64 = 16;
        app.register_template();
        let token = app.admin_token().await;
        app.seed_followers("k", 1_000, None).await;
        // WeChat answers 250 sends, then stalls: calls are received (and delivered) but not answered.
        app.fake
            .inject(api::TEMPLATE_SEND, Fault::Latency(Duration::ZERO), 250);
        app.fake.inject(
            api::TEMPLATE_SEND,
            Fault::Latency(Duration::from_secs(600)),
            1_000,
        );
        let article = app.article("关于召开组织生活会的通知").await;
        let id = app.create_push(&token, json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "template"})).await;
        let dir = tempfile::tempdir().unwrap();
        let concurrency = CONCURRENCY.to_string();
        let mut first = start_worker_with(
            &app,
            &dir.path().join("worker1.log"),
            &[
                ("DANGJIAN_PUSH_WORKERS", "1"),
                ("DANGJIAN_PUSH_CONCURRENCY", &concurrency),
            ],
        );
        let start = Instant::now();
        while app.fake.count_calls(api::TEMPLATE_SEND) <= 250 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the worker never reached the stall"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The sender is stuck in the calls of one group; the rest of its batch is only claimed.
        let in_flight = |sending: bool| {
            format!(
                "SELECT COUNT(*) FROM push_deliveries WHERE push_id = {id} AND status = 'in_flight' AND sending_at IS {} NULL",
                if sending { "NOT" } else { "" }
            )
        };
        let sending_at_kill = app.count(&in_flight(true)).await;
        let claimed_at_kill = app.count(&in_flight(false)).await;
        // Every call of the stalled group has reached WeChat (they start together).
        let recorded = app
            .count(&format!(
                "SELECT COUNT(*) FROM push_deliveries WHERE push_id = {id} AND status = 'sent'"
            ))
            .await;
        while app.fake.count_calls(api::TEMPLATE_SEND) < (recorded + sending_at_kill) as usize {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the group's calls never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        first.kill().unwrap(); // SIGKILL, with sends in flight
        first.wait().unwrap();
        assert!(
            (1..=CONCURRENCY).contains(&sending_at_kill),
            "killed with {sending_at_kill} sends in flight"
        );
        assert!(
            claimed_at_kill > 0,
            "the kill must leave claimed rows never sent"
        );
        let attempted_before: HashSet<String> =
            template_calls_per_openid(&app).into_keys().collect();
        assert!(attempted_before.len() < 1_000);
        app.fake.clear_faults();

        let mut second = start_worker(&app, &dir.path().join("worker2.log"));
        let v = wait_counts(&app, &token, id, Duration::from_secs(120)).await;
        second.kill().unwrap();
        second.wait().unwrap();
        let c = &v["counts"];
        let (sent, unknown) = (c["sent"].as_i64().unwrap(), c["unknown"].as_i64().unwrap());
        assert_eq!(sent + unknown, 1_000, "every row is sent or unknown: {v}");
        // `unknown` is exactly the group whose calls had started, at most the concurrency.
        assert_eq!(unknown, sending_at_kill, "{v}");
        assert!(unknown <= CONCURRENCY, "{v}");
        assert_eq!(v["errors_by_code"]["lease_expired"], unknown, "{v}");
        let unknown_rows = openids_in(&app, id, "unknown").await;
        assert!(
            unknown_rows.is_subset(&attempted_before),
            "an `unknown` row was never attempted"
        );
        // Every recipient was called exactly once: the claimed rows and the rest of the push went
        // out from the second worker, nothing was sent twice.
        let calls = template_calls_per_openid(&app);
        assert_eq!(calls.len(), 1_000);
        assert!(
            calls.values().all(|n| *n == 1),
            "a recipient was called twice"
        );
        let sent_rows = openids_in(&app, id, "sent").await;
        assert_eq!(sent_rows.len() as i64, sent);
        assert!(calls
            .keys()
            .filter(|o| !attempted_before.contains(*o))
            .all(|o| sent_rows.contains(o)));
        assert_no_duplicates(&template_recipients(&app));
    });
}

#[backend_test(postgres)]
async fn two_worker_processes_on_postgres_share_one_push_without_duplicates() {
    for backend in backends() {
        if !matches!(backend, Backend::Postgres { .. }) {
            continue;
        }
        let app = TestApp::spawn_with(&backend, watcher()).await;
        app.register_template();
        let token = app.admin_token().await;
        app.seed_followers("w", 20_000, None).await;
        let article = app.article("两个进程共同发送").await;
        let id = app.create_push(&token, json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "template"})).await;
        let dir = tempfile::tempdir().unwrap();
        let mut a = start_worker(&app, &dir.path().join("a.log"));
        let mut b = start_worker(&app, &dir.path().join("b.log"));
        let v = wait_counts(&app, &token, id, Duration::from_secs(120)).await;
        for child in [&mut a, &mut b] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        assert_eq!(v["counts"]["sent"], 20_000, "{v}");
        let delivered = template_recipients(&app);
        assert_eq!(delivered.len(), 20_000);
        assert_no_duplicates(&delivered);
        // Both processes took part (worker ids start with the process id).
        let processes = app
            .count(&format!(
                "SELECT COUNT(DISTINCT SPLIT_PART(worker_id, '-', 1)) FROM push_deliveries WHERE push_id = {id}"
            ))
            .await;
        assert_eq!(processes, 2);
        app.stop().await;
    }
}
