//! The re-seal pass over every encrypted column: values under an old key or in the legacy unbound
//! format (`v1`, see `platform::pii`) are rewritten, in place, sealed to their table, column and
//! row under the current key. Table and column names come from the features' `SEALED` lists
//! (static strings in the code), never from input. Each rewrite is conditional on the value read,
//! so a concurrent edit (already under the current key) is never reverted, and several processes
//! may run the pass at once.

use sqlx::Row;

use super::{Db, Tx};
use crate::platform::pii::{Column, DataCipher, PiiError};

const BATCH: i64 = 500;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    /// Values read.
    pub checked: u64,
    /// Values rewritten.
    pub rewritten: u64,
}

/// Rewrite every stale value of `columns`, in batches of one transaction each.
pub async fn reseal_all(
    db: &Db,
    cipher: &DataCipher,
    columns: &[Column],
) -> anyhow::Result<Resealed> {
    let mut done = Resealed::default();
    for &col in columns {
        let r = reseal_column(db, cipher, col).await?;
        done.checked += r.checked;
        done.rewritten += r.rewritten;
    }
    Ok(done)
}

async fn reseal_column(db: &Db, cipher: &DataCipher, col: Column) -> anyhow::Result<Resealed> {
    let (table, column) = (col.table, col.column);
    let select = format!(
        "SELECT id, {column} FROM {table} WHERE id > $1 AND {column} IS NOT NULL ORDER BY id LIMIT $2"
    );
    let mut done = Resealed::default();
    let mut last = 0i64;
    loop {
        let rows = sqlx::query(&select)
            .bind(last)
            .bind(BATCH)
            .fetch_all(db.pool())
            .await?;
        let Some(end) = rows.last() else { break };
        last = end.get(0);
        let mut tx = db.begin_write().await?;
        for r in &rows {
            let (id, stored): (i64, String) = (r.get(0), r.get(1));
            done.checked += 1;
            if !cipher.needs_rotation(&stored) {
                continue;
            }
            let fresh = cipher
                .reseal(col.at(id), &stored)
                .map_err(|e| anyhow::anyhow!("{table}.{column} of row {id}: {e}"))?;
            if rewrite_one(&mut tx, col, id, &stored, &fresh).await? {
                done.rewritten += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(done)
}

/// Write `fresh` over `col` of row `id` only if it still holds `seen` (what the pass read): an
/// edit that ran in between is never reverted (its value is current anyway). True if written.
pub async fn rewrite_one(
    tx: &mut Tx,
    col: Column,
    id: i64,
    seen: &str,
    fresh: &str,
) -> sqlx::Result<bool> {
    let r = sqlx::query(&format!(
        "UPDATE {} SET {} = $1 WHERE id = $2 AND {} = $3",
        col.table, col.column, col.column
    ))
    .bind(fresh)
    .bind(id)
    .bind(seen)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Seal `plain` into `col` of the row `id` that this transaction just inserted (the row id is
/// part of the binding, so values are written after the row exists).
pub async fn write(
    tx: &mut Tx,
    cipher: &DataCipher,
    col: Column,
    id: i64,
    plain: Option<&str>,
) -> sqlx::Result<()> {
    let sealed = cipher.seal_opt(col.at(id), plain);
    sqlx::query(&format!(
        "UPDATE {} SET {} = $1 WHERE id = $2",
        col.table, col.column
    ))
    .bind(sealed)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// How many values of `columns` still need the pass (readiness and the CLI report it).
pub async fn stale_count(db: &Db, cipher: &DataCipher, columns: &[Column]) -> anyhow::Result<u64> {
    let mut n = 0;
    for col in columns {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM {} WHERE {} IS NOT NULL",
            col.column, col.table, col.column
        ))
        .fetch_all(db.pool())
        .await?;
        n += rows
            .iter()
            .filter(|r| cipher.needs_rotation(&r.get::<String, _>(0)))
            .count() as u64;
    }
    Ok(n)
}

/// A sealed value that does not open where it is stored (moved, tampered, or under a key no
/// longer configured): the error names the place, never the value.
pub fn refused(slot: crate::platform::pii::Slot, e: PiiError) -> anyhow::Error {
    anyhow::anyhow!(
        "{}.{} of row {}: {e}",
        slot.column.table,
        slot.column.column,
        slot.id
    )
}
