//! Load generator for `POST /wechat` in safe mode.
//!
//! Pre-builds N distinct, correctly signed and AES-encrypted text messages (keyword replies), then
//! drives them through C keep-alive connections and reports throughput and latency percentiles.
//!
//!   cargo bench --bench webhook -- [--messages N] [--concurrency C] [--url http://host:port]
//!                                  [--database-url postgres://...] [--redis-url redis://...]
//!   cargo bench --bench webhook -- --url http://host:port --rate R --duration SECS   # a soak
//!   cargo bench --bench webhook -- --messages N --dump PREFIX --split K   # requests for wrk
//!
//! Every message of every run is distinct: MsgIds start at the current time in microseconds, so
//! a second run against the same server is never answered from its de-duplication record.
//! `--rate`/`--duration` sends R messages a second for SECS seconds, each built when it is sent
//! (fresh timestamp), and prints one line every 10 s: a steady load for memory soaks.
//!
//! Without `--url` it starts the whole application in-process on the embedded backend (SQLite,
//! in-process cache), on its own runtime, so server and load generator share this machine's cores.

/// The allocator the shipped binary uses (`src/main.rs`): the application runs in-process here,
/// so measuring it on the system allocator would measure something nobody runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use dangjian::{
    platform::config::Settings,
    startup::{Application, Overrides, Role},
};
use wechat::{crypto::MessageCrypto, signature};

const TOKEN: &str = "dangjiandemotoken";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APP_ID: &str = "wxdemo0000000000";

struct Args {
    messages: usize,
    concurrency: usize,
    url: Option<String>,
    database_url: Option<String>,
    redis_url: Option<String>,
    rate: Option<u64>,
    dump: Option<String>,
    split: usize,
    duration_secs: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        messages: 200_000,
        concurrency: 32,
        url: None,
        database_url: None,
        redis_url: None,
        rate: None,
        duration_secs: 600,
        dump: None,
        split: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--messages" => {
                args.messages = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--messages N")
            }
            "--concurrency" => {
                args.concurrency = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--concurrency C")
            }
            "--url" => args.url = it.next(),
            "--dump" => args.dump = it.next(),
            "--split" => {
                args.split = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|k| *k > 0)
                    .expect("--split K")
            }
            "--database-url" => args.database_url = it.next(),
            "--redis-url" => args.redis_url = it.next(),
            "--rate" => args.rate = Some(it.next().and_then(|v| v.parse().ok()).expect("--rate R")),
            "--duration" => {
                args.duration_secs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--duration SECS")
            }
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

struct Prepared {
    path: String,
    body: String,
}

/// The first MsgId of this run: the current time in microseconds (runs never overlap).
fn msg_id_base() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64
}

fn prepare(n: usize) -> Vec<Prepared> {
    let crypto = MessageCrypto::new(AES_KEY, APP_ID).unwrap();
    let ts = time::OffsetDateTime::now_utc().unix_timestamp();
    let base = msg_id_base();
    (0..n).map(|i| message(&crypto, ts, base, i)).collect()
}

/// Message `i` of a run: a keyword reply, signed and encrypted, MsgId `base + i`.
fn message(crypto: &MessageCrypto, ts: i64, base: i64, i: usize) -> Prepared {
    let keywords = ["帮助", "党费", "联系方式", "hello world"];
    let xml = format!(
        "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[o_bench_{}]]></FromUserName>\
         <CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{}]]></Content>\
         <MsgId>{}</MsgId></xml>",
        i % 5000,
        keywords[i % keywords.len()],
        base + i as i64
    );
    let encrypt = crypto.encrypt(xml.as_bytes());
    let ts = ts.to_string();
    let nonce = format!("{i}");
    let sig = signature::signature(TOKEN, &ts, &nonce);
    let msg_sig = signature::msg_signature(TOKEN, &ts, &nonce, &encrypt);
    Prepared {
        path: format!(
            "/wechat?signature={sig}&timestamp={ts}&nonce={nonce}&openid=o_bench&encrypt_type=aes&msg_signature={msg_sig}"
        ),
        body: format!("<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"),
    }
}

/// `--dump PREFIX --split K`: the run's messages for another load generator (wrk with
/// `bench/peer/wrk.lua`), one `path<TAB>body` line each, dealt round-robin into `PREFIX.0` …
/// `PREFIX.{K-1}` (one file per wrk thread, so that no two threads send the same message).
fn dump(prefix: &str, n: usize, split: usize) {
    use std::io::Write;
    let mut files: Vec<_> = (0..split)
        .map(|k| {
            let f = std::fs::File::create(format!("{prefix}.{k}")).expect("create the dump file");
            std::io::BufWriter::new(f)
        })
        .collect();
    for (i, p) in prepare(n).iter().enumerate() {
        writeln!(files[i % split], "{}\t{}", p.path, p.body).expect("write the dump file");
    }
    for mut f in files {
        f.flush().expect("write the dump file");
    }
}

/// One request; true when the answer is a 200 with a reply.
async fn send(client: &reqwest::Client, base: &str, p: &Prepared) -> bool {
    match client
        .post(format!("{base}{}", p.path))
        .body(p.body.clone())
        .send()
        .await
    {
        Ok(r) => {
            r.status().is_success()
                && r.bytes()
                    .await
                    .map(|b| b.starts_with(b"<xml>"))
                    .unwrap_or(false)
        }
        Err(_) => false,
    }
}

