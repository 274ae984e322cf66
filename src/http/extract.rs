//! Extractors and envelopes every feature's handlers share: the path id, pagination and the list
//! envelope. (The JSON body/query extractors with the one error shape are in `json.rs`.)

use axum::extract::{FromRequestParts, Path};
use serde::Serialize;

use crate::platform::{
    db::Page,
    error::{AppError, AppResult},
};

/// The path's parameters as `T`; a path that does not fit names nothing: 404 in the one shape.
async fn path_or_404<T, S>(
    parts: &mut axum::http::request::Parts,
    state: &S,
    what: &str,
) -> Result<T, AppError>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    Path::<T>::from_request_parts(parts, state)
        .await
        .map(|Path(v)| v)
        .map_err(|_| AppError::NotFound(what.into()))
}

/// `FromRequestParts` for a path type: `path_or_404` of the parameters, then the type.
macro_rules! from_path {
    ($ty:ident, $params:ty, $what:literal, $make:expr) => {
        impl<S: Send + Sync> FromRequestParts<S> for $ty {
            type Rejection = AppError;

            async fn from_request_parts(
                parts: &mut axum::http::request::Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                path_or_404::<$params, S>(parts, state, $what)
                    .await
                    .map($make)
            }
        }
    };
}

/// A numeric id from the path; anything else names nothing, so it is a 404 in the one shape.
#[derive(Debug, Clone, Copy)]
pub struct Id(pub i64);

from_path!(Id, i64, "resource", Id);

/// A numeric id and a key from the path (`/{id}/steps/{step}`); a non-numeric id names nothing,
/// so it is a 404 in the one shape.
#[derive(Debug, Clone)]
pub struct IdKey(pub i64, pub String);

from_path!(IdKey, (i64, String), "resource", |(id, key)| IdKey(id, key));

/// Two numeric ids from the path (`/{id}/photos/{photo_id}`); anything else: 404 in the one shape.
#[derive(Debug, Clone, Copy)]
pub struct IdPair(pub i64, pub i64);

from_path!(IdPair, (i64, i64), "resource", |(a, b)| IdPair(a, b));

/// A month `YYYY-MM` from the path (the service checks it: 422 when malformed). Its own type so
/// that the OpenAPI document can say what a month is.
#[derive(Debug, Clone)]
pub struct MonthKey(pub String);

from_path!(MonthKey, String, "month", MonthKey);

/// One list envelope for every paginated answer.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ListOut<T> {
    pub items: Vec<T>,
    pub page: i64,
    pub page_size: i64,
    pub total: i64,
}

/// A list that is not paginated.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ItemsOut<T> {
    pub items: Vec<T>,
}

/// A blank query value is an absent one.
pub fn blank_to_none(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub use crate::platform::db::MAX_PAGE;

fn page_error() -> AppError {
    AppError::Validation(format!("page: must be a whole number from 1 to {MAX_PAGE}"))
}

/// A typed `page` query value (1-based, at most [`MAX_PAGE`]); absent = 1. 422 otherwise.
pub fn page_number(page: Option<i64>) -> AppResult<i64> {
    match page {
        None => Ok(1),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(page_error()),
    }
}

/// `page` is 1-based (at most [`MAX_PAGE`]); `page_size` is 1..=`max_size`.
pub fn page_of(
    page: &Option<String>,
    page_size: &Option<String>,
    max_size: i64,
) -> AppResult<Page> {
    let number = match blank_to_none(page) {
        None => 1,
        Some(p) => p
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(page_error)?,
    };
    let size = match blank_to_none(page_size) {
        None => 20.min(max_size),
        Some(p) => p
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max_size).contains(n))
            .ok_or_else(|| {
                AppError::Validation(format!(
                    "page_size: must be a whole number from 1 to {max_size}"
                ))
            })?,
    };
    Ok(Page { number, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_bounded() {
        assert_eq!(
            page_of(&None, &None, 50).unwrap(),
            Page {
                number: 1,
                size: 20
            }
        );
        assert_eq!(
            page_of(&Some("3".into()), &Some("50".into()), 50).unwrap(),
            Page {
                number: 3,
                size: 50
            }
        );
        for (p, s) in [
            ("0", "1"),
            ("-1", "1"),
            ("x", "1"),
            ("1", "51"),
            ("1", "0"),
            ("100001", "1"),
            ("9223372036854775807", "50"),
            ("99999999999999999999", "1"),
        ] {
            assert!(
                page_of(&Some(p.into()), &Some(s.into()), 50).is_err(),
                "{p} {s}"
            );
        }
        assert_eq!(page_number(None).unwrap(), 1);
        assert_eq!(page_number(Some(MAX_PAGE)).unwrap(), MAX_PAGE);
        for bad in [0, -1, MAX_PAGE + 1, i64::MAX, i64::MIN] {
            assert!(page_number(Some(bad)).is_err(), "{bad}");
        }
    }
}
