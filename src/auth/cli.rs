//! `dangjian admin ...`: account management and key rotation from the command line (operators
//! with shell access are administrators). Every change is audited with actor `cli`.

use anyhow::{bail, Context};

use crate::{
    auth::{password, store as users, token_store as tokens, Role},
    platform::audit::{self, AuditEntry},
    platform::config::Settings,
    platform::db::Db,
    platform::org,
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
        // Personal data lives in the members feature: `main` runs `members::cli::rotate_key`.
        AdminCommand::RotateKey | AdminCommand::GenerateKey => unreachable!("handled by main"),
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
