//! The mini-program's dues: my bills, and paying one with WeChat Pay (`wx.requestPayment`).

use axum::extract::State;
use serde::Serialize;
use wechat::pay::MiniProgramPayParams;

use super::{service, store};
use crate::{
    app::AppState,
    auth::mp_session::MpSession,
    http::{AppJson, Id},
    members,
    platform::{error::AppResult, time::rfc3339_shanghai},
};

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MpBill {
    pub id: i64,
    pub month: String,
    pub amount_fen: i64,
    /// `unpaid`, `paying` (an order is open) or `paid`.
    pub status: String,
    /// RFC 3339 (Beijing), once paid.
    pub paid_at: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MpBills {
    pub bills: Vec<MpBill>,
}

/// `GET /api/mp/dues` → `{"bills":[{"id","month","amount_fen","status","paid_at"}]}`, newest
/// month first; exempt months are not shown; a user not bound to the roster has none.
pub async fn bills(State(st): State<AppState>, session: MpSession) -> AppResult<AppJson<MpBills>> {
    let Some(member) = members::store::bound_to(&st.db, &session.openid).await? else {
        return Ok(AppJson(MpBills { bills: Vec::new() }));
    };
    let bills = store::bills_of_member(st.db.pool(), member.id)
        .await?
        .into_iter()
        .filter(|b| b.status != "exempt")
        .map(|b| MpBill {
            id: b.id,
            month: b.month,
            amount_fen: b.amount_fen,
            status: b.status,
            paid_at: b.paid_at.map(rfc3339_shanghai),
        })
        .collect();
    Ok(AppJson(MpBills { bills }))
}

/// `POST /api/mp/dues/{id}/pay` → exactly `{"timeStamp","nonceStr","package","signType":"RSA",
/// "paySign"}` for `wx.requestPayment`. Someone else's or an unknown bill → 404, a paid one → 409.
pub async fn pay(
    State(st): State<AppState>,
    session: MpSession,
    Id(id): Id,
) -> AppResult<AppJson<MiniProgramPayParams>> {
    Ok(AppJson(service::pay(&st, &session.openid, id).await?))
}
