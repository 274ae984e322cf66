//! Storage on two backends with one set of queries.
//!
//! We use sqlx's `Any` driver: the same SQL text runs on SQLite (the embedded default) and
//! PostgreSQL (production). The queries are written in the common subset — `$1` placeholders
//! (SQLite accepts them), `RETURNING`, `ON CONFLICT ... DO UPDATE`, integers as BIGINT, times as
//! BIGINT unix milliseconds, booleans as TEXT states — and the few places where the engines truly
//! differ (DDL, `FOR UPDATE SKIP LOCKED` claims, advisory locks) branch on [`Backend`].
//! Migrations are one file per step under `migrations/` (see `migrate.rs` for the two
//! conventions that cover the engines' DDL differences), embedded in the binary.

mod migrate;
pub mod sealed;

use std::{str::FromStr, time::Duration};

use secrecy::ExposeSecret;
use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    AnyPool, Executor,
};

pub use migrate::MIGRATIONS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connect with the default acquire timeout (10 s): command-line tools.
    pub async fn connect(url: &secrecy::SecretString) -> anyhow::Result<Db> {
        Self::connect_with_acquire_timeout(url, Duration::from_secs(10)).await
    }

    /// Connect; a query waits at most `acquire_timeout` for a connection, then fails with
    /// `PoolTimedOut` (answered 503 `database_unavailable`, see [`is_unavailable`]).
    pub async fn connect_with_acquire_timeout(
        url: &secrecy::SecretString,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let url = url.expose_secret();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite {
            ensure_sqlite_dir(url)?;
        }
        let options = AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    // WAL lets readers run beside the one writer; writers queue on busy_timeout.
                    .max_connections(if url.contains(":memory:") { 1 } else { 8 })
                    .acquire_timeout(acquire_timeout)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                                 PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await?
            }
        };
        Ok(Db { pool, backend })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so a read-then-write transaction can't fail with SQLITE_BUSY on upgrade.
    pub async fn begin_write(&self) -> sqlx::Result<Tx> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<usize> {
        migrate::run(self).await
    }

    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether `e` means the database could not be reached (down, hung, connection cut, pool
/// exhausted or closed) rather than a refused or wrong query: worth a 503 and a retry.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        // A connection that broke mid-conversation (cut, reset, a half-answered handshake).
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL's connection exceptions (08…) and operator intervention (57P…: shutdown,
        // crash recovery, cannot connect now).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(":memory:") {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    Ok(())
}

/// The largest page number any list accepts: `(page - 1) * size` can never overflow into a
/// negative OFFSET, and nobody pages that far by hand.
pub const MAX_PAGE: i64 = 100_000;

/// One page of a list: 1-based `number`, `size` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub number: i64,
    pub size: i64,
}

impl Page {
    pub fn offset(self) -> i64 {
        (self.number - 1).saturating_mul(self.size)
    }
}