/// `--rate R --duration SECS`: a steady load, each message built as it is sent.
fn soak(args: &Args, base: &str, rate: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let crypto = Arc::new(MessageCrypto::new(AES_KEY, APP_ID).unwrap());
        let first = msg_id_base();
        let sent = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let end = started + std::time::Duration::from_secs(args.duration_secs);
        let mut tick =
            tokio::time::interval(std::time::Duration::from_secs(1) / rate.max(1) as u32);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report = Instant::now();
        let mut i = 0usize;
        while Instant::now() < end {
            tick.tick().await;
            let p = message(
                &crypto,
                time::OffsetDateTime::now_utc().unix_timestamp(),
                first,
                i,
            );
            i += 1;
            let (c, b, n, e) = (
                client.clone(),
                base.to_owned(),
                sent.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                if !send(&c, &b, &p).await {
                    e.fetch_add(1, Ordering::Relaxed);
                }
                n.fetch_add(1, Ordering::Relaxed);
            });
            if report.elapsed() >= std::time::Duration::from_secs(10) {
                report = Instant::now();
                println!(
                    "t={:>4}s sent={} errors={}",
                    started.elapsed().as_secs(),
                    sent.load(Ordering::Relaxed),
                    errors.load(Ordering::Relaxed)
                );
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let (n, e) = (sent.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
        println!(
            "soak: {n} messages at {rate}/s in {:.0?}, errors: {e}",
            started.elapsed()
        );
        if e > 0 {
            std::process::exit(1);
        }
    });
}

fn start_server(args: &Args) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut overrides = vec![
        ("bind", "127.0.0.1:0".to_owned()),
        (
            "database_url",
            args.database_url
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}/bench.db?mode=rwc", dir.path().display())),
        ),
        (
            "content_dir",
            dir.path().join("content").display().to_string(),
        ),
        ("data_dir", dir.path().join("data").display().to_string()),
        ("wechat_message_mode", "safe".to_owned()),
        ("wechat_api_base", "http://127.0.0.1:9".to_owned()),
    ];
    if let Some(r) = &args.redis_url {
        overrides.push(("redis_url", r.clone()));
        overrides.push(("redis_prefix", format!("bench:{}:", std::process::id())));
    }
    let settings = Settings::with_overrides(overrides).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = Application::build_with(settings, Overrides::default(), Role::HttpOnly, true)
                .await
                .unwrap();
            tx.send(format!("http://{}", app.local_addr())).unwrap();
            app.run().await.unwrap();
        });
    });
    (rx.recv().unwrap(), dir)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

fn main() {
    let args = parse_args();
    if let Some(rate) = args.rate {
        let base = args
            .url
            .clone()
            .expect("--rate needs --url (a server in its own process)");
        return soak(&args, &base, rate);
    }
    if let Some(prefix) = &args.dump {
        return dump(prefix, args.messages, args.split);
    }
    let t = Instant::now();
    let prepared = Arc::new(prepare(args.messages));
    eprintln!(
        "prepared {} encrypted messages in {:.2?}",
        prepared.len(),
        t.elapsed()
    );
    let (base, _dir) = match &args.url {
        Some(u) => (u.clone(), tempfile::tempdir().unwrap()),
        None => start_server(&args),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (lat, errors, elapsed) = rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .build()
            .unwrap();
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..args.concurrency {
            let client = client.clone();
            let prepared = prepared.clone();
            let next = next.clone();
            let base = base.clone();
            handles.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(prepared.len() / args.concurrency + 1);
                let mut errors = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = prepared.get(i) else { break };
                    let t = Instant::now();
                    let ok = send(&client, &base, p).await;
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    if !ok {
                        errors += 1;
                    }
                }
                (lat, errors)
            }));
        }
        let mut all = Vec::with_capacity(prepared.len());
        let mut errors = 0;
        for h in handles {
            let (l, e) = h.await.unwrap();
            all.extend(l);
            errors += e;
        }
        (all, errors, started.elapsed())
    });
    let mut lat = lat;
    lat.sort_unstable();
    let n = lat.len();
    let rps = n as f64 / elapsed.as_secs_f64();
    println!(
        "requests: {n}, errors: {errors}, elapsed: {:.2?}, concurrency: {}",
        elapsed, args.concurrency
    );
    println!(
        "throughput: {rps:.0} msg/s; latency ms: p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    let backend = match (&args.url, &args.database_url, &args.redis_url) {
        (Some(u), _, _) => format!("external server {u}"),
        (None, db, redis) => format!(
            "{} + {}",
            if db.is_some() { "PostgreSQL" } else { "SQLite" },
            if redis.is_some() {
                "Redis"
            } else {
                "in-process cache"
            }
        ),
    };
    println!(
        "| POST /wechat safe mode, keyword reply, {backend} | {} | {rps:.0} msg/s | {:.2} ms | {:.2} ms | {errors} |",
        args.concurrency,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99)
    );
    if errors > 0 {
        std::process::exit(1);
    }
}
