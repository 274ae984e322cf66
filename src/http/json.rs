//! `AppJson<T>` / `AppQuery<T>`: axum's extractors with rejections in the one error shape.
//! Messages are sanitised: serde quotes offending values, and a value may be a phone number.

use axum::{
    body::Bytes,
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
        if !json_content_type(req.headers()) {
            return Err(AppError::rejected(
                StatusCode::BAD_REQUEST,
                "bad_json",
                "expected Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| json_rejection(JsonRejection::BytesRejection(e)))?;
        from_json(&bytes).map(AppJson)
    }
}

/// `application/json` or `application/…+json`, parameters aside.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserialise a body, with the path of a wrong field in the message. A struct is read from a
/// JSON object only: serde would also take an array of its fields in order (`[null, null]`),
/// which no client means and the document does not allow.
fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let syntax = || {
        AppError::rejected(
            StatusCode::BAD_REQUEST,
            "bad_json",
            "the body is not valid JSON",
        )
    };
    let value = serde_path_to_error::deserialize(ObjectsOnly(&mut de)).map_err(|e| {
        match e.inner().classify() {
            serde_json::error::Category::Data => AppError::Validation(sanitize(&e.to_string())),
            _ => syntax(),
        }
    })?;
    de.end().map_err(|_| syntax())?;
    Ok(value)
}

/// The top-level deserializer of [`from_json`]: everything as serde_json does it, except that
/// a struct must be an object.
struct ObjectsOnly<D>(D);

macro_rules! forward {
    ($($method:ident),*) => {$(
        fn $method<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
            self.0.$method(v)
        }
    )*};
}

impl<'de, D: serde::Deserializer<'de>> serde::Deserializer<'de> for ObjectsOnly<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any
    );

    fn deserialize_unit_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, v)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_newtype_struct(name, v)
    }

    fn deserialize_tuple<V: serde::de::Visitor<'de>>(
        self,
        len: usize,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple(len, v)
    }

    fn deserialize_tuple_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple_struct(name, len, v)
    }

    /// The one change: an object, never an array.
    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_map(v)
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, v)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
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

/// An optional JSON body (publishing takes one or none): empty or blank is `None`; malformed →
/// 400 `bad_json`, wrong shape → 422, over the limit → 413, as [`AppJson`] does.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::BadRequest(format!("could not read the body ({})", e.status()))
            }
        })?;
        parse_optional(&bytes).map(OptionalJson)
    }
}

fn parse_optional<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, AppError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    from_json(bytes).map(Some)
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
    use super::{parse_optional, sanitize, AppError, StatusCode};

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Publish {
        publish_at: Option<String>,
    }

    #[test]
    fn optional_bodies_parse_with_the_right_status() {
        let status = |r: Result<Option<Publish>, AppError>| r.unwrap_err().status();
        assert_eq!(status(parse_optional(b"{oops")), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(parse_optional(b"{\"publish_at\": 5}")),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert!(parse_optional::<Publish>(b" \n").unwrap().is_none());
        // A struct is an object, not an array of its fields.
        assert_eq!(
            status(parse_optional(b"[null]")),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(status(parse_optional(b"{} x")), StatusCode::BAD_REQUEST);
        let p: Option<Publish> =
            parse_optional(b"{\"publish_at\": \"2026-12-01T00:00:00+08:00\"}").unwrap();
        assert!(p.unwrap().publish_at.is_some());
    }

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
