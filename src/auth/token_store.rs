//! Opaque admin tokens: 32 random bytes (base64url) handed out once; only their SHA-256 is stored,
//! with an expiry and a revocation time. Console sessions are the same rows with kind `console`
//! and a CSRF synchroniser token.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{auth::Role, platform::db::Db};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Api,
    Console,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Api => "api",
            TokenKind::Console => "console",
        }
    }
}

pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub struct Issued {
    pub token: String,
    pub csrf: Option<String>,
    pub expires_at: i64,
}

pub async fn issue(
    db: &Db,
    user_id: i64,
    kind: TokenKind,
    now: i64,
    ttl_secs: u64,
    ip: Option<&str>,
) -> sqlx::Result<Issued> {
    let token = random_token();
    let csrf = (kind == TokenKind::Console).then(random_token);
    let expires_at = now + (ttl_secs as i64) * 1000;
    sqlx::query(
        "INSERT INTO admin_tokens (token_hash, user_id, kind, csrf_token, ip, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(hash_token(&token))
    .bind(user_id)
    .bind(kind.as_str())
    .bind(&csrf)
    .bind(ip)
    .bind(now)
    .bind(expires_at)
    .execute(db.pool())
    .await?;
    Ok(Issued {
        token,
        csrf,
        expires_at,
    })
}

/// A live token's owner, joined with the account (disabled accounts resolve to nothing).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub token_hash: String,
    pub kind: TokenKind,
    pub csrf: Option<String>,
    pub expires_at: i64,
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub org_unit_id: Option<i64>,
}

pub async fn resolve(db: &Db, token: &str, now: i64) -> sqlx::Result<Option<Resolved>> {
    let hash = hash_token(token);
    let row = sqlx::query(
        "SELECT t.kind, t.csrf_token, t.expires_at, u.id, u.username, u.role, u.org_unit_id \
         FROM admin_tokens t JOIN admin_users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.status = 'active'",
    )
    .bind(&hash)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.and_then(|r| {
        Some(Resolved {
            token_hash: hash,
            kind: if r.get::<String, _>(0) == "console" {
                TokenKind::Console
            } else {
                TokenKind::Api
            },
            csrf: r.get(1),
            expires_at: r.get(2),
            user_id: r.get(3),
            username: r.get(4),
            role: Role::parse(&r.get::<String, _>(5))?,
            org_unit_id: r.get(6),
        })
    }))
}

pub async fn revoke(db: &Db, token_hash: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE admin_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(token_hash)
    .execute(db.pool())
    .await
    .map(|_| ())
}

/// Revoke every token of `user_id` except `keep` (the caller's own, on password change).
pub async fn revoke_all_for_user<'c, E>(
    exec: E,
    user_id: i64,
    keep: Option<&str>,
    now: i64,
) -> sqlx::Result<u64>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    Ok(sqlx::query(
        "UPDATE admin_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND token_hash <> $3",
    )
    .bind(now)
    .bind(user_id)
    .bind(keep.unwrap_or(""))
    .execute(exec)
    .await?
    .rows_affected())
}

/// Drop rows that can no longer authenticate (a day after expiry, to keep recent ones for forensics).
pub async fn purge_expired(db: &Db, now: i64) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM admin_tokens WHERE expires_at < $1")
            .bind(now - 86_400_000)
            .execute(db.pool())
            .await?
            .rows_affected(),
    )
}
