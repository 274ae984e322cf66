//! `dangjian admin ...`: account management and key rotation from the command line (operators
//! with shell access are administrators). Every change is audited with actor `cli`.

use anyhow::{bail, Context};
use sqlx::Row;

use crate::{
    auth::{password, tokens, users, Role},
    platform::audit::{self, AuditEntry},
    platform::config::Settings,
    platform::db::Db,
    platform::org,
    platform::pii::DataCipher,
    platform::time::unix_ms,
};

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create an account; the password comes from DANGJIAN_NEW_PASSWORD or is generated and printed once.
    Create {
        #[arg(long)]
        username: String,
        /// admin | secretary | editor
        #[arg(long)]
        role: String,
        /// Org unit (by name) of a secretary; created when missing.
        #[arg(long)]
        org_unit: Option<String>,
    },
    /// Set a new password (DANGJIAN_NEW_PASSWORD or generated), unlock, and end all sessions.
    ResetPassword {
        #[arg(long)]
        username: String,
    },
    /// Disable an account and end all its sessions.
    Disable {
        #[arg(long)]
        username: String,
    },
    /// Re-encrypt all personal data under DANGJIAN_DATA_KEY (old keys in DANGJIAN_DATA_KEYS_OLD)
    /// and recompute the blind indexes.
    RotateKey,
    /// Print a fresh random data key (base64) for DANGJIAN_DATA_KEY.
    GenerateKey,
}

fn new_password(username: &str) -> anyhow::Result<(String, bool)> {
    match std::env::var("DANGJIAN_NEW_PASSWORD") {
        Ok(p) if !p.is_empty() => {
            password::check_policy(username, &p)
                .map_err(|e| anyhow::anyhow!("DANGJIAN_NEW_PASSWORD: {e}"))?;
            Ok((p, false))
        }
        _ => Ok((password::generate(), true)),
    }
}

fn now() -> i64 {
    unix_ms(time::OffsetDateTime::now_utc())
}

pub async fn run(settings: &Settings, cmd: AdminCommand) -> anyhow::Result<()> {
    if let AdminCommand::GenerateKey = cmd {
        println!("{}", crate::platform::pii::generate_key());
        return Ok(());
    }
    let db = Db::connect(&settings.database_url)
        .await
        .context("DANGJIAN_DATABASE_URL: cannot connect")?;
    db.migrate().await?;
    match cmd {
        AdminCommand::Create {
            username,
            role,
            org_unit,
        } => create(&db, &username, &role, org_unit.as_deref()).await,
        AdminCommand::ResetPassword { username } => reset_password(&db, &username).await,
        AdminCommand::Disable { username } => disable(&db, &username).await,
        AdminCommand::RotateKey => {
            let cipher = DataCipher::from_settings(settings)?;
            let n = rotate_key(&db, &cipher).await?;
            println!(
                "{n} member(s) re-encrypted under key {}",
                cipher.current_key_id()
            );
            Ok(())
        }
        AdminCommand::GenerateKey => unreachable!(),
    }
}

async fn create(db: &Db, username: &str, role: &str, org_unit: Option<&str>) -> anyhow::Result<()> {
    users::check_username(username).map_err(|e| anyhow::anyhow!(e))?;
    let role = Role::parse(role).context("--role must be admin, secretary or editor")?;
    if role == Role::Secretary && org_unit.is_none() {
        bail!("a secretary needs --org-unit");
    }
    let (pw, generated) = new_password(username)?;
    let hash = password::hash_blocking(pw.clone()).await?;
    let now = now();
    let mut tx = db.begin_write().await?;
    let unit_id = match org_unit {
        None => None,
        Some(name) => Some(match org::find_by_name(&mut *tx, name).await? {
            Some(u) => u.id,
            None => org::create(&mut *tx, name, None, now).await?,
        }),
    };
    let Some(id) = users::insert(&mut *tx, username, role, unit_id, &hash, now).await? else {
        bail!("username {username} is taken");
    };
    let entry = AuditEntry::system(
        now,
        "cli",
        "admin_user.create",
        "admin_user",
        Some(id.to_string()),
    )
    .details(
        serde_json::json!({"after": {"username": username, "role": role, "org_unit_id": unit_id}}),
    );
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    println!("created {role} {username} (id {id})");
    if generated {
        println!("password (shown once): {pw}");
    }
    Ok(())
}

