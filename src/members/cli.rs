//! The roster's command-line work: `dangjian admin rotate-key`.

use anyhow::Context;

use super::store as members_store;
use crate::platform::{
    audit::{self, AuditEntry},
    db::{sealed, Db},
    pii::{Column, DataCipher},
};

/// Bring every sealed value of `columns` (all features' encrypted columns) under the current key
/// and bound to its row, then recompute the members' phone index; in batches of one transaction
/// each, conditional on what was read. Safe to re-run and to run beside the server; returns the
/// number of values rewritten and of phone indexes recomputed.
pub async fn rotate_key(
    db: &Db,
    cipher: &DataCipher,
    columns: &[Column],
) -> anyhow::Result<(u64, u64)> {
    let resealed = sealed::reseal_all(db, cipher, columns).await?;
    let indexed = reindex_phones(db, cipher).await?;
    let entry = AuditEntry::system(
        crate::platform::time::unix_ms(time::OffsetDateTime::now_utc()),
        "cli",
        "pii.rotate_key",
        "data_key",
        Some(cipher.current_key_id().to_owned()),
    )
    .details(serde_json::json!({
        "values_checked": resealed.checked,
        "values_rewritten": resealed.rewritten,
        "phone_indexes_rewritten": indexed,
    }));
    audit::record(db.pool(), &entry).await?;
    Ok((resealed.rewritten, indexed))
}

/// The phone's blind index under the current key, for every member whose index is older.
async fn reindex_phones(db: &Db, cipher: &DataCipher) -> anyhow::Result<u64> {
    let mut last_id = 0i64;
    let mut total = 0u64;
    loop {
        let rows = members_store::phone_index_batch(db, last_id, 500).await?;
        let Some(last) = rows.last() else { break };
        last_id = last.id;
        let mut tx = db.begin_write().await?;
        for r in &rows {
            let slot = members_store::PHONE.at(r.id);
            let phone = cipher
                .open(slot, &r.phone_enc)
                .map_err(|e| sealed::refused(slot, e))
                .with_context(|| "rotate-key")?;
            let idx = cipher.phone_index(&phone);
            if idx != r.phone_idx && members_store::rewrite_phone_index(&mut tx, r, &idx).await? {
                total += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(total)
}
