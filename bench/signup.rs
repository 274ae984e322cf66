//! Flash crowd on `POST /api/mp/activities/{id}/signup`: M distinct bound members (default
//! 2,000) sign up at once for P places (default 100) through C in-flight requests over real HTTP,
//! against the server in its own process (`dangjian serve`, the release binary, started by the
//! bench as a child process: `bench/support.rs`). Reports throughput and latency percentiles, and
//! fails unless exactly P are confirmed and the rest waitlisted with positions 1..M-P.
//!
//!   cargo bench --bench signup -- [--members M] [--places P] [--concurrency C] [--instances N]
//!
//! SQLite (a temp file, the server's in-process cache) by default; PostgreSQL when
//! `DANGJIAN_BENCH_DATABASE_URL` is set (a fresh database is created beside the one named and
//! dropped afterwards), with Redis when `DANGJIAN_BENCH_REDIS_URL` is set. `--instances 2`
//! (PostgreSQL + Redis) runs two server processes on the same database, requests alternating.
//! Setup (not timed) goes through the public API only: admin login, an org unit, the roster
//! import (`POST /api/admin/members`), each member's mini-program login and bind against the fake
//! WeChat (which runs in this process), the activity. Only the sign-ups are measured.

mod support;

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::{percentile, Server};

const ADMIN_USER: &str = "bench-admin";
const ADMIN_PASSWORD: &str = "bench-admin-password-0";
const UNIT: &str = "压测党支部";

