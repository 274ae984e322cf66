//! Push fan-out throughput: one template-message push to N followers, sent by the real workers to
//! the fake WeChat over HTTP with the rate limit off, measured from creation to `completed`.
//!
//!   cargo bench --bench fanout -- [--recipients N] [--workers W] [--batch B] [--concurrency C]
//!                                 [--database-url postgres://...]
//!
//! Default: the embedded backend (SQLite file in a temp dir, in-process cache). Prints one markdown
//! table row per run (see bench/README.md).

/// The allocator the shipped binary uses (`src/main.rs`): the application runs in-process here,
/// so measuring it on the system allocator would measure something nobody runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use dangjian::{
    platform::config::Settings,
    push::{service, store, Audience, AudienceKind, Channel, PushStatus},
    startup::{Application, Overrides, Role},
};
use wechat::{client::TemplateInfo, fake::FakeWechat};

struct Args {
    recipients: usize,
    workers: usize,
    batch: usize,
    concurrency: usize,
    database_url: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        recipients: 50_000,
        workers: 4,
        batch: 200,
        concurrency: 32,
        database_url: None,
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
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn main() -> anyhow::Result<()> {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let fake = FakeWechat::new(wechat::fake::FakeConfig {
        app_id: "wxdemo0000000000".into(),
        app_secret: "demo-app-secret-not-for-production".into(),
        mp_app_id: "wxdemomp000000000".into(),
        mp_app_secret: "demo-mp-secret-not-for-production".into(),
    });
    let server = fake.spawn().await;
    fake.add_template(TemplateInfo {
        template_id: "demo-news-template".into(),
        ..Default::default()
    });
    let backend = if args.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let db_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()));
    let settings = Settings::with_overrides([
        ("bind", "127.0.0.1:0".to_owned()),
        ("database_url", db_url),
        ("data_dir", dir.path().join("data").display().to_string()),
        (
            "content_dir",
            dir.path().join("content").display().to_string(),
        ),
        ("wechat_api_base", server.base_url.clone()),
        ("follower_sync_interval_hours", "0".to_owned()),
        ("push_rate_per_second", "0".to_owned()),
        ("push_poll_ms", "20".to_owned()),
        ("push_workers", args.workers.to_string()),
        ("push_batch_size", args.batch.to_string()),
        ("push_concurrency", args.concurrency.to_string()),
        ("log_format", "text".to_owned()),
    ])?;
    let app = Application::build_with(settings, Overrides::default(), Role::All, true).await?;
    let st = app.state();
    let server_task = tokio::spawn(app.run());

    // Followers in the database and the fake.
    let openids: Vec<String> = (0..args.recipients)
        .map(|i| format!("obench{i:08}"))
        .collect();
    let now = st.clock.unix_ms();
    let mut tx = st.db.begin_write().await?;
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
    let article = dangjian::articles::store::insert_published(
        &st.db,
        &dangjian::articles::store::NewArticle {
            category: "党建动态",
            title: "压测：推送扇出",
            summary: "fan-out benchmark",
            body_md: "x",
            body_html: "<p>x</p>",
            cover_url: None,
            author: None,
        },
        now,
    )
    .await?;

    let start = Instant::now();
    let req = service::CreatePush {
        article_ids: vec![article],
        audience: Audience {
            kind: AudienceKind::All,
            ids: vec![],
        },
        channel: Channel::Template,
        scheduled_at: None,
    };
    let created = service::create(&st, &req, Some("bench"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let materialised = start.elapsed();
    loop {
        let p = store::get(&st.db, created.id).await?.expect("push");
        if p.status == PushStatus::Completed {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "push not completed after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed();
    let counts = store::counts(&st.db, created.id).await?;
    let outbox = fake.outbox_len();
    anyhow::ensure!(
        counts.sent as usize == args.recipients && outbox == args.recipients,
        "sent {counts:?}, outbox {outbox}"
    );
    let rate = args.recipients as f64 / elapsed.as_secs_f64();
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
    st.shutdown.cancel();
    let _ = server_task.await;
    Ok(())
}
