//! `POST /pay/notify`, WeChat Pay's payment notifications (支付成功回调通知).
//!
//! The body is taken as raw bytes and verified as received (`timestamp\nnonce\nbody\n`), never
//! re-serialised; nothing of it is read before the signature holds. Answers follow WeChat Pay:
//! 204 with no body when accepted (credited, already credited, or recorded as an incident),
//! else 4xx/5xx with `{"code":"FAIL","message":...}` and WeChat Pay notifies again.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use wechat::pay::NotifyAnswer;

use super::service;
use crate::app::AppState;

fn fail(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        NotifyAnswer::failure_body(message),
    )
        .into_response()
}

pub async fn notify(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return fail(e.status(), "unreadable body"),
    };
    match service::receive_notification(&st, &headers, &body).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => fail(r.status, &r.message),
    }
}
