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
    pub async fn connect(url: &secrecy::SecretString) -> anyhow::Result<Db> {
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
                    .acquire_timeout(Duration::from_secs(10))
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
                    .acquire_timeout(Duration::from_secs(10))
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