async fn reset_password(db: &Db, username: &str) -> anyhow::Result<()> {
    let creds = users::by_username(db, username)
        .await?
        .with_context(|| format!("no account {username}"))?;
    let (pw, generated) = new_password(username)?;
    let hash = password::hash_blocking(pw.clone()).await?;
    let now = now();
    let mut tx = db.begin_write().await?;
    users::set_password(&mut *tx, creds.user.id, &hash, now).await?;
    let revoked = tokens::revoke_all_for_user(&mut *tx, creds.user.id, None, now).await?;
    let entry = AuditEntry::system(
        now,
        "cli",
        "admin_user.reset_password",
        "admin_user",
        Some(creds.user.id.to_string()),
    )
    .details(serde_json::json!({"sessions_revoked": revoked}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    println!("password of {username} reset; {revoked} session(s) ended");
    if generated {
        println!("password (shown once): {pw}");
    }
    Ok(())
}

async fn disable(db: &Db, username: &str) -> anyhow::Result<()> {
    let creds = users::by_username(db, username)
        .await?
        .with_context(|| format!("no account {username}"))?;
    let now = now();
    let mut tx = db.begin_write().await?;
    users::set_status(&mut *tx, creds.user.id, "disabled", now).await?;
    let revoked = tokens::revoke_all_for_user(&mut *tx, creds.user.id, None, now).await?;
    let entry = AuditEntry::system(now, "cli", "admin_user.disable", "admin_user", Some(creds.user.id.to_string()))
        .details(serde_json::json!({"before": {"status": creds.user.status}, "after": {"status": "disabled"}, "sessions_revoked": revoked}));
    audit::record(&mut *tx, &entry).await?;
    tx.commit().await?;
    println!("{username} disabled; {revoked} session(s) ended");
    Ok(())
}

/// Re-encrypt every member's personal data under the current key and recompute the phone index,
/// in batches (one transaction each). Safe to re-run; returns the number of members rewritten.
pub async fn rotate_key(db: &Db, cipher: &DataCipher) -> anyhow::Result<u64> {
    let mut last_id = 0i64;
    let mut total = 0u64;
    loop {
        let rows = sqlx::query(
            "SELECT id, phone_enc, id_number_enc, monthly_income_enc, phone_idx FROM members WHERE id > $1 ORDER BY id LIMIT 500",
        )
        .bind(last_id)
        .fetch_all(db.pool())
        .await?;
        let Some(last) = rows.last() else { break };
        last_id = last.get(0);
        let mut tx = db.begin_write().await?;
        for r in &rows {
            let id: i64 = r.get(0);
            let phone_enc: String = r.get(1);
            let id_enc: Option<String> = r.get(2);
            let income_enc: Option<String> = r.get(3);
            let phone = cipher
                .decrypt(&phone_enc)
                .with_context(|| format!("member {id}: phone"))?;
            let idx = cipher.phone_index(&phone);
            let stale = cipher.needs_rotation(&phone_enc)
                || id_enc.as_deref().is_some_and(|v| cipher.needs_rotation(v))
                || income_enc
                    .as_deref()
                    .is_some_and(|v| cipher.needs_rotation(v))
                || r.get::<String, _>(4) != idx;
            if !stale {
                continue;
            }
            let re = |v: Option<String>| -> anyhow::Result<Option<String>> {
                v.map(|s| cipher.reencrypt(&s).with_context(|| format!("member {id}")))
                    .transpose()
            };
            sqlx::query("UPDATE members SET phone_enc = $1, phone_idx = $2, id_number_enc = $3, monthly_income_enc = $4 WHERE id = $5")
                .bind(cipher.encrypt(&phone))
                .bind(&idx)
                .bind(re(id_enc)?)
                .bind(re(income_enc)?)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            total += 1;
        }
        tx.commit().await?;
    }
    let entry = AuditEntry::system(
        now(),
        "cli",
        "pii.rotate_key",
        "data_key",
        Some(cipher.current_key_id().to_owned()),
    )
    .details(serde_json::json!({"members_rewritten": total}));
    audit::record(db.pool(), &entry).await?;
    Ok(total)
}