struct Args {
    members: usize,
    places: i64,
    concurrency: usize,
    instances: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        members: 2000,
        places: 100,
        concurrency: 64,
        instances: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} N"))
        };
        match a.as_str() {
            "--members" => args.members = num("--members"),
            "--places" => args.places = num("--places") as i64,
            "--concurrency" => args.concurrency = num("--concurrency"),
            "--instances" => args.instances = num("--instances"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// Latency (µs) and, when the answer was a 200, (status, position).
type Answer = (u32, Option<(String, Option<i64>)>);

/// A setup call that must succeed: its JSON answer.
async fn call(req: reqwest::RequestBuilder) -> Value {
    let resp = req.send().await.expect("setup request");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "setup call failed: {status} {v}");
    v
}

fn main() {
    let args = parse_args();
    if !run(&args) {
        // After `run` has dropped the servers and the database.
        std::process::exit(1);
    }
}

fn run(args: &Args) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pg = std::env::var("DANGJIAN_BENCH_DATABASE_URL").ok();
    let redis = std::env::var("DANGJIAN_BENCH_REDIS_URL").ok();
    assert!(
        args.instances == 1 || (pg.is_some() && redis.is_some()),
        "--instances > 1 needs DANGJIAN_BENCH_DATABASE_URL and DANGJIAN_BENCH_REDIS_URL (shared sessions)"
    );
    // Diagnostic only: how much of a sign-up is the commit's WAL flush.
    let async_commit: &[&str] = if std::env::var("DANGJIAN_BENCH_PG_ASYNC_COMMIT").is_ok() {
        &["synchronous_commit = off"]
    } else {
        &[]
    };
    // Dropped after the servers (declared before them).
    let (pg_db, database_url) =
        support::database(pg.as_deref(), "dj_signup_bench", async_commit, dir.path());
    // What the server calls out to (jscode2session, getuserphonenumber) runs here.
    let fake = support::demo_fake();
    let fake_server = rt.block_on(fake.spawn());
    std::fs::create_dir_all(dir.path().join("content")).unwrap();
    let mut env = vec![
        ("DANGJIAN_DATABASE_URL", database_url),
        (
            "DANGJIAN_CONTENT_DIR",
            dir.path().join("content").display().to_string(),
        ),
        // Shared by the instances: the same generated data key (phones are sealed with it).
        (
            "DANGJIAN_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("DANGJIAN_WECHAT_API_BASE", fake_server.base_url.clone()),
        ("DANGJIAN_ADMIN_USER", ADMIN_USER.to_owned()),
        ("DANGJIAN_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("DANGJIAN_RATE_LIMIT_MP_PER_MINUTE", "100000000".to_owned()),
        ("DANGJIAN_RATE_LIMIT_LOGIN_PER_MINUTE", "1000".to_owned()),
        ("DANGJIAN_FOLLOWER_SYNC_INTERVAL_HOURS", "0".to_owned()),
        ("DANGJIAN_LOG", "warn".to_owned()),
    ];
    if let Some(r) = &redis {
        env.push(("DANGJIAN_REDIS_URL", r.clone()));
        env.push((
            "DANGJIAN_REDIS_PREFIX",
            format!("bench:{}:", std::process::id()),
        ));
    }
    // HTTP only (as before: no background workers); the first instance migrates.
    let servers: Vec<Server> = (0..args.instances)
        .map(|i| {
            let cmd: &[&str] = if i == 0 {
                &["serve", "--no-workers"]
            } else {
                &["serve", "--no-workers", "--no-migrate"]
            };
            Server::start(cmd, &env, &dir.path().join(format!("server{i}.log")))
        })
        .collect();
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();

    let outcome = rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .build()
            .unwrap();
        // Setup (not timed), all through the public API.
        let t = Instant::now();
        let admin = call(
            client
                .post(format!("{}/api/admin/login", bases[0]))
                .json(&json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD})),
        )
        .await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        call(
            client
                .post(format!("{}/api/admin/org-units", bases[0]))
                .bearer_auth(&admin)
                .json(&json!({"name": UNIT})),
        )
        .await;
        let roster: Vec<Value> = (0..args.members)
            .map(|i| {
                json!({"name": format!("压测{i}"), "phone": format!("136{i:08}"),
                       "category": "employed", "monthly_income_fen": 300_000,
                       "org_unit": UNIT, "party_status": "full"})
            })
            .collect();
        call(
            client
                .post(format!("{}/api/admin/members", bases[0]))
                .bearer_auth(&admin)
                .json(&roster),
        )
        .await;
        // Each member logs in from the mini-program and binds (phone number through the fake).
        for i in 0..args.members {
            fake.set_phone(&format!("sp{i}"), &format!("136{i:08}"));
        }
        let tokens: Vec<String> = futures_util::stream::iter(0..args.members)
            .map(|i| {
                let (client, base) = (client.clone(), bases[i % bases.len()].clone());
                async move {
                    let token = call(
                        client
                            .post(format!("{base}/api/mp/login"))
                            .json(&json!({"code": format!("s{i}")})),
                    )
                    .await["token"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    call(
                        client
                            .post(format!("{base}/api/mp/bind"))
                            .bearer_auth(&token)
                            .json(&json!({"name": format!("压测{i}"), "phone_code": format!("sp{i}")})),
                    )
                    .await;
                    token
                }
            })
            .buffered(16)
            .collect()
            .await;
        let now = support::unix_ms();
        let rfc = |offset_min: i64| dangjian::platform::time::rfc3339(now + offset_min * 60_000);
        let activity = call(
            client
                .post(format!("{}/api/admin/activities", bases[0]))
                .bearer_auth(&admin)
                .json(&json!({
                    "title": "抢票压测", "capacity": args.places,
                    "signup_opens_at": rfc(-1), "signup_closes_at": rfc(60), "starts_at": rfc(120),
                })),
        )
        .await["id"]
            .as_i64()
            .unwrap();
        eprintln!(
            "setup: {} members imported, logged in and bound in {:.2?}; load average {}",
            args.members,
            t.elapsed(),
            support::loadavg()
        );

        let started = Instant::now();
        let results: Vec<Answer> = futures_util::stream::iter(tokens.iter().enumerate())
            .map(|(i, token)| {
                let url = format!(
                    "{}/api/mp/activities/{activity}/signup",
                    bases[i % bases.len()]
                );
                let client = client.clone();
                async move {
                    let t = Instant::now();
                    let r = client.post(url).bearer_auth(token).send().await;
                    let body = match r {
                        Ok(r) if r.status().is_success() => {
                            r.json::<serde_json::Value>().await.ok()
                        }
                        _ => None,
                    };
                    let lat = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    (
                        lat,
                        body.map(|v| {
                            (
                                v["status"].as_str().unwrap_or("").to_owned(),
                                v["position"].as_i64(),
                            )
                        }),
                    )
                }
            })
            .buffer_unordered(args.concurrency)
            .collect()
            .await;
        (results, started.elapsed())
    });
    let (results, elapsed) = outcome;
    let errors = results.iter().filter(|(_, r)| r.is_none()).count();
    let confirmed = results
        .iter()
        .filter(|(_, r)| matches!(r, Some((s, None)) if s == "confirmed"))
        .count() as i64;
    let mut positions: Vec<i64> = results
        .iter()
        .filter_map(|(_, r)| match r {
            Some((s, Some(p))) if s == "waitlisted" => Some(*p),
            _ => None,
        })
        .collect();
    positions.sort_unstable();
    let expected_wait = args.members as i64 - args.places.min(args.members as i64);
    let correct = errors == 0
        && confirmed == args.places.min(args.members as i64)
        && positions == (1..=expected_wait).collect::<Vec<_>>();
    let mut lat: Vec<u32> = results.iter().map(|(l, _)| *l).collect();
    lat.sort_unstable();
    let rps = lat.len() as f64 / elapsed.as_secs_f64();
    let backend = format!(
        "{} + {}, {} instance(s)",
        if pg.is_some() { "PostgreSQL" } else { "SQLite" },
        if redis.is_some() {
            "Redis"
        } else {
            "in-process cache"
        },
        args.instances
    );
    println!(
        "sign-ups: {}, errors: {errors}, confirmed: {confirmed}, waitlisted: {}, elapsed: {elapsed:.2?}, concurrency: {}",
        lat.len(),
        positions.len(),
        args.concurrency
    );
    println!(
        "throughput: {rps:.0} sign-ups/s; latency ms: p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    println!(
        "| {backend} | {} members / {} places | {} | {rps:.0} /s | {:.1} ms | {:.1} ms | {} |",
        args.members,
        args.places,
        args.concurrency,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        if correct { "exact" } else { "WRONG" }
    );
    eprintln!("load average after the run: {}", support::loadavg());
    if !correct {
        eprintln!(
            "the crowd was not served exactly: {confirmed} confirmed, positions {:?}..",
            &positions[..positions.len().min(5)]
        );
    }
    drop(servers);
    drop(fake_server);
    drop(pg_db);
    correct
}
