//! Issue 15 §1: faults injected by the tests themselves. A [`FaultProxy`] between the app and
//! Redis, PostgreSQL or the fake WeChat cuts, resets, stalls or slows connections on demand; the
//! fake's own knobs answer 5xx, garbage or too late; `dangjian` processes are killed with
//! SIGKILL. Each test proves what the README's "When something fails" table promises.

use dangjian_test_macros::backend_test;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures_util::{stream, StreamExt};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sqlx::Row;
use wechat::{
    client::api,
    fake::{Fault, NotificationTamper},
};

use crate::helpers::{
    backends, event_xml, field, now, random_suffix, text_xml, Backend, FaultProxy, Spawn, TestApp,
    ADMIN_PASSWORD, ADMIN_USER,
};

fn spawn_with(overrides: Vec<(&'static str, String)>) -> Spawn {
    Spawn {
        overrides,
        ..Default::default()
    }
}

/// Poll `check` every 50 ms until it returns Some, or panic with `what` after `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A response in the one error shape: (status, code).
async fn error_of(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let v: Value = resp.json().await.expect("the one error shape");
    assert!(v["error"]["message"].is_string(), "{v}");
    (
        status,
        v["error"]["code"].as_str().expect("code").to_owned(),
    )
}

// ---- Redis ------------------------------------------------------------------------------------

/// The app with its cache behind a [`FaultProxy`] to the CI Redis: (app, proxy, key prefix).
async fn spawn_behind_redis_proxy(
    backend: &Backend,
    extra: Vec<(&'static str, String)>,
) -> Option<(TestApp, FaultProxy, String)> {
    let Ok(redis_url) = std::env::var("DANGJIAN_TEST_REDIS_URL") else {
        eprintln!(
            "{}: DANGJIAN_TEST_REDIS_URL unset; no Redis to take away",
            backend.name()
        );
        return None;
    };
    let proxy = FaultProxy::start(&FaultProxy::target_of(&redis_url)).await;
    let prefix = format!("dj_test:{}:", random_suffix());
    let mut overrides = vec![
        ("redis_url", proxy.url_for(&redis_url)),
        ("redis_prefix", prefix.clone()),
    ];
    overrides.extend(extra);
    let app = TestApp::spawn_with(backend, spawn_with(overrides)).await;
    assert_eq!(app.state.cache.kind(), "redis");
    Some((app, proxy, prefix))
}

async fn redis_get(key: &str) -> Option<String> {
    let url = std::env::var("DANGJIAN_TEST_REDIS_URL").unwrap();
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

#[backend_test(postgres)]
async fn redis_down_does_not_take_the_webhook_down_and_it_recovers() {
    for backend in backends() {
        let Some((app, proxy, prefix)) = spawn_behind_redis_proxy(&backend, vec![]).await else {
            continue;
        };
        let before = event_xml("o_before", "subscribe", "", now());
        let first = TestApp::wechat_reply(app.wechat_post(&before).await).await;

        for fault in ["cut", "blackhole"] {
            match fault {
                "cut" => proxy.cut(),
                _ => proxy.blackhole(),
            }
            let openid = format!("o_during_{fault}");
            let xml = event_xml(&openid, "subscribe", "", now());
            let (path, body) = app.wechat_request(&xml);
            let send = || app.http.post(app.url(&path)).body(body.clone()).send();
            let reply = TestApp::wechat_reply(send().await.unwrap()).await;
            assert!(
                field(&reply, "Content").unwrap().contains("欢迎关注"),
                "{fault}: answered without Redis"
            );
            // WeChat's retries are still de-duplicated, in process.
            let (a, b) = tokio::join!(send(), send());
            assert_eq!(TestApp::wechat_reply(a.unwrap()).await, reply);
            assert_eq!(TestApp::wechat_reply(b.unwrap()).await, reply);
            assert_eq!(
                app.count(&format!(
                    "SELECT COUNT(*) FROM followers WHERE openid = '{openid}'"
                ))
                .await,
                1,
                "{fault}: one side effect"
            );
            // A retry of a message answered just before the outage still gets that answer.
            assert_eq!(
                TestApp::wechat_reply(app.wechat_post(&before).await).await,
                first
            );
            // Mini-program sessions live in Redis: a clear 503, not a hang or a 500.
            let r = app.mp_login_response("code_outage").await;
            assert_eq!(
                error_of(r).await,
                (StatusCode::SERVICE_UNAVAILABLE, "cache_unavailable".into()),
                "{fault}"
            );
        }
        let metrics = app.metrics_text().await;
        assert!(
            metrics.contains("dangjian_cache_fallbacks_total{component=\"dedup\"}"),
            "{metrics}"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM followers WHERE openid = 'o_before'")
                .await,
            1
        );

        // Redis returns: de-duplication goes back to it (the claim is in Redis again).
        proxy.restore();
        let mut recovered = false;
        for msg_id in 4000..4100 {
            let after = text_xml("o_after", "帮助", msg_id);
            let key = format!("{prefix}dedup:o_after:{msg_id}");
            let r = app.wechat_post(&after).await;
            assert_eq!(r.status(), StatusCode::OK);
            if redis_get(&key).await.is_some() {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "{}: back on Redis", backend.name());
        assert_eq!(
            app.mp_login_response("code_after").await.status(),
            StatusCode::OK
        );
        app.stop().await;
    }
}

#[backend_test(postgres)]
async fn redis_down_keeps_rate_limits_in_process_instead_of_open() {
    for backend in backends() {
        let Some((app, proxy, _)) =
            spawn_behind_redis_proxy(&backend, vec![("rate_limit_mp_per_minute", "3".into())])
                .await
        else {
            continue;
        };
        proxy.cut();
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(
                app.http
                    .get(app.url("/api/mp/articles"))
                    .send()
                    .await
                    .unwrap()
                    .status(),
            );
        }
        assert_eq!(
            statuses.last().copied(),
            Some(StatusCode::TOO_MANY_REQUESTS),
            "{}: {statuses:?}",
            backend.name()
        );
        assert!(app
            .metrics_text()
            .await
            .contains("dangjian_cache_fallbacks_total{component=\"rate_limit\"}"));
        app.stop().await;
    }
}

/// One webhook delivery of the load test and how it was first answered.
struct Delivery {
    openid: String,
    subscribe: bool,
    path: String,
    body: String,
}

/// WeChat's budget for an answer.
const WECHAT_BUDGET: Duration = Duration::from_secs(5);

/// POST one delivery; panics unless 200 within the budget. Returns the clear reply.
async fn deliver(app: &TestApp, d: &Delivery) -> String {
    let started = Instant::now();
    let r = app
        .http
        .post(app.url(&d.path))
        .body(d.body.clone())
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(status, StatusCode::OK, "{}: no 5xx, ever", d.openid);
    let reply = TestApp::wechat_reply(r).await;
    let took = started.elapsed();
    assert!(
        took < WECHAT_BUDGET,
        "{}: answered after {took:?}, beyond WeChat's budget",
        d.openid
    );
    reply
}

#[backend_test(postgres)]
async fn redis_cut_under_webhook_load_answers_every_message_in_time_and_once() {
    for backend in backends() {
        let Some((app, proxy, prefix)) = spawn_behind_redis_proxy(&backend, vec![]).await else {
            continue;
        };
        const N: usize = 300;
        // Half subscriptions (a follower row each: a side effect to count), half text messages
        // with a MsgId (de-duplicated by it).
        let deliveries: Vec<Delivery> = (0..N)
            .map(|i| {
                let openid = format!("o_load{i:04}");
                let subscribe = i % 2 == 0;
                let xml = if subscribe {
                    event_xml(&openid, "subscribe", "", now())
                } else {
                    text_xml(&openid, "帮助", 7_000_000 + i as i64)
                };
                let (path, body) = app.wechat_request(&xml);
                Delivery {
                    openid,
                    subscribe,
                    path,
                    body,
                }
            })
            .collect();
        // A third answered with Redis, then Redis is cut (connections closed, new ones refused),
        // then it hangs (connections stall, nothing answers), while 48 deliveries are in flight.
        let done = Arc::new(AtomicUsize::new(0));
        let faults = {
            let done = done.clone();
            let proxy = &proxy;
            async move {
                let wait_for = |n: usize| {
                    let done = done.clone();
                    async move {
                        while done.load(Ordering::SeqCst) < n {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                };
                wait_for(N / 3).await;
                proxy.cut();
                wait_for(2 * N / 3).await;
                proxy.blackhole();
            }
        };
        let load = stream::iter(deliveries.iter())
            .map(|d| {
                let (app, done) = (&app, done.clone());
                async move {
                    let reply = deliver(app, d).await;
                    done.fetch_add(1, Ordering::SeqCst);
                    (d.openid.clone(), reply)
                }
            })
            .buffer_unordered(48)
            .collect::<Vec<_>>();
        let (first, ()) = tokio::time::timeout(Duration::from_secs(90), async {
            tokio::join!(load, faults)
        })
        .await
        .expect("the load finished");
        let first: HashMap<String, String> = first.into_iter().collect();
        let metrics = app.metrics_text().await;
        assert!(
            metrics.contains("dangjian_cache_fallbacks_total{component=\"dedup\"}"),
            "the outage was felt: {metrics}"
        );
        // WeChat retries every message across the outage: during it, then after Redis is back.
        for phase in ["during", "after"] {
            if phase == "after" {
                proxy.restore();
            }
            let replays = stream::iter(deliveries.iter())
                .map(|d| {
                    let app = &app;
                    async move { (d.openid.clone(), deliver(app, d).await) }
                })
                .buffer_unordered(48)
                .collect::<Vec<_>>()
                .await;
            for (openid, reply) in replays {
                assert_eq!(
                    reply, first[&openid],
                    "{openid}: a retry {phase} the outage gets the first reply again"
                );
            }
        }
        // One side effect per message, and each message answered once: by its passive reply, or
        // (past the budget) by one customer-service message, never both.
        // (The event log, not `followers`: a row there is an upsert that would hide a second
        // handling, and the interactions flush adds rows for the text senders once a second.)
        assert_eq!(
            app.count("SELECT COUNT(*) FROM follower_events WHERE openid LIKE 'o_load%'")
                .await,
            (N / 2) as i64
        );
        let mut custom: HashMap<String, usize> = HashMap::new();
        for m in app.fake.outbox() {
            if let Some(to) = m.to_user {
                *custom.entry(to).or_default() += 1;
            }
        }
        for d in &deliveries {
            let reply = &first[&d.openid];
            let passive = usize::from(reply != "success");
            let sent = custom.get(&d.openid).copied().unwrap_or(0);
            assert_eq!(
                passive + sent,
                1,
                "{}: answered exactly once (reply {reply:?}, {sent} sends)",
                d.openid
            );
            if passive == 1 && d.subscribe {
                assert!(field(reply, "Content").unwrap().contains("欢迎关注"));
            }
        }
        // Back on Redis: a new message's claim is in Redis again.
        let key_of = |msg_id: i64| format!("{prefix}dedup:o_back:{msg_id}");
        let mut msg_id = 7_900_000;
        eventually(
            "de-duplication back on Redis",
            Duration::from_secs(15),
            || {
                msg_id += 1;
                let (app, key) = (&app, key_of(msg_id));
                let xml = text_xml("o_back", "帮助", msg_id);
                async move {
                    let r = app.wechat_post(&xml).await;
                    assert_eq!(r.status(), StatusCode::OK);
                    redis_get(&key).await.map(|_| ())
                }
            },
        )
        .await;
        assert_eq!(
            app.mp_login_response("code_back").await.status(),
            StatusCode::OK
        );
        app.stop().await;
    }
}

// ---- PostgreSQL -------------------------------------------------------------------------------

/// The app with its database behind a [`FaultProxy`] in front of the CI PostgreSQL (the per-test
/// database is created through it, so its name is unchanged), with a short acquire timeout and
/// request timeout. Panics unless on PostgreSQL.
async fn spawn_behind_pg_proxy(
    backend: &Backend,
    extra: Vec<(&'static str, String)>,
) -> (TestApp, FaultProxy) {
    let Backend::Postgres {
        admin_url,
        redis_url,
    } = backend
    else {
        panic!("PostgreSQL only");
    };
    let proxy = FaultProxy::start(&FaultProxy::target_of(admin_url)).await;
    let proxied = Backend::Postgres {
        admin_url: proxy.url_for(admin_url),
        redis_url: redis_url.clone(),
    };
    let mut overrides = vec![
        (
            "database_acquire_timeout_ms",
            ACQUIRE_TIMEOUT_MS.to_string(),
        ),
        ("request_timeout_secs", REQUEST_TIMEOUT_SECS.to_string()),
        ("rate_limit_mp_per_minute", "1000000".into()),
    ];
    overrides.extend(extra);
    let app = TestApp::spawn_with(&proxied, spawn_with(overrides)).await;
    (app, proxy)
}

const ACQUIRE_TIMEOUT_MS: u64 = 1500;
const REQUEST_TIMEOUT_SECS: u64 = 4;

/// RFC 3339 at +08:00, `minutes` from now, whole seconds.
fn from_now(minutes: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
    t.to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap())
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// What one write answered: a success, or the one error shape.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
    took: Duration,
}

async fn timed(req: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let r = req.send().await.expect("an answer, not a hang");
    let status = r.status();
    let body = r.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        body,
        took: started.elapsed(),
    }
}

/// An answer while the database is away: 503 `database_unavailable` (or, for a request whose
/// connection hung mid-query, 503 `request_timeout`), in the one shape, within `within`.
fn assert_unavailable(a: &Answer, within: Duration, what: &str) {
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {a:?}");
    let code = a.body["error"]["code"].as_str().unwrap_or_default();
    assert!(
        code == "database_unavailable" || code == "request_timeout",
        "{what}: {a:?}"
    );
    assert!(a.body["error"]["message"].is_string(), "{what}: {a:?}");
    assert_eq!(
        a.body.as_object().map(|o| o.len()),
        Some(1),
        "{what}: {a:?}"
    );
    assert!(a.took < within, "{what}: answered after {:?}", a.took);
}

#[backend_test(postgres)]
async fn postgres_cut_during_writes_fails_cleanly_and_the_pool_recovers_without_half_rows() {
    for backend in backends() {
        let (app, proxy) = spawn_behind_pg_proxy(&backend, vec![]).await;
        let admin = app.admin_token().await;
        let unit = app.create_org_unit("断线测试支部", None).await;
        let members = app.seed_bound_members("pgcut", 120, unit).await;
        let mut tokens = Vec::new();
        for (id, openid) in &members {
            tokens.push((*id, app.mp_session_token(openid, Some(*id)).await));
        }
        let (status, v) = app
            .call(
                Method::POST,
                &app.base,
                "/api/admin/activities",
                &admin,
                Some(json!({
                    "title": "断线演练", "capacity": 40, "location": "报告厅",
                    "signup_opens_at": from_now(-60), "signup_closes_at": from_now(120),
                    "starts_at": from_now(180), "ends_at": from_now(300),
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        let activity = v["id"].as_i64().unwrap();
        let signup = |token: &str| {
            app.http
                .post(app.url(&format!("/api/mp/activities/{activity}/signup")))
                .bearer_auth(token)
        };
        let create_unit = |name: String| {
            app.http
                .post(app.url("/api/admin/org-units"))
                .bearer_auth(&admin)
                .json(&json!({"name": name, "parent": null}))
        };
        // A bound on any answer while the database is away: the request timeout, plus slack.
        let bound = Duration::from_secs(REQUEST_TIMEOUT_SECS + 3);

        // Writes in flight (sign-ups and admin creates, 32 at a time) when every connection is
        // cut: each succeeds or fails cleanly, none hangs, none is a 500.
        let done = Arc::new(AtomicUsize::new(0));
        let cut_after = 30;
        let cutter = {
            let (done, proxy) = (done.clone(), &proxy);
            async move {
                while done.load(Ordering::SeqCst) < cut_after {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                proxy.cut();
            }
        };
        enum Write {
            Signup(i64),
            Unit(String),
        }
        let writes: Vec<(Write, reqwest::RequestBuilder)> = tokens
            .iter()
            .take(100)
            .enumerate()
            .flat_map(|(i, (id, token))| {
                let mut v = vec![(Write::Signup(*id), signup(token))];
                if i % 5 == 0 {
                    let name = format!("断线新建{i:03}");
                    v.push((Write::Unit(name.clone()), create_unit(name)));
                }
                v
            })
            .collect();
        let load = stream::iter(writes)
            .map(|(w, req)| {
                let done = done.clone();
                async move {
                    let a = timed(req).await;
                    done.fetch_add(1, Ordering::SeqCst);
                    (w, a)
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>();
        let (answers, ()) = tokio::join!(load, cutter);
        let mut signed_up = HashSet::new();
        let mut failed_signups = Vec::new();
        let (mut units_created, mut units_failed) = (HashSet::new(), HashSet::new());
        for (w, a) in &answers {
            match (w, a.status) {
                (Write::Signup(id), StatusCode::OK) => {
                    signed_up.insert(*id);
                }
                (Write::Unit(name), StatusCode::CREATED) => {
                    units_created.insert(name.clone());
                }
                (w, _) => {
                    assert_unavailable(a, bound, "a write while the database is cut");
                    match w {
                        Write::Signup(id) => failed_signups.push(*id),
                        Write::Unit(name) => {
                            units_failed.insert(name.clone());
                        }
                    }
                }
            }
        }
        eprintln!(
            "cut mid-load: {} sign-ups and {} creates succeeded, {} and {} failed cleanly",
            signed_up.len(),
            units_created.len(),
            failed_signups.len(),
            units_failed.len()
        );
        assert!(
            signed_up.len() >= cut_after / 2,
            "the load ran before the cut"
        );
        assert!(!failed_signups.is_empty(), "the cut landed during the load");

        // While cut: a write fails within the acquire timeout, reads too.
        for _ in 0..3 {
            let a = timed(signup(&tokens[110].1)).await;
            assert_unavailable(
                &a,
                Duration::from_millis(ACQUIRE_TIMEOUT_MS + 2000),
                "a sign-up while cut",
            );
            let a = timed(
                app.http
                    .get(app.url("/api/admin/org-units"))
                    .bearer_auth(&admin),
            )
            .await;
            assert_unavailable(
                &a,
                Duration::from_millis(ACQUIRE_TIMEOUT_MS + 2000),
                "a read while cut",
            );
        }
        assert!(app.metrics_text().await.contains("status=\"503\""));
        // The load balancer's readiness check says which dependency is missing.
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let ready: Value = r.json().await.unwrap();
        assert_eq!(ready["database"], "unavailable", "{ready}");

        // Restored: the same app (no restart) answers again, and every member whose sign-up
        // failed signs up now.
        proxy.restore();
        eventually("the pool recovers", Duration::from_secs(20), || {
            let req = app
                .http
                .get(app.url("/api/admin/org-units"))
                .bearer_auth(&admin);
            async move { (req.send().await.unwrap().status() == StatusCode::OK).then_some(()) }
        })
        .await;
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "ready again");
        for id in &failed_signups {
            let token = &tokens.iter().find(|(m, _)| m == id).unwrap().1;
            let a = timed(signup(token)).await;
            // A first try can have committed with its answer lost in the cut: then the member
            // already holds the place (counted once below), and the retry says so.
            let answer_was_lost =
                a.status == StatusCode::CONFLICT && a.body["error"]["code"] == "already_signed_up";
            assert!(a.status == StatusCode::OK || answer_was_lost, "{a:?}");
            signed_up.insert(*id);
        }

        // No half-written rows: every counter agrees with its rows, each member holds one place,
        // and an org unit exists only if its create succeeded or its answer was lost in the cut.
        let row = sqlx::query(
            "SELECT confirmed_count, waitlisted_count, signup_seq FROM activities WHERE id = $1",
        )
        .bind(activity)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
        let (confirmed, waitlisted, seq): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let rows = |status: &'static str| {
            let sql = format!(
                "SELECT COUNT(*) FROM activity_signups WHERE activity_id = {activity} AND status = '{status}'"
            );
            let app = &app;
            async move { app.count(&sql).await }
        };
        assert_eq!(confirmed, rows("confirmed").await, "confirmed_count");
        assert_eq!(waitlisted, rows("waitlisted").await, "waitlisted_count");
        assert_eq!(confirmed, 40);
        assert_eq!(confirmed + waitlisted, signed_up.len() as i64);
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(DISTINCT member_id) FROM activity_signups WHERE activity_id = {activity} AND status <> 'cancelled'"
            ))
            .await,
            signed_up.len() as i64,
            "one place per member"
        );
        assert!(
            seq >= signed_up.len() as i64,
            "the sequence counter covers every sign-up"
        );
        let units: HashSet<String> =
            sqlx::query("SELECT name FROM org_units WHERE name LIKE '断线新建%'")
                .fetch_all(app.state.db.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
        assert!(units_created.is_subset(&units), "every 201 is there");
        assert!(
            units
                .iter()
                .all(|u| units_created.contains(u) || units_failed.contains(u)),
            "nothing unasked for: {units:?}"
        );
        // The audit log has exactly one entry per org unit that exists.
        for u in &units {
            assert_eq!(
                app.count(&format!(
                    "SELECT COUNT(*) FROM audit_log WHERE action = 'org_unit.create' AND details LIKE '%{u}%'"
                ))
                .await,
                1,
                "{u}: its audit entry, once"
            );
        }
        app.stop().await;
    }
}

#[backend_test(postgres)]
async fn postgres_blackholed_fails_requests_within_the_acquire_timeout_and_recovers() {
    for backend in backends() {
        let (app, proxy) = spawn_behind_pg_proxy(&backend, vec![]).await;
        let admin = app.admin_token().await;
        let list = || {
            app.http
                .get(app.url("/api/admin/org-units"))
                .bearer_auth(&admin)
        };
        let create = |name: &str| {
            app.http
                .post(app.url("/api/admin/org-units"))
                .bearer_auth(&admin)
                .json(&json!({"name": name, "parent": null}))
        };
        assert_eq!(timed(list()).await.status, StatusCode::OK);

        // Open connections stall and new ones are never answered: a hung server, a partition.
        proxy.blackhole();
        let answers = stream::iter(0..12)
            .map(|i| {
                let req = if i % 2 == 0 {
                    list()
                } else {
                    create(&format!("黑洞{i}"))
                };
                timed(req)
            })
            .buffer_unordered(12)
            .collect::<Vec<_>>()
            .await;
        for a in &answers {
            assert_unavailable(
                a,
                Duration::from_secs(REQUEST_TIMEOUT_SECS + 2),
                "a request while PostgreSQL hangs",
            );
        }
        // Once the stalled connections are gone, it is the acquire timeout that answers.
        proxy.reset();
        let a = timed(list()).await;
        assert_eq!(a.body["error"]["code"], "database_unavailable", "{a:?}");
        assert!(
            a.took < Duration::from_millis(ACQUIRE_TIMEOUT_MS + 1500),
            "bounded by the acquire timeout: {:?}",
            a.took
        );

        proxy.restore();
        eventually("the pool recovers", Duration::from_secs(20), || {
            let req = create("黑洞之后");
            async move { (req.send().await.unwrap().status() == StatusCode::CREATED).then_some(()) }
        })
        .await;
        // Creates refused while hung left no rows; the one after is there once.
        assert!(
            app.count(
                "SELECT COUNT(*) FROM org_units WHERE name LIKE '黑洞%' AND name <> '黑洞之后'"
            )
            .await
                <= 6
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM org_units WHERE name = '黑洞之后'")
                .await,
            1
        );
        app.stop().await;
    }
}

// ---- WeChat -----------------------------------------------------------------------------------

fn push_overrides(extra: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = vec![
        ("push_rate_per_second", "0".into()),
        ("push_poll_ms", "20".into()),
        ("push_retry_base_ms", "50".into()),
        ("push_batch_size", "50".into()),
        ("push_concurrency", "8".into()),
        ("push_workers", "2".into()),
        ("follower_sync_interval_hours", "0".into()),
    ];
    for (k, val) in extra {
        v.retain(|(key, _)| *key != k);
        v.push((k, val));
    }
    v
}

/// Create a template push to every follower and wait (bounded) until it is completed.
async fn push_and_finish(app: &TestApp, within: Duration) -> (i64, Value) {
    let token = app.admin_token().await;
    let article = app.article("故障演练通知").await;
    let id = app
        .create_push(
            &token,
            json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "template"}),
        )
        .await;
    let v = app.wait_status(&token, id, "completed", within).await;
    (id, v)
}

/// Template messages the fake delivered, by recipient.
fn delivered(app: &TestApp) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for msg in app.fake.outbox() {
        if msg.channel == "template" {
            *m.entry(msg.to_user.unwrap_or_default()).or_insert(0) += 1;
        }
    }
    m
}

fn template_calls(app: &TestApp) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for c in app.fake.calls_to(api::TEMPLATE_SEND) {
        *m.entry(c.body["touser"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    m
}

/// Every recipient in a final state; `sent` ones delivered exactly once; nobody twice.
async fn assert_clear_states(app: &TestApp, id: i64, v: &Value, followers: &[String]) {
    let c = &v["counts"];
    assert_eq!(c["pending"], 0, "{v}");
    assert_eq!(c["in_flight"], 0, "{v}");
    let total: i64 = ["sent", "failed", "unknown", "skipped"]
        .iter()
        .map(|k| c[*k].as_i64().unwrap())
        .sum();
    assert_eq!(
        total,
        followers.len() as i64,
        "every recipient accounted: {v}"
    );
    let got = delivered(app);
    assert!(
        got.values().all(|n| *n == 1),
        "nothing delivered twice: {:?}",
        got.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let sent: HashSet<String> =
        sqlx::query("SELECT openid FROM push_deliveries WHERE push_id = $1 AND status = 'sent'")
            .bind(id)
            .fetch_all(app.state.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    for o in &sent {
        assert_eq!(got.get(o), Some(&1), "{o} is sent: delivered once");
    }
}

#[backend_test]
async fn wechat_5xx_and_garbage_are_retried_a_bounded_number_of_times_and_never_resent() {
    crate::each_backend!(spawn = spawn_with(push_overrides(vec![])), |app| {
        app.register_template();
        let followers = app.seed_followers("g", 200, None).await;
        // 30 × 500 and 30 × 502 (gateway errors: nothing was sent, safe to retry), then 5 × a
        // 200 whose body is not JSON (garbage: it may have been sent, so never resent).
        app.fake.inject(api::TEMPLATE_SEND, Fault::Status(500), 30);
        app.fake.inject(api::TEMPLATE_SEND, Fault::Status(502), 30);
        app.fake.inject(api::TEMPLATE_SEND, Fault::Status(200), 5);
        let (id, v) = push_and_finish(&app, Duration::from_secs(60)).await;
        assert_clear_states(&app, id, &v, &followers).await;
        let c = &v["counts"];
        assert_eq!(c["unknown"], 5, "the garbage answers: {v}");
        assert_eq!(v["errors_by_code"]["decode"], 5, "{v}");
        assert_eq!(c["sent"], 195, "{v}");
        assert_eq!(c["failed"], 0, "{v}");
        // Bounded retries: exactly one call per injected fault beyond one per recipient.
        let calls = app.fake.count_calls(api::TEMPLATE_SEND);
        assert_eq!(calls, 200 + 60, "calls: {calls}");
        assert!(
            template_calls(&app).values().all(|n| *n <= 18),
            "at most client attempts × worker attempts per recipient"
        );
        let unknown_delivered = delivered(&app).len();
        assert_eq!(
            unknown_delivered, 195,
            "the garbage ones were not delivered"
        );
        let metrics = app.metrics_text().await;
        assert!(
            metrics.contains("dangjian_push_errors_total{channel=\"template\",code=\"http_5xx\"}")
                || metrics
                    .contains("dangjian_push_sends_total{channel=\"template\",outcome=\"retry\"}"),
            "{metrics}"
        );
        assert!(
            metrics
                .contains("dangjian_push_sends_total{channel=\"template\",outcome=\"unknown\"} 5"),
            "{metrics}"
        );
    });
}

#[backend_test]
async fn wechat_answering_after_the_client_timeout_leaves_those_unknown_and_sends_nothing_twice() {
    crate::each_backend!(spawn = spawn_with(push_overrides(vec![])), |app| {
        app.register_template();
        let followers = app.seed_followers("s", 60, None).await;
        // Four calls are handled (delivered) but answered after the client's 10 s timeout.
        app.fake.inject(
            api::TEMPLATE_SEND,
            Fault::Latency(Duration::from_secs(11)),
            4,
        );
        let started = Instant::now();
        let (id, v) = push_and_finish(&app, Duration::from_secs(60)).await;
        eprintln!("completed in {:?}", started.elapsed());
        assert_clear_states(&app, id, &v, &followers).await;
        assert_eq!(v["counts"]["unknown"], 4, "{v}");
        assert_eq!(v["counts"]["sent"], 56, "{v}");
        // A send that timed out is never resent: one call per recipient, and the four slow ones
        // reached their recipients exactly once.
        assert!(template_calls(&app).values().all(|n| *n == 1));
        assert_eq!(app.fake.count_calls(api::TEMPLATE_SEND), 60);
        assert_eq!(delivered(&app).len(), 60);
    });
}

#[backend_test]
async fn wechat_connections_reset_mid_push_end_every_recipient_in_a_clear_state() {
    for backend in backends() {
        // The app talks to the fake through a proxy (retargeted once the fake's port is known).
        let proxy = FaultProxy::start("127.0.0.1:9").await;
        let app = TestApp::spawn_with(
            &backend,
            spawn_with(push_overrides(vec![(
                "wechat_api_base",
                format!("http://{}", proxy.addr),
            )])),
        )
        .await;
        proxy.retarget(&FaultProxy::target_of(&app.fake_base()));
        app.register_template();
        let followers = app.seed_followers("r", 400, None).await;
        // Slow enough that sends are in flight whenever the connections are reset.
        proxy.slow(Duration::from_millis(20));
        let token = app.admin_token().await;
        let article = app.article("连接重置演练").await;
        let id = app
            .create_push(
                &token,
                json!({"article_ids": [article], "audience": {"kind": "all"}, "channel": "template"}),
            )
            .await;
        eventually("sends start", Duration::from_secs(30), || {
            let n = app.fake.outbox_len();
            async move { (n >= 40).then_some(()) }
        })
        .await;
        for _ in 0..3 {
            proxy.reset();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        proxy.restore();
        let v = app
            .wait_status(&token, id, "completed", Duration::from_secs(60))
            .await;
        assert_clear_states(&app, id, &v, &followers).await;
        let unknown = v["counts"]["unknown"].as_i64().unwrap();
        eprintln!("after 3 resets: {v}");
        assert!(unknown >= 1, "a reset landed on a send in flight: {v}");
        assert!(
            unknown <= 3 * 8 * 2,
            "at most the sends in flight at each reset: {unknown}"
        );
        assert_eq!(v["counts"]["failed"], 0, "{v}");
        // Nobody got it twice; nobody whose send was unknown was called again.
        assert!(template_calls(&app).values().all(|n| *n == 1));
        app.stop().await;
    }
}

#[backend_test]
async fn access_token_fetch_failing_is_a_clear_error_and_recovers() {
    crate::each_backend!(|app| {
        let admin = app.admin_token().await;
        let sync = || {
            app.http
                .post(app.url("/api/admin/wechat/menu/sync"))
                .bearer_auth(&admin)
                .send()
        };
        // The token endpoint answers 500, then garbage, then an errcode: each sync is a 502
        // `upstream_error` after a bounded number of token fetches, and nothing was created.
        for fault in [
            Fault::Status(500),
            Fault::Status(200),
            Fault::Errcode(40013),
        ] {
            app.fake.clear_faults();
            // The client waits out its 1 s failure cooldown before it asks WeChat again.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            app.fake.clear_calls();
            app.fake.inject(api::TOKEN, fault.clone(), 1000);
            let started = Instant::now();
            let r = sync().await.unwrap();
            assert_eq!(
                error_of(r).await,
                (StatusCode::BAD_GATEWAY, "upstream_error".into()),
                "{fault:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(15), "{fault:?}");
            let fetches = app.fake.token_fetches();
            assert!(
                (1..=3).contains(&fetches),
                "{fault:?}: {fetches} token fetches for one call"
            );
            // Within the cooldown a second call fails at once, without asking WeChat again.
            let r = sync().await.unwrap();
            assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "{fault:?}");
            assert_eq!(app.fake.token_fetches(), fetches, "{fault:?}: no hammering");
            assert_eq!(app.fake.count_calls(api::MENU_CREATE), 0);
            assert!(app.fake.menu().is_none());
        }
        // WeChat answers again: once the cooldown is over, a call fetches a token and succeeds.
        app.fake.clear_faults();
        eventually("the token fetch recovers", Duration::from_secs(10), || {
            let r = sync();
            async move { (r.await.unwrap().status() == StatusCode::OK).then_some(()) }
        })
        .await;
        assert!(app.fake.menu().is_some());
        assert_eq!(app.fake.count_calls(api::MENU_CREATE), 1);
    });
}

// ---- SIGKILL in the middle of a payment notification -------------------------------------------

/// A `dangjian serve --no-workers` child process; killed (SIGKILL) when dropped.
struct Server {
    child: std::process::Child,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Start on a free port with `database_url`, the app's fake WeChat, content and data key.
    async fn start(app: &TestApp, database_url: &str, log: std::path::PathBuf) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = app.dangjian_binary();
        cmd.args(["serve", "--no-workers", "--no-migrate"])
            .env("DANGJIAN_BIND", format!("127.0.0.1:{port}"))
            // Through the test's proxy, not the database directly.
            .env("DANGJIAN_DATABASE_URL", database_url)
            .env(
                "DANGJIAN_PAY_NOTIFY_URL",
                "https://dangjian.test/pay/notify",
            )
            .env("DANGJIAN_ADMIN_USER", ADMIN_USER)
            .env("DANGJIAN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("DANGJIAN_FOLLOWER_SYNC_INTERVAL_HOURS", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("start `dangjian serve`");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let health = format!("{}/healthz", server.base);
        eventually(
            "the server answers /healthz",
            Duration::from_secs(30),
            || {
                let (http, health) = (&app.http, &health);
                async move {
                    let ok = http
                        .get(health)
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == StatusCode::OK);
                    ok.then_some(())
                }
            },
        )
        .await;
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[backend_test(postgres)]
async fn a_server_killed_mid_payment_notification_credits_the_retry_exactly_once() {
    for backend in backends() {
        let app = TestApp::spawn_with(&backend, TestApp::dues_spawn(&[])).await;
        // One member, assessed, paying: an order at the fake WeChat Pay.
        app.dues_import(
            json!([{"name": "王一", "phone": "13800000001", "category": "employed",
            "monthly_income_fen": 812_345, "org_unit": "第一党支部"}]),
        )
        .await;
        let admin = app.admin_token().await;
        let month = dangjian::dues::rules::Month::of_unix_ms(app.state.clock.unix_ms()).to_string();
        let (status, v) = app
            .dues_call(
                Method::POST,
                "/api/admin/dues/assessments",
                Some(&admin),
                Some(json!({"month": month})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let member = app.dues_member_token("wang1", "王一", "13800000001").await;
        let bill = app.dues_bill_of("王一", &month).await;
        let (status, v) = app
            .dues_call(
                Method::POST,
                &format!("/api/mp/dues/{bill}/pay"),
                Some(&member),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let no: String = sqlx::query("SELECT out_trade_no FROM dues_orders WHERE bill_id = $1")
            .bind(bill)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap()
            .get(0);
        let n = app
            .fake
            .notification_for(&no, &NotificationTamper::default())
            .unwrap();

        // The server that gets the notification reaches PostgreSQL through a proxy, under a
        // name we can find in pg_stat_activity.
        let url = app.state.settings.database_url.expose_secret().to_owned();
        let proxy = FaultProxy::start(&FaultProxy::target_of(&url)).await;
        let victim = format!("dj_victim_{}", &random_suffix()[..8]);
        let proxied = format!("{}?application_name={victim}", proxy.url_for(&url));
        let dir = tempfile::tempdir().unwrap();
        let first = Server::start(&app, &proxied, dir.path().join("first.log")).await;
        // Every chunk to and from PostgreSQL now takes 300 ms: the handler crawls through its
        // transaction, and is killed inside it, after its first write.
        proxy.slow(Duration::from_millis(300));
        let notify = {
            let req = app
                .http
                .post(format!("{}/pay/notify", first.base))
                .body(n.body.clone());
            let req = n.headers.iter().fold(req, |r, (k, v)| r.header(k, v));
            tokio::spawn(req.send())
        };
        let in_tx = format!(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = '{victim}' \
             AND state LIKE 'idle in transaction%' AND backend_xid IS NOT NULL"
        );
        eventually(
            "the notification handler inside its transaction, having written",
            Duration::from_secs(60),
            || {
                let (app, in_tx) = (&app, &in_tx);
                async move { (app.count(in_tx).await > 0).then_some(()) }
            },
        )
        .await;
        let mut first = first;
        first.child.kill().unwrap(); // SIGKILL
        first.child.wait().unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), notify)
            .await
            .expect("the killed server's connection closes")
            .unwrap();
        assert!(
            answer.is_err(),
            "no answer from a killed server: {answer:?}; {}",
            first.log()
        );
        drop(first);
        // PostgreSQL rolls the transaction back when its connection goes: nothing half-written.
        let gone =
            format!("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = '{victim}'");
        eventually(
            "the killed server's sessions end",
            Duration::from_secs(30),
            || {
                let (app, gone) = (&app, &gone);
                async move { (app.count(gone).await == 0).then_some(()) }
            },
        )
        .await;
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_payments").await, 0);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM dues_notifications").await,
            0
        );
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM dues_bills WHERE id = {bill} AND status = 'paid'"
            ))
            .await,
            0
        );

        // Restarted, the database healthy again: WeChat Pay's retry (the same notification) is
        // credited once and answered 204, and so is every later copy.
        proxy.restore();
        let second = Server::start(&app, &proxied, dir.path().join("second.log")).await;
        for attempt in 0..3 {
            let (status, body) = app.dues_notify(&second.base, &n.headers, &n.body).await;
            assert_eq!(
                status,
                StatusCode::NO_CONTENT,
                "retry {attempt}: {body}; {}",
                second.log()
            );
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_payments").await, 1);
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM dues_payments WHERE bill_id = {bill} AND amount_fen = 12185"
            ))
            .await,
            1
        );
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM dues_bills WHERE id = {bill} AND status = 'paid'"
            ))
            .await,
            1
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM dues_notifications").await,
            1
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'dues_bill.paid'")
                .await,
            1
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_incidents").await, 0);
        drop(second);
        app.stop().await;
    }
}
