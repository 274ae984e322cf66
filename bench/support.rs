//! Shared by the sign-up, fan-out and notification benches (`mod support;`): the server under test
//! as a **child process** — the release binary `dangjian serve`, configured only through
//! `DANGJIAN_*` variables, on a free port — so the load generator, the fake WeChat and the setup
//! run in the bench's process and the server in its own, as in production. Also: a fresh
//! PostgreSQL database per run (created beside the one named, dropped afterwards), and the fake
//! WeChat with the app's demo credentials.
//!
//! The binary: `DANGJIAN_BIN` if set, else the one `cargo bench` builds beside the bench
//! (`target/release/dangjian`, `CARGO_BIN_EXE_dangjian`), else it is built with
//! `cargo build --release --bin dangjian` (only when the bench executable runs outside cargo:
//! cargo holds its build lock while it runs a bench).

// Each bench uses a part of this module.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sqlx::Connection;
use wechat::fake::{FakeConfig, FakeWechat};

/// The server binary (see the module docs).
pub fn binary() -> PathBuf {
    if let Some(b) = std::env::var_os("DANGJIAN_BIN") {
        return PathBuf::from(b);
    }
    let built = PathBuf::from(env!("CARGO_BIN_EXE_dangjian"));
    if built.exists() {
        return built;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    eprintln!(
        "{} is absent: cargo build --release --bin dangjian",
        built.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--bin", "dangjian"])
        .current_dir(manifest)
        .status()
        .expect("cargo build --release --bin dangjian");
    assert!(
        status.success(),
        "cargo build --release --bin dangjian failed"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"));
    target.join("release").join("dangjian")
}

/// A `dangjian serve` child process; killed (and reaped) when dropped, also on a panic.
pub struct Server {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    child: Child,
    log: PathBuf,
}

/// A port nobody listens on now (the child binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET /healthz` answered 200.
fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

impl Server {
    /// Start `dangjian <args>` (e.g. `["serve", "--no-workers"]`) with exactly the `DANGJIAN_*`
    /// variables in `env` (every inherited `DANGJIAN_*` is removed) plus `DANGJIAN_BIND` on a
    /// free port, its output to `log`; wait until `/healthz` answers 200.
    pub fn start(args: &[&str], env: &[(&str, String)], log: &Path) -> Server {
        let bin = binary();
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let out = std::fs::File::create(log).expect("server log file");
            let mut cmd = Command::new(&bin);
            cmd.args(args)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("DANGJIAN_") {
                    cmd.env_remove(k);
                }
            }
            for (k, v) in env {
                assert!(k.starts_with("DANGJIAN_"), "{k}: only DANGJIAN_* variables");
                cmd.env(k, v);
            }
            cmd.env("DANGJIAN_BIND", addr.to_string());
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut server = Server {
                base: format!("http://{addr}"),
                child,
                log: log.to_owned(),
            };
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if let Ok(Some(status)) = server.child.try_wait() {
                    last_err = format!("exited ({status}):\n{}", server.log_tail());
                    break;
                }
                if healthy(addr) {
                    return server;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} serve: no /healthz after 120 s:\n{}",
                    bin.display(),
                    server.log_tail()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            // Exited: most likely the port was taken meanwhile; try another one.
            drop(server);
        }
        panic!("{} {}: {last_err}", bin.display(), args.join(" "));
    }

    /// The child's process id (for /proc/<pid>/status).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the child's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The run's database: a fresh PostgreSQL database beside `pg_url` when given (dropped with the
/// returned guard), else a SQLite file in `dir`. Returns the guard and the URL for the server.
pub fn database(
    pg_url: Option<&str>,
    prefix: &str,
    settings: &[&str],
    dir: &std::path::Path,
) -> (Option<PgDatabase>, String) {
    let pg = pg_url.map(|url| PgDatabase::create(url, prefix, settings));
    let url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}/bench.db?mode=rwc", dir.display()),
    };
    (pg, url)
}

/// A fresh PostgreSQL database beside the one `url` names (`<prefix>_<pid>`), dropped (with
/// `FORCE`) when this is dropped — after the servers using it, so declare it before them.
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    /// The new database's URL.
    pub url: String,
}

/// Run `f` on a runtime of its own on a thread of its own: callable anywhere, also from `Drop`
/// inside another runtime.
fn on_own_runtime<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fut)
    })
    .join()
    .expect("database helper thread")
}

impl PgDatabase {
    /// Create it; `settings` are `ALTER DATABASE <name> SET ...` clauses (diagnostics).
    pub fn create(url: &str, prefix: &str, settings: &[&str]) -> PgDatabase {
        let name = format!("{prefix}_{}", std::process::id());
        let (admin_url, n) = (url.to_owned(), name.clone());
        let settings: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
        on_own_runtime(async move {
            let mut c = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("connect to the benchmark's PostgreSQL");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
                .execute(&mut c)
                .await
                .unwrap();
            sqlx::query(&format!("CREATE DATABASE {n}"))
                .execute(&mut c)
                .await
                .unwrap();
            for s in settings {
                sqlx::query(&format!("ALTER DATABASE {n} SET {s}"))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        });
        let base = url.rsplit_once('/').expect("postgres://host/db").0;
        PgDatabase {
            admin_url: url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        on_own_runtime(async move {
            if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut c)
                    .await;
            }
        });
    }
}

/// The fake WeChat (official account, mini-program, WeChat Pay) with the app's demo credentials.
pub fn demo_fake() -> FakeWechat {
    FakeWechat::new(FakeConfig {
        app_id: "wxdemo0000000000".into(),
        app_secret: "demo-app-secret-not-for-production".into(),
        mp_app_id: "wxdemomp000000000".into(),
        mp_app_secret: "demo-mp-secret-not-for-production".into(),
    })
}

/// Percentile `p` (0..=1) of sorted latencies in µs, in ms.
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// Now, Unix milliseconds.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The load average line (`/proc/loadavg`), printed with every result.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
