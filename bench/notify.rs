//! Load generator for `POST /pay/notify`: a WeChat Pay notification storm.
//!
//! Sets up M members with one bill each, paid through the fake WeChat Pay (JSAPI order, the
//! member pays), then sends every bill's notification C times — all copies shuffled, signed and
//! encrypted like WeChat Pay's — through K keep-alive connections, and reports throughput and
//! latency percentiles. The run fails unless every answer is 204 and exactly M payments were
//! credited (the reconciliation total equal to the bills' sum).
//!
//!   cargo bench --bench notify -- [--members M] [--copies C] [--concurrency K]
//!                                 [--database-url postgres://...] [--redis-url redis://...]
//!
//! The server runs in its own process (`dangjian serve`, the release binary, a child process of
//! this bench: `bench/support.rs`), SQLite in a temp dir unless `--database-url` (then a fresh
//! database is created beside the one named and dropped afterwards). The fake WeChat and WeChat
//! Pay the server calls run here, beside the generator. Setup (not timed) goes through the public
//! API: roster import, dues assessment, each member's mini-program login, bind and order.

mod support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use rand::seq::SliceRandom;
use serde_json::{json, Value};
use support::{percentile, Server};
use wechat::fake::{FakeWechat, NotificationTamper};

const ADMIN: &str = "admin";
const PASSWORD: &str = "bench-admin-password-0";

