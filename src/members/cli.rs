//! The roster's command-line work: `dangjian admin rotate-key`.

use anyhow::Context;

use super::store as members_store;
use crate::platform::{
    audit::{self, AuditEntry},
    db::Db,
    pii::DataCipher,
};

/// Re-encrypt every member's personal data under the current key and recompute the phone index,
/// in batches (one transaction each). Safe to re-run; returns the number of members rewritten.
pub async fn rotate_key(db: &Db, cipher: &DataCipher) -> anyhow::Result<u64> {
    let mut last_id = 0i64;
    let mut total = 0u64;
    loop {
        let rows = members_store::encrypted_batch(db, last_id, 500).await?;
        let Some(last) = rows.last() else { break };
        last_id = last.id;
        let mut tx = db.begin_write().await?;
        for r in &rows {
            let (id, phone_enc) = (r.id, r.phone_enc.clone());
            let (id_enc, income_enc) = (r.id_number_enc.clone(), r.monthly_income_enc.clone());
            let phone = cipher
                .decrypt(&phone_enc)
                .with_context(|| format!("member {id}: phone"))?;
            let idx = cipher.phone_index(&phone);
            let stale = cipher.needs_rotation(&phone_enc)
                || id_enc.as_deref().is_some_and(|v| cipher.needs_rotation(v))
                || income_enc
                    .as_deref()
                    .is_some_and(|v| cipher.needs_rotation(v))
                || r.phone_idx != idx;
            if !stale {
                continue;
            }
            let re = |v: Option<String>| -> anyhow::Result<Option<String>> {
                v.map(|s| cipher.reencrypt(&s).with_context(|| format!("member {id}")))
                    .transpose()
            };
            let fields = members_store::EncryptedFields {
                id,
                phone_enc: cipher.encrypt(&phone),
                phone_idx: idx,
                id_number_enc: re(id_enc)?,
                monthly_income_enc: re(income_enc)?,
            };
            // Conditional on what was read: a concurrent import or edit wins (its values are
            // already under the current key) and is never reverted.
            if members_store::rewrite_encrypted(&mut tx, r, &fields).await? {
                total += 1;
            }
        }
        tx.commit().await?;
    }
    let entry = AuditEntry::system(
        crate::platform::time::unix_ms(time::OffsetDateTime::now_utc()),
        "cli",
        "pii.rotate_key",
        "data_key",
        Some(cipher.current_key_id().to_owned()),
    )
    .details(serde_json::json!({"members_rewritten": total}));
    audit::record(db.pool(), &entry).await?;
    Ok(total)
}
