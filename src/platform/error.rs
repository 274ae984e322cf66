//! The app's one error type and its one JSON shape: `{"error":{"code","message"}}`.
//! Causes are logged server-side; responses never carry SQL, stack traces or secrets.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Validation(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("{0}")]
    TooManyRequests(String),
    #[error("upstream: {0}")]
    Upstream(#[from] wechat::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("cache: {0}")]
    Cache(#[from] redis::RedisError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
    /// A rejection with a specific machine-readable code (e.g. `bad_signature`).
    #[error("{message}")]
    Rejected {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn rejected(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> AppError {
        AppError::Rejected {
            status,
            code,
            message: message.into(),
        }
    }
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Upstream(_) => StatusCode::BAD_GATEWAY,
            AppError::Db(e) if is_unique_violation(e) => StatusCode::CONFLICT,
            _ if self.is_database_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Db(_) | AppError::Cache(_) | AppError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            AppError::Rejected { status, .. } => *status,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::Validation(_) => "validation_failed",
            AppError::Unauthorized => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::PayloadTooLarge => "payload_too_large",
            AppError::TooManyRequests(_) => "rate_limited",
            AppError::Upstream(_) => "upstream_error",
            AppError::Db(e) if is_unique_violation(e) => "conflict",
            _ if self.is_database_unavailable() => "database_unavailable",
            AppError::Db(_) | AppError::Cache(_) | AppError::Internal(_) => "internal",
            AppError::Rejected { code, .. } => code,
        }
    }

    /// What the client may read: internal causes are replaced by a generic sentence.
    fn public_message(&self) -> String {
        match self {
            AppError::Upstream(wechat::Error::Api { errcode, .. }) => {
                format!("WeChat rejected the call (errcode {errcode})")
            }
            AppError::Upstream(_) => "WeChat could not be reached".into(),
            AppError::Db(e) if is_unique_violation(e) => "already exists".into(),
            _ if self.is_database_unavailable() => {
                "the database is unavailable; try again shortly".into()
            }
            AppError::Db(_) | AppError::Cache(_) | AppError::Internal(_) => {
                "internal error; the incident has been logged".into()
            }
            other => other.to_string(),
        }
    }
}

impl AppError {
    /// The database could not be reached (see [`crate::platform::db::is_unavailable`]), directly
    /// or as the cause of an internal error: a 503 `database_unavailable`, never a 500.
    pub fn is_database_unavailable(&self) -> bool {
        match self {
            AppError::Db(e) => crate::platform::db::is_unavailable(e),
            AppError::Internal(e) => e.chain().any(|c| {
                c.downcast_ref::<sqlx::Error>()
                    .is_some_and(crate::platform::db::is_unavailable)
            }),
            _ => false,
        }
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Build the one error body by hand (used by extractors and fallbacks too).
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(code = self.code(), "request rejected");
        }
        error_response(status, self.code(), &self.public_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_a_503_with_its_own_code_even_inside_an_internal_error() {
        for e in [
            AppError::Db(sqlx::Error::PoolTimedOut),
            AppError::Db(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())),
            AppError::Internal(
                anyhow::Error::new(sqlx::Error::PoolTimedOut).context("crediting a payment"),
            ),
        ] {
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE, "{e:?}");
            assert_eq!(e.code(), "database_unavailable", "{e:?}");
        }
        let e = AppError::Db(sqlx::Error::RowNotFound);
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
    }
}