struct Args {
    members: usize,
    copies: usize,
    concurrency: usize,
    database_url: Option<String>,
    redis_url: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        members: 500,
        copies: 20,
        concurrency: 64,
        database_url: None,
        redis_url: None,
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, what: &str| -> usize {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what} N"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--members" => args.members = num(it.next(), "--members"),
            "--copies" => args.copies = num(it.next(), "--copies"),
            "--concurrency" => args.concurrency = num(it.next(), "--concurrency"),
            "--database-url" => args.database_url = it.next(),
            "--redis-url" => args.redis_url = it.next(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// Start `dangjian serve` (HTTP and the workers) on `database_url`, calling the fake at
/// `fake_base` for WeChat and WeChat Pay.
fn start_server(
    args: &Args,
    database_url: String,
    fake_base: &str,
    dir: &std::path::Path,
) -> Server {
    std::fs::create_dir_all(dir.join("content")).unwrap();
    let mut env = vec![
        ("DANGJIAN_DATABASE_URL", database_url),
        (
            "DANGJIAN_CONTENT_DIR",
            dir.join("content").display().to_string(),
        ),
        ("DANGJIAN_DATA_DIR", dir.join("data").display().to_string()),
        ("DANGJIAN_WECHAT_API_BASE", fake_base.to_owned()),
        // The fake's public TEST merchant (dev, no DANGJIAN_PAY_MCH_ID), at the fake.
        ("DANGJIAN_PAY_API_BASE", fake_base.to_owned()),
        ("DANGJIAN_ADMIN_USER", ADMIN.to_owned()),
        ("DANGJIAN_ADMIN_PASSWORD", PASSWORD.to_owned()),
        ("DANGJIAN_RATE_LIMIT_LOGIN_PER_MINUTE", "1000000".to_owned()),
        ("DANGJIAN_RATE_LIMIT_MP_PER_MINUTE", "1000000".to_owned()),
        (
            "DANGJIAN_PAY_NOTIFY_URL",
            "https://bench.invalid/pay/notify".to_owned(),
        ),
        ("DANGJIAN_DUES_REQUERY_AFTER_SECS", "86400".to_owned()),
        ("DANGJIAN_FOLLOWER_SYNC_INTERVAL_HOURS", "0".to_owned()),
        ("DANGJIAN_LOG", "warn".to_owned()),
    ];
    if let Some(r) = &args.redis_url {
        env.push(("DANGJIAN_REDIS_URL", r.clone()));
        env.push((
            "DANGJIAN_REDIS_PREFIX",
            format!("bench:{}:", std::process::id()),
        ));
    }
    Server::start(&["serve"], &env, &dir.join("server.log"))
}

async fn post(client: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut req = client.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "setup call failed: {status} {v}");
    v
}

/// Roster, bills, binds and paid orders; returns each bill's notification and the bills' sum.
async fn setup(
    client: &reqwest::Client,
    base: &str,
    fake: &FakeWechat,
    members: usize,
) -> (Vec<(Vec<(String, String)>, String)>, i64, String) {
    let admin = post(
        client,
        format!("{base}/api/admin/login"),
        None,
        json!({"username": ADMIN, "password": PASSWORD}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rows: Vec<Value> = (0..members)
        .map(|i| {
            json!({"name": format!("党员{i}"), "phone": format!("137{:08}", i), "category": "employed",
                   "monthly_income_fen": 250_000 + (i as i64) * 1_000, "org_unit": format!("第{}党支部", i % 10 + 1)})
        })
        .collect();
    post(
        client,
        format!("{base}/api/admin/members"),
        Some(&admin),
        Value::Array(rows),
    )
    .await;
    let now = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(+8));
    let month = format!("{:04}-{:02}", now.year(), u8::from(now.month()));
    let v = post(
        client,
        format!("{base}/api/admin/dues/assessments"),
        Some(&admin),
        json!({"month": month}),
    )
    .await;
    let total = v["created_total_fen"].as_i64().unwrap();
    let mut notifications = Vec::with_capacity(members);
    for i in 0..members {
        let login = post(
            client,
            format!("{base}/api/mp/login"),
            None,
            json!({"code": format!("m{i}")}),
        )
        .await;
        let token = login["token"].as_str().unwrap().to_owned();
        fake.set_phone(&format!("p{i}"), &format!("137{:08}", i));
        post(
            client,
            format!("{base}/api/mp/bind"),
            Some(&token),
            json!({"name": format!("党员{i}"), "phone_code": format!("p{i}")}),
        )
        .await;
        let bills = client
            .get(format!("{base}/api/mp/dues"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let bill = bills["bills"][0]["id"].as_i64().unwrap();
        post(
            client,
            format!("{base}/api/mp/dues/{bill}/pay"),
            Some(&token),
            json!({}),
        )
        .await;
    }
    for order in fake.pay_orders() {
        let n = fake
            .notification_for(&order.out_trade_no, &NotificationTamper::default())
            .unwrap();
        notifications.push((n.headers, n.body));
    }
    assert_eq!(notifications.len(), members);
    (notifications, total, month)
}

fn main() {
    let args = parse_args();
    if !run(&args) {
        // After `run` has dropped the server and the database.
        std::process::exit(1);
    }
}

fn run(args: &Args) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Dropped after the server (declared before it).
    let (pg_db, database_url) = support::database(
        args.database_url.as_deref(),
        "dj_notify_bench",
        &[],
        dir.path(),
    );
    // The app's default (demo) credentials.
    let fake = support::demo_fake();
    let fake_server = rt.block_on(fake.spawn());
    let server = start_server(args, database_url, &fake_server.base_url, dir.path());
    let base = server.base.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .unwrap();
    let t = Instant::now();
    let (notifications, total, month) = rt.block_on(setup(&client, &base, &fake, args.members));
    eprintln!(
        "set up {} paid orders ({} fen) in {:.2?}",
        notifications.len(),
        total,
        t.elapsed()
    );
    // Every notification `copies` times, shuffled: duplicates arrive interleaved and at once.
    let mut plan: Vec<usize> = (0..notifications.len())
        .flat_map(|i| std::iter::repeat_n(i, args.copies))
        .collect();
    plan.shuffle(&mut rand::thread_rng());
    eprintln!("load average before the storm: {}", support::loadavg());
    let notifications = Arc::new(notifications);
    let plan = Arc::new(plan);
    let (lat, errors, elapsed) = rt.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut handles = Vec::new();
        let concurrency = args.concurrency;
        for _ in 0..concurrency {
            let (client, notifications, plan, next) =
                (client.clone(), notifications.clone(), plan.clone(), next.clone());
            let url = format!("{base}/pay/notify");
            handles.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(plan.len() / concurrency + 1);
                let mut errors = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&n) = plan.get(i) else { break };
                    let (headers, body) = &notifications[n];
                    let mut req = client.post(&url).body(body.clone());
                    for (k, v) in headers {
                        req = req.header(k, v);
                    }
                    let t = Instant::now();
                    let ok = matches!(req.send().await, Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT);
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    if !ok {
                        errors += 1;
                    }
                }
                (lat, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for h in handles {
            let (l, e) = h.await.unwrap();
            all.extend(l);
            errors += e;
        }
        (all, errors, started.elapsed())
    });
    // Exactly one payment per bill, whatever was sent how often.
    let recon: Value = rt.block_on(async {
        let admin = post(
            &client,
            format!("{base}/api/admin/login"),
            None,
            json!({"username": ADMIN, "password": PASSWORD}),
        )
        .await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        client
            .get(format!(
                "{base}/api/admin/dues/reconciliation?month={month}"
            ))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let mut lat = lat;
    lat.sort_unstable();
    let n = lat.len();
    let rps = n as f64 / elapsed.as_secs_f64();
    let backend = format!(
        "{} + {}",
        if args.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        if args.redis_url.is_some() {
            "Redis"
        } else {
            "in-process cache"
        }
    );
    println!(
        "notifications: {n} ({} orders × {} copies), errors: {errors}, elapsed: {elapsed:.2?}, concurrency: {}",
        args.members, args.copies, args.concurrency
    );
    println!(
        "throughput: {rps:.0} notifications/s; latency ms: p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    println!(
        "credited: {} payments, {} fen (bills: {} fen)",
        recon["paid_count"], recon["paid_total_fen"], total
    );
    println!(
        "| {backend} | {} × {} | {} | {rps:.0}/s | {:.2} ms | {:.2} ms | {errors} |",
        args.members,
        args.copies,
        args.concurrency,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99)
    );
    eprintln!("load average after the storm: {}", support::loadavg());
    let exact = recon["paid_count"].as_u64() == Some(args.members as u64)
        && recon["paid_total_fen"].as_i64() == Some(total);
    if errors > 0 || !exact {
        eprintln!("FAILED: errors {errors}, reconciliation {recon}");
        eprintln!("server log:\n{}", server.log_tail());
    }
    drop(server);
    drop(fake_server);
    drop(pg_db);
    errors == 0 && exact
}
