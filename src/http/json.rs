//! `AppJson<T>` / `AppQuery<T>`: axum's extractors with rejections in the one error shape.
//! Messages are sanitised: serde quotes offending values, and a value may be a phone number.

use axum::{
    extract::{rejection::JsonRejection, FromRequest, FromRequestParts, Query, Request},
    http::{request::Parts, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::platform::error::AppError;

/// JSON body extractor and response: malformed JSON → 400 `bad_json`, wrong shape → 422
/// `validation_failed`, over the body limit → 413 `payload_too_large`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(AppJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

pub fn json_rejection(r: JsonRejection) -> AppError {
    match r {
        JsonRejection::JsonDataError(e) => AppError::Validation(sanitize(&e.body_text())),
        JsonRejection::JsonSyntaxError(_) => AppError::rejected(
            StatusCode::BAD_REQUEST,
            "bad_json",
            "the body is not valid JSON",
        ),
        JsonRejection::MissingJsonContentType(_) => AppError::rejected(
            StatusCode::BAD_REQUEST,
            "bad_json",
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            AppError::PayloadTooLarge
        }
        other => AppError::BadRequest(format!("could not read the body ({})", other.status())),
    }
}

/// Query-string extractor: a bad query → 400 `bad_request` (sanitised message).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| AppQuery(v))
            .map_err(|e| AppError::BadRequest(sanitize(&e.body_text())))
    }
}

/// Drop quoted values from a serde message: `invalid type: string "1380…", expected i64` →
/// `invalid type: string …, expected i64`. Field names (in backticks) are kept.
pub fn sanitize(msg: &str) -> String {
    static QUOTED: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = QUOTED.get_or_init(|| {
        regex::Regex::new(r#""(?:[^"\\]|\\.)*"|(integer|floating point|char) `[^`]*`|\b\d{4,}\b"#)
            .expect("regex")
    });
    let msg = msg
        .split_once(": ")
        .map(|(_, rest)| rest)
        .filter(|_| msg.starts_with("Failed to"))
        .unwrap_or(msg);
    re.replace_all(msg, "…").into_owned()
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn sanitize_removes_values_but_keeps_field_names() {
        let m = sanitize("Failed to deserialize the JSON body into the target type: [0].monthly_income_fen: invalid type: string \"13800000001\", expected i64 at line 1 column 40");
        assert!(!m.contains("13800000001"), "{m}");
        assert!(m.contains("monthly_income_fen"), "{m}");
        let m = sanitize("invalid value: integer `13800000001`, expected u8");
        assert!(!m.contains("13800000001"), "{m}");
        assert_eq!(sanitize("missing field `name`"), "missing field `name`");
    }
}
