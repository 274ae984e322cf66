//! Push fan-out throughput: one template-message push to N followers, sent by the real workers of
//! the server in its own process (`dangjian serve`, the release binary, a child process of this
//! bench: `bench/support.rs`) to the fake WeChat (in this process) over HTTP with the rate limit
//! off, measured from `POST /api/admin/pushes` to `completed`.
//!
//!   cargo bench --bench fanout -- [--recipients N] [--workers W] [--batch B] [--concurrency C]
//!                                 [--database-url postgres://...] [--redis-url redis://...]
//!
//! Default: the embedded backend (SQLite file in a temp dir, the server's in-process cache). With
//! `--database-url` a fresh database is created beside the one named and dropped afterwards.
//! Setup (not timed): the followers are inserted into the server's database with direct SQL from
//! this process (what the follower sync would write) and added to the fake; the article is created
//! and published through the admin API. Completion is polled with one primary-key read of the
//! push's row (cheap beside the report endpoint); the counts are checked through
//! `GET /api/admin/pushes/{id}` at the end. Prints one markdown table row per run.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection;
use support::Server;
use wechat::client::TemplateInfo;

const ADMIN_USER: &str = "bench-admin";
const ADMIN_PASSWORD: &str = "bench-admin-password-0";

struct Args {
    recipients: usize,
    workers: usize,
    batch: usize,
    concurrency: usize,
    database_url: Option<String>,
    redis_url: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        recipients: 50_000,
        workers: 4,
        batch: 200,
        concurrency: 32,
        database_url: None,
        redis_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| {
            it.next()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("{name} N"))
        };
        match arg.as_str() {
            "--recipients" => a.recipients = num("--recipients"),
            "--workers" => a.workers = num("--workers"),
            "--batch" => a.batch = num("--batch"),
            "--concurrency" => a.concurrency = num("--concurrency"),
            "--database-url" => a.database_url = it.next(),
            "--redis-url" => a.redis_url = it.next(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn main() -> anyhow::Result<()> {
    let args = parse_args();
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Dropped after the server (declared before it).
    let (pg_db, db_url) = support::database(
        args.database_url.as_deref(),
        "dj_fanout_bench",
        &[],
        dir.path(),
    );
    // What the server calls out to: the fake WeChat, here.
    let fake = support::demo_fake();
    let fake_server = rt.block_on(fake.spawn());
    fake.add_template(TemplateInfo {
        template_id: "demo-news-template".into(),
        ..Default::default()
    });
    std::fs::create_dir_all(dir.path().join("content"))?;
    let mut env = vec![
        ("DANGJIAN_DATABASE_URL", db_url.clone()),
        (
            "DANGJIAN_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        (
            "DANGJIAN_CONTENT_DIR",
            dir.path().join("content").display().to_string(),
        ),
        ("DANGJIAN_WECHAT_API_BASE", fake_server.base_url.clone()),
        (
            "DANGJIAN_WECHAT_NEWS_TEMPLATE_ID",
            "demo-news-template".into(),
        ),
        ("DANGJIAN_ADMIN_USER", ADMIN_USER.to_owned()),
        ("DANGJIAN_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("DANGJIAN_RATE_LIMIT_LOGIN_PER_MINUTE", "1000".to_owned()),
        ("DANGJIAN_FOLLOWER_SYNC_INTERVAL_HOURS", "0".to_owned()),
        ("DANGJIAN_PUSH_RATE_PER_SECOND", "0".to_owned()),
        ("DANGJIAN_PUSH_POLL_MS", "20".to_owned()),
        ("DANGJIAN_PUSH_WORKERS", args.workers.to_string()),
        ("DANGJIAN_PUSH_BATCH_SIZE", args.batch.to_string()),
        ("DANGJIAN_PUSH_CONCURRENCY", args.concurrency.to_string()),
        ("DANGJIAN_LOG_FORMAT", "text".to_owned()),
        ("DANGJIAN_LOG", "warn".to_owned()),
    ];
    if let Some(r) = &args.redis_url {
        env.push(("DANGJIAN_REDIS_URL", r.clone()));
        env.push((
            "DANGJIAN_REDIS_PREFIX",
            format!("bench:{}:", std::process::id()),
        ));
    }
    // HTTP and the workers (push senders, scheduler), migrations at start-up.
    let server = Server::start(&["serve"], &env, &dir.path().join("server.log"));
    let result = rt.block_on(run(&args, &server.base, &db_url, &fake));
    if result.is_err() {
        eprintln!("server log:\n{}", server.log_tail());
    }
    drop(server);
    drop(fake_server);
    drop(pg_db);
    result
}

/// A setup call that must succeed: its JSON answer.
async fn call(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let resp = req.send().await?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "setup call failed: {status} {v}");
    Ok(v)
}

async fn run(
    args: &Args,
    base: &str,
    db_url: &str,
    fake: &wechat::fake::FakeWechat,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    // Followers in the server's database (direct SQL, as the follower sync writes them) and in
    // the fake.
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(db_url).await?;
    let openids: Vec<String> = (0..args.recipients)
        .map(|i| format!("obench{i:08}"))
        .collect();
    let now = support::unix_ms();
    let mut tx = db.begin().await?;
    for chunk in openids.chunks(500) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, 'subscribed', $1, $1, $1)", i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO followers (openid, status, subscribed_at, created_at, updated_at) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(now);
        for o in chunk {
            q = q.bind(o);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    fake.add_followers(&openids);

    // The article, through the admin API.
    let admin = call(
        client
            .post(format!("{base}/api/admin/login"))
            .json(&json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD})),
    )
    .await?["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // The category (seeded at start-up: 409 is fine).
    let resp = client
        .post(format!("{base}/api/admin/categories"))
        .bearer_auth(&admin)
        .json(&json!({"name": "党建动态"}))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status() == 201 || resp.status() == 409,
        "create category: {}",
        resp.status()
    );
    let article = call(
        client
            .post(format!("{base}/api/admin/articles"))
            .bearer_auth(&admin)
            .json(
                &json!({"title": "压测：推送扇出", "summary": "fan-out benchmark",
                          "body_md": "x", "category": "党建动态"}),
            ),
    )
    .await?["id"]
        .as_i64()
        .unwrap_or_default();
    call(
        client
            .post(format!("{base}/api/admin/articles/{article}/publish"))
            .bearer_auth(&admin),
    )
    .await?;
    eprintln!("load average before the push: {}", support::loadavg());

    let start = Instant::now();
    let resp = client
        .post(format!("{base}/api/admin/pushes"))
        .bearer_auth(&admin)
        .json(
            &json!({"article_ids": [article], "audience": {"kind": "all"},
                      "channel": "template", "scheduled_at": null}),
        )
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 201, "create push: {}", resp.status());
    let id = resp.json::<Value>().await?["id"]
        .as_i64()
        .unwrap_or_default();
    let materialised = start.elapsed();
    loop {
        let status: String = sqlx::query_scalar("SELECT status FROM pushes WHERE id = $1")
            .bind(id)
            .fetch_one(&mut db)
            .await?;
        if status == "completed" {
            break;
        }
        anyhow::ensure!(
            status == "running" || status == "scheduled",
            "push {status}"
        );
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "push not completed after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed();
    eprintln!("load average after the push: {}", support::loadavg());
    let report = call(
        client
            .get(format!("{base}/api/admin/pushes/{id}"))
            .bearer_auth(&admin),
    )
    .await?;
    let outbox = fake.outbox();
    let distinct: std::collections::HashSet<&str> = outbox
        .iter()
        .filter(|m| m.channel == "template")
        .filter_map(|m| m.to_user.as_deref())
        .collect();
    let counts = &report["counts"];
    anyhow::ensure!(
        report["status"] == "completed"
            && counts["sent"].as_u64() == Some(args.recipients as u64)
            && outbox.len() == args.recipients
            && distinct.len() == args.recipients,
        "status {}, counts {counts}, outbox {} ({} distinct recipients)",
        report["status"],
        outbox.len(),
        distinct.len()
    );
    let rate = args.recipients as f64 / elapsed.as_secs_f64();
    let backend = match (&args.database_url, &args.redis_url) {
        (None, None) => "sqlite",
        (None, Some(_)) => "sqlite + redis",
        (Some(_), None) => "postgres",
        (Some(_), Some(_)) => "postgres + redis",
    };
    println!(
        "| backend | recipients | workers × batch × concurrency | materialise | total | sends/s |"
    );
    println!("|---|---:|---|---:|---:|---:|");
    println!(
        "| {backend} | {} | {} × {} × {} | {:.0} ms | {:.2} s | {:.0} |",
        args.recipients,
        args.workers,
        args.batch,
        args.concurrency,
        materialised.as_secs_f64() * 1000.0,
        elapsed.as_secs_f64(),
        rate
    );
    Ok(())
}
