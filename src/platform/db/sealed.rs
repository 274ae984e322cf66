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
    /// Values read: those not already sealed under the current key.
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
    // Only values not already in the current form are read: at a start with nothing to do, the
    // pass reads no ciphertext (documents are large), only an index range per column.
    let select = format!(
        "SELECT id, {column} FROM {table} WHERE id > $1 AND {column} IS NOT NULL \
         AND {column} NOT LIKE $3 ORDER BY id LIMIT $2"
    );
    let current = current_prefix(cipher);
    let mut done = Resealed::default();
    let mut last = 0i64;
    loop {
        let rows = sqlx::query(&select)
            .bind(last)
            .bind(BATCH)
            .bind(&current)
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

/// `LIKE` pattern of values already sealed under the current key (the key id is hex: no
/// wildcard characters).
fn current_prefix(cipher: &DataCipher) -> String {
    format!("{}%", cipher.sealed_prefix())
}

/// How many values of `columns` still need the pass (counted in the database).
pub async fn stale_count(db: &Db, cipher: &DataCipher, columns: &[Column]) -> anyhow::Result<u64> {
    let current = current_prefix(cipher);
    let mut n = 0;
    for col in columns {
        let count: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) FROM {} WHERE {} IS NOT NULL AND {} NOT LIKE $1",
            col.table, col.column, col.column
        ))
        .bind(&current)
        .fetch_one(db.pool())
        .await?
        .get(0);
        n += count as u64;
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
