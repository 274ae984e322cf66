//! Flash crowd on `POST /api/mp/activities/{id}/signup`: M distinct bound members (default
//! 2,000) sign up at once for P places (default 100) through C in-flight requests over real HTTP,
//! against the whole application started in-process. Reports throughput and latency
//! percentiles, and fails unless exactly P are confirmed and the rest waitlisted with positions
//! 1..M-P.
//!
//!   cargo bench --bench signup -- [--members M] [--places P] [--concurrency C] [--instances N]
//!
//! SQLite (a temp file, in-process cache) by default; PostgreSQL when
//! `DANGJIAN_BENCH_DATABASE_URL` is set (a fresh database is created beside the one named and
//! dropped afterwards), with Redis when `DANGJIAN_BENCH_REDIS_URL` is set. `--instances 2`
//! (PostgreSQL + Redis) runs two app instances on the same database, requests alternating.
//! Members and their mini-program sessions are created directly (not timed); only the sign-ups
//! are measured.

/// The allocator the shipped binary uses (`src/main.rs`): the application runs in-process here,
/// so measuring it on the system allocator would measure something nobody runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use dangjian::{
    app::AppState,
    auth::mp_session::MpSession,
    members::store::{self, MemberWrite},
    platform::config::Settings,
    startup::{Application, Overrides, Role},
};
use futures_util::StreamExt;
use sqlx::Connection;

const ADMIN_USER: &str = "bench-admin";
const ADMIN_PASSWORD: &str = "bench-admin-password-0";

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

/// Start one instance on its own runtime thread: (base URL, state).
fn start(settings: Settings, migrate: bool) -> (String, AppState) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app =
                Application::build_with(settings, Overrides::default(), Role::HttpOnly, migrate)
                    .await
                    .unwrap();
            tx.send((format!("http://{}", app.local_addr()), app.state()))
                .unwrap();
            app.run().await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// Latency (µs) and, when the answer was a 200, (status, position).
type Answer = (u32, Option<(String, Option<i64>)>);

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

fn main() {
    let args = parse_args();
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
    let database_url = match &pg {
        None => format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()),
        Some(url) => {
            let name = format!("dj_signup_bench_{}", std::process::id());
            rt.block_on(async {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut c)
                    .await
                    .unwrap();
                // Diagnostic only: how much of a sign-up is the commit's WAL flush.
                if std::env::var("DANGJIAN_BENCH_PG_ASYNC_COMMIT").is_ok() {
                    sqlx::query(&format!(
                        "ALTER DATABASE {name} SET synchronous_commit = off"
                    ))
                    .execute(&mut c)
                    .await
                    .unwrap();
                }
            });
            format!("{}/{name}", url.rsplit_once('/').unwrap().0)
        }
    };
    let mut overrides = vec![
        ("bind", "127.0.0.1:0".to_owned()),
        ("database_url", database_url),
        (
            "content_dir",
            dir.path().join("content").display().to_string(),
        ),
        ("data_dir", dir.path().join("data").display().to_string()),
        ("wechat_api_base", "http://127.0.0.1:9".to_owned()),
        ("admin_user", ADMIN_USER.to_owned()),
        ("admin_password", ADMIN_PASSWORD.to_owned()),
        ("rate_limit_mp_per_minute", "100000000".to_owned()),
        ("rate_limit_login_per_minute", "1000".to_owned()),
    ];
    if let Some(r) = &redis {
        overrides.push(("redis_url", r.clone()));
        overrides.push(("redis_prefix", format!("bench:{}:", std::process::id())));
    }
    let settings = Settings::with_overrides(overrides).unwrap();
    let mut bases = Vec::new();
    let (base, state) = start(settings.clone(), true);
    bases.push(base);
    for _ in 1..args.instances {
        bases.push(start(settings.clone(), false).0);
    }

    let outcome = rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .build()
            .unwrap();
        // Setup (not timed): an org unit, the members, their sessions, the activity.
        let t = Instant::now();
        let token: String = client
            .post(format!("{}/api/admin/login", bases[0]))
            .json(&serde_json::json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let unit: i64 = client
            .post(format!("{}/api/admin/org-units", bases[0]))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": "压测党支部"}))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        let now = state.clock.unix_ms();
        let mut sessions = Vec::with_capacity(args.members);
        let mut tx = state.db.begin_write().await.unwrap();
        for i in 0..args.members {
            let phone = format!("136{i:08}");
            let name = format!("压测{i}");
            let id = store::insert(
                &mut tx,
                &state.cipher,
                &MemberWrite {
                    name: &name,
                    phone: &phone,
                    phone_idx: state.cipher.phone_index(&phone),
                    id_number: None,
                    category: "employed",
                    income: None,
                    org_unit_id: unit,
                    party_status: "full",
                    joined_at: None,
                },
                now,
            )
            .await
            .unwrap();
            let openid = format!("mp_bench_{i}");
            store::bind_openid(&mut tx, id, &openid, now).await.unwrap();
            sessions.push((id, openid));
        }
        tx.commit().await.unwrap();
        let mut tokens = Vec::with_capacity(args.members);
        for (id, openid) in &sessions {
            tokens.push(
                MpSession::create(&state, openid, Some(*id))
                    .await
                    .unwrap()
                    .token,
            );
        }
        let rfc = |offset_min: i64| dangjian::platform::time::rfc3339(now + offset_min * 60_000);
        let resp = client
            .post(format!("{}/api/admin/activities", bases[0]))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "title": "抢票压测", "capacity": args.places,
                "signup_opens_at": rfc(-1), "signup_closes_at": rfc(60), "starts_at": rfc(120),
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let activity = resp.json::<serde_json::Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap();
        eprintln!(
            "setup: {} members and sessions in {:.2?}",
            args.members,
            t.elapsed()
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
    if let Some(url) = &pg {
        let name = format!("dj_signup_bench_{}", std::process::id());
        rt.block_on(async {
            if let Ok(mut c) = sqlx::PgConnection::connect(url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut c)
                    .await;
            }
        });
    }
    if !correct {
        eprintln!(
            "the crowd was not served exactly: {confirmed} confirmed, positions {:?}..",
            &positions[..positions.len().min(5)]
        );
        std::process::exit(1);
    }
}
