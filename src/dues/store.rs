//! The dues tables' SQL, the only place it lives: months, profiles, bills, orders, payments,
//! notifications, incidents, adjustments and trade bills. Functions take an executor (a pool
//! for reads, `&mut *tx` inside a transaction) and never the app state.
//!
//! Exactly-once is the database's job here: `UNIQUE (member_id, month)` on bills, one live order
//! per bill (a partial unique index), and `dues_payments` UNIQUE on bill, order, out_trade_no and
//! transaction_id, so a second credit of anything is a conflict whoever attempts it.

use sqlx::{any::AnyRow, Any, Executor, Row};

use crate::platform::{db::Backend, org::OrgScope, pii::Column};

// ---------------------------------------------------------------- months

#[derive(Debug, Clone)]
pub struct MonthRow {
    pub month: String,
    pub status: String,
    pub opened_at: i64,
    pub opened_by: String,
    pub settled_at: Option<i64>,
    pub settled_by: Option<String>,
}

fn month_row(r: &AnyRow) -> MonthRow {
    MonthRow {
        month: r.get(0),
        status: r.get(1),
        opened_at: r.get(2),
        opened_by: r.get(3),
        settled_at: r.get(4),
        settled_by: r.get(5),
    }
}

const MONTH_COLS: &str = "month, status, opened_at, opened_by, settled_at, settled_by";

pub async fn month_get<'c, E>(exec: E, month: &str) -> sqlx::Result<Option<MonthRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!("SELECT {MONTH_COLS} FROM dues_months WHERE month = $1");
    Ok(sqlx::query(&sql)
        .bind(month)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(month_row))
}

/// Open `month` unless it exists; true when this call opened it.
pub async fn month_open<'c, E>(exec: E, month: &str, by: &str, now: i64) -> sqlx::Result<bool>
where
    E: Executor<'c, Database = Any>,
{
    let r = sqlx::query(
        "INSERT INTO dues_months (month, status, opened_at, opened_by) VALUES ($1, 'open', $2, $3) \
         ON CONFLICT (month) DO NOTHING",
    )
    .bind(month)
    .bind(now)
    .bind(by)
    .execute(exec)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Settle an open month; false when it is not open (absent or already settled).
pub async fn month_settle<'c, E>(exec: E, month: &str, by: &str, now: i64) -> sqlx::Result<bool>
where
    E: Executor<'c, Database = Any>,
{
    let r = sqlx::query(
        "UPDATE dues_months SET status = 'settled', settled_at = $1, settled_by = $2 \
         WHERE month = $3 AND status = 'open'",
    )
    .bind(now)
    .bind(by)
    .bind(month)
    .execute(exec)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn months_list<'c, E>(exec: E) -> sqlx::Result<Vec<MonthRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!("SELECT {MONTH_COLS} FROM dues_months ORDER BY month DESC");
    Ok(sqlx::query(&sql)
        .fetch_all(exec)
        .await?
        .iter()
        .map(month_row)
        .collect())
}

// ---------------------------------------------------------------- profiles

#[derive(Debug, Clone)]
pub struct ProfileRow {
    pub member_id: i64,
    pub exempt_reason: Option<String>,
    pub voluntary_fen: Option<i64>,
    pub updated_at: i64,
    pub updated_by: String,
}

fn profile_row(r: &AnyRow) -> ProfileRow {
    ProfileRow {
        member_id: r.get(0),
        exempt_reason: r.get(1),
        voluntary_fen: r.get(2),
        updated_at: r.get(3),
        updated_by: r.get(4),
    }
}

const PROFILE_COLS: &str = "member_id, exempt_reason, voluntary_fen, updated_at, updated_by";

pub async fn profiles_all<'c, E>(exec: E) -> sqlx::Result<Vec<ProfileRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!("SELECT {PROFILE_COLS} FROM dues_profiles");
    Ok(sqlx::query(&sql)
        .fetch_all(exec)
        .await?
        .iter()
        .map(profile_row)
        .collect())
}

pub async fn profile_get<'c, E>(exec: E, member_id: i64) -> sqlx::Result<Option<ProfileRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!("SELECT {PROFILE_COLS} FROM dues_profiles WHERE member_id = $1");
    Ok(sqlx::query(&sql)
        .bind(member_id)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(profile_row))
}

pub async fn profile_upsert<'c, E>(
    exec: E,
    member_id: i64,
    exempt_reason: Option<&str>,
    voluntary_fen: Option<i64>,
    by: &str,
    now: i64,
) -> sqlx::Result<()>
where
    E: Executor<'c, Database = Any>,
{
    sqlx::query(
        "INSERT INTO dues_profiles (member_id, exempt_reason, voluntary_fen, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (member_id) DO UPDATE SET \
         exempt_reason = excluded.exempt_reason, voluntary_fen = excluded.voluntary_fen, \
         updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(member_id)
    .bind(exempt_reason)
    .bind(voluntary_fen)
    .bind(now)
    .bind(by)
    .execute(exec)
    .await
    .map(|_| ())
}

// ---------------------------------------------------------------- bills

#[derive(Debug, Clone)]
pub struct BillRow {
    pub id: i64,
    pub member_id: i64,
    pub month: String,
    pub org_unit_id: i64,
    pub amount_fen: i64,
    pub standard_fen: i64,
    pub rule: String,
    pub standard_rule: String,
    pub base_enc: Option<String>,
    pub note: Option<String>,
    pub status: String,
    pub paid_fen: Option<i64>,
    pub paid_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const BILL_COLS: &str = "b.id, b.member_id, b.month, b.org_unit_id, b.amount_fen, b.standard_fen, \
     b.rule, b.standard_rule, b.base_enc, b.note, b.status, b.paid_fen, b.paid_at, b.created_at, \
     b.updated_at";

fn bill_row(r: &AnyRow) -> BillRow {
    BillRow {
        id: r.get(0),
        member_id: r.get(1),
        month: r.get(2),
        org_unit_id: r.get(3),
        amount_fen: r.get(4),
        standard_fen: r.get(5),
        rule: r.get(6),
        standard_rule: r.get(7),
        base_enc: r.get(8),
        note: r.get(9),
        status: r.get(10),
        paid_fen: r.get(11),
        paid_at: r.get(12),
        created_at: r.get(13),
        updated_at: r.get(14),
    }
}

/// A bill to insert (the assessment's snapshot).
pub struct NewBill<'a> {
    pub member_id: i64,
    pub month: &'a str,
    pub org_unit_id: i64,
    pub amount_fen: i64,
    pub standard_fen: i64,
    pub rule: &'a str,
    pub standard_rule: &'a str,
    pub note: Option<&'a str>,
    pub status: &'a str,
}

/// The bill's income base (personal data), sealed to the bill's row once it exists.
pub const BASE: Column = Column::new("dues_bills", "base_enc");

/// Insert unless the member already has a bill for the month: Some(id) when created.
pub async fn bill_insert<'c, E>(exec: E, b: &NewBill<'_>, now: i64) -> sqlx::Result<Option<i64>>
where
    E: Executor<'c, Database = Any>,
{
    Ok(sqlx::query(
        "INSERT INTO dues_bills (member_id, month, org_unit_id, amount_fen, standard_fen, rule, \
         standard_rule, note, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
         ON CONFLICT (member_id, month) DO NOTHING RETURNING id",
    )
    .bind(b.member_id)
    .bind(b.month)
    .bind(b.org_unit_id)
    .bind(b.amount_fen)
    .bind(b.standard_fen)
    .bind(b.rule)
    .bind(b.standard_rule)
    .bind(b.note)
    .bind(b.status)
    .bind(now)
    .fetch_optional(exec)
    .await?
    .map(|r| r.get(0)))
}

pub async fn bill_get<'c, E>(exec: E, id: i64) -> sqlx::Result<Option<BillRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!("SELECT {BILL_COLS} FROM dues_bills b WHERE b.id = $1");
    Ok(sqlx::query(&sql)
        .bind(id)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(bill_row))
}

/// A member's bills, newest month first.
pub async fn bills_of_member<'c, E>(exec: E, member_id: i64) -> sqlx::Result<Vec<BillRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!(
        "SELECT {BILL_COLS} FROM dues_bills b WHERE b.member_id = $1 ORDER BY b.month DESC, b.id DESC"
    );
    Ok(sqlx::query(&sql)
        .bind(member_id)
        .fetch_all(exec)
        .await?
        .iter()
        .map(bill_row)
        .collect())
}

/// What the bill list filters by; scope conditions are SQL on integer ids.
pub struct BillFilter<'a> {
    pub month: Option<&'a str>,
    pub status: Option<&'a str>,
    pub scope: &'a OrgScope,
    pub unit: Option<&'a OrgScope>,
    /// Only these members' bills (a name search resolved through the roster); empty: none.
    pub members: Option<&'a [i64]>,
}

impl BillFilter<'_> {
    fn where_(&self) -> (String, Vec<String>) {
        let mut cond = vec![self.scope.sql_condition("b.org_unit_id")];
        if let Some(u) = self.unit {
            cond.push(u.sql_condition("b.org_unit_id"));
        }
        match self.members {
            None => {}
            Some([]) => cond.push("1=0".into()),
            Some(ids) => {
                // Integer ids from the database, inlined.
                let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                cond.push(format!("b.member_id IN ({})", list.join(",")));
            }
        }
        let mut args = Vec::new();
        if let Some(m) = self.month {
            args.push(m.to_owned());
            cond.push(format!("b.month = ${}", args.len()));
        }
        if let Some(s) = self.status {
            args.push(s.to_owned());
            cond.push(format!("b.status = ${}", args.len()));
        }
        (cond.join(" AND "), args)
    }
}

/// One page of bills (by month, org unit, member) and the total.
pub async fn bills_list<'c, E>(
    exec: E,
    f: &BillFilter<'_>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<BillRow>>
where
    E: Executor<'c, Database = Any>,
{
    let (where_, args) = f.where_();
    let sql = format!(
        "SELECT {BILL_COLS} FROM dues_bills b WHERE {where_} \
         ORDER BY b.month DESC, b.org_unit_id, b.member_id LIMIT {limit} OFFSET {offset}"
    );
    let mut q = sqlx::query(&sql);
    for a in &args {
        q = q.bind(a);
    }
    Ok(q.fetch_all(exec).await?.iter().map(bill_row).collect())
}

pub async fn bills_count<'c, E>(exec: E, f: &BillFilter<'_>) -> sqlx::Result<i64>
where
    E: Executor<'c, Database = Any>,
{
    let (where_, args) = f.where_();
    let sql = format!("SELECT COUNT(*) FROM dues_bills b WHERE {where_}");
    let mut q = sqlx::query(&sql);
    for a in &args {
        q = q.bind(a);
    }
    Ok(q.fetch_one(exec).await?.get(0))
}

/// Set a bill's amount by hand (never a paid one): the rule becomes `rule`, the status
/// `status` (`exempt` for 0, else `unpaid`). False when the bill is paid or paying.
pub async fn bill_adjust<'c, E>(
    exec: E,
    id: i64,
    amount_fen: i64,
    rule: &str,
    note: Option<&str>,
    status: &str,
    now: i64,
) -> sqlx::Result<bool>
where
    E: Executor<'c, Database = Any>,
{
    let r = sqlx::query(
        "UPDATE dues_bills SET amount_fen = $1, rule = $2, note = $3, status = $4, updated_at = $5 \
         WHERE id = $6 AND status IN ('unpaid', 'exempt')",
    )
    .bind(amount_fen)
    .bind(rule)
    .bind(note)
    .bind(status)
    .bind(now)
    .bind(id)
    .execute(exec)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// `unpaid`/`paying` → `paying` (an order is live). False when the bill is paid or exempt.
pub async fn bill_start_paying<'c, E>(exec: E, id: i64, now: i64) -> sqlx::Result<bool>
where
    E: Executor<'c, Database = Any>,
{
    let r = sqlx::query(
        "UPDATE dues_bills SET status = 'paying', updated_at = $1 \
         WHERE id = $2 AND status IN ('unpaid', 'paying') AND amount_fen > 0",
    )
    .bind(now)
    .bind(id)
    .execute(exec)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// `paying` → `unpaid` (its order closed or failed).
pub async fn bill_stop_paying<'c, E>(exec: E, id: i64, now: i64) -> sqlx::Result<bool>
where
    E: Executor<'c, Database = Any>,
{
    let r = sqlx::query(
        "UPDATE dues_bills SET status = 'unpaid', updated_at = $1 WHERE id = $2 AND status = 'paying'",
    )
    .bind(now)
    .bind(id)
    .execute(exec)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Mark paid, once: false when it already was.
pub async fn bill_mark_paid<'c, E>(
    exec: E,
    id: i64,
    paid_fen: i64,
    paid_at: i64,
    now: i64,
) -> sqlx::Result<bool>
where
    E: Executor<'c, Database = Any>,
{
    let r = sqlx::query(
        "UPDATE dues_bills SET status = 'paid', paid_fen = $1, paid_at = $2, updated_at = $3 \
         WHERE id = $4 AND status <> 'paid'",
    )
    .bind(paid_fen)
    .bind(paid_at)
    .bind(now)
    .bind(id)
    .execute(exec)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn adjustment_insert<'c, E>(
    exec: E,
    bill_id: i64,
    old_fen: i64,
    new_fen: i64,
    reason: &str,
    actor: &str,
    now: i64,
) -> sqlx::Result<i64>
where
    E: Executor<'c, Database = Any>,
{
    Ok(sqlx::query(
        "INSERT INTO dues_adjustments (bill_id, old_amount_fen, new_amount_fen, reason, actor, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(bill_id)
    .bind(old_fen)
    .bind(new_fen)
    .bind(reason)
    .bind(actor)
    .bind(now)
    .fetch_one(exec)
    .await?
    .get(0))
}

/// One adjustment of a bill, as recorded.
#[derive(Debug, Clone)]
pub struct AdjustmentRow {
    pub old_amount_fen: i64,
    pub new_amount_fen: i64,
    pub reason: String,
    pub actor: String,
    pub created_at: i64,
}

/// A bill's adjustments, oldest first.
pub async fn adjustments_of_bill<'c, E>(exec: E, bill_id: i64) -> sqlx::Result<Vec<AdjustmentRow>>
where
    E: Executor<'c, Database = Any>,
{
    Ok(sqlx::query(
        "SELECT old_amount_fen, new_amount_fen, reason, actor, created_at FROM dues_adjustments \
         WHERE bill_id = $1 ORDER BY id",
    )
    .bind(bill_id)
    .fetch_all(exec)
    .await?
    .iter()
    .map(|r| AdjustmentRow {
        old_amount_fen: r.get(0),
        new_amount_fen: r.get(1),
        reason: r.get(2),
        actor: r.get(3),
        created_at: r.get(4),
    })
    .collect())
}

// ---------------------------------------------------------------- orders

pub const LIVE: [&str; 2] = ["created", "prepaid"];

#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: i64,
    pub bill_id: i64,
    pub out_trade_no: String,
    pub amount_fen: i64,
    pub payer_openid: String,
    pub description: String,
    pub notify_url: String,
    pub time_expire: i64,
    pub prepay_id: Option<String>,
    pub prepay_expires_at: Option<i64>,
    pub status: String,
    pub transaction_id: Option<String>,
    pub trade_state: Option<String>,
    pub next_check_at: i64,
    pub attempts: i64,
    pub created_at: i64,
}

impl OrderRow {
    pub fn is_live(&self) -> bool {
        LIVE.contains(&self.status.as_str())
    }
}

const ORDER_COLS: &str = "id, bill_id, out_trade_no, amount_fen, payer_openid, description, \
     notify_url, time_expire, prepay_id, prepay_expires_at, status, transaction_id, trade_state, \
     next_check_at, attempts, created_at";

fn order_row(r: &AnyRow) -> OrderRow {
    OrderRow {
        id: r.get(0),
        bill_id: r.get(1),
        out_trade_no: r.get(2),
        amount_fen: r.get(3),
        payer_openid: r.get(4),
        description: r.get(5),
        notify_url: r.get(6),
        time_expire: r.get(7),
        prepay_id: r.get(8),
        prepay_expires_at: r.get(9),
        status: r.get(10),
        transaction_id: r.get(11),
        trade_state: r.get(12),
        next_check_at: r.get(13),
        attempts: r.get(14),
        created_at: r.get(15),
    }
}

pub struct NewOrder<'a> {
    pub bill_id: i64,
    pub out_trade_no: &'a str,
    pub amount_fen: i64,
    pub payer_openid: &'a str,
    pub description: &'a str,
    pub notify_url: &'a str,
    pub time_expire: i64,
    pub next_check_at: i64,
}

/// Insert a live order; a unique violation means the bill already has one.
pub async fn order_insert<'c, E>(exec: E, o: &NewOrder<'_>, now: i64) -> sqlx::Result<i64>
where
    E: Executor<'c, Database = Any>,
{
    Ok(sqlx::query(
        "INSERT INTO dues_orders (bill_id, out_trade_no, amount_fen, payer_openid, description, \
         notify_url, time_expire, status, next_check_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'created', $8, $9, $9) RETURNING id",
    )
    .bind(o.bill_id)
    .bind(o.out_trade_no)
    .bind(o.amount_fen)
    .bind(o.payer_openid)
    .bind(o.description)
    .bind(o.notify_url)
    .bind(o.time_expire)
    .bind(o.next_check_at)
    .bind(now)
    .fetch_one(exec)
    .await?
    .get(0))
}

pub async fn order_live_for_bill<'c, E>(exec: E, bill_id: i64) -> sqlx::Result<Option<OrderRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!(
        "SELECT {ORDER_COLS} FROM dues_orders WHERE bill_id = $1 AND status IN ('created', 'prepaid')"
    );
    Ok(sqlx::query(&sql)
        .bind(bill_id)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(order_row))
}

pub async fn order_by_out_trade_no<'c, E>(exec: E, no: &str) -> sqlx::Result<Option<OrderRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!("SELECT {ORDER_COLS} FROM dues_orders WHERE out_trade_no = $1");
    Ok(sqlx::query(&sql)
        .bind(no)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(order_row))
}

pub async fn order_get<'c, E>(exec: E, id: i64) -> sqlx::Result<Option<OrderRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!("SELECT {ORDER_COLS} FROM dues_orders WHERE id = $1");
    Ok(sqlx::query(&sql)
        .bind(id)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(order_row))
}

/// The prepay id WeChat Pay answered (while the order is live).
pub async fn order_prepaid<'c, E>(
    exec: E,
    id: i64,
    prepay_id: &str,
    prepay_expires_at: i64,
    now: i64,
) -> sqlx::Result<bool>
where
    E: Executor<'c, Database = Any>,
{
    let r = sqlx::query(
        "UPDATE dues_orders SET prepay_id = $1, prepay_expires_at = $2, status = 'prepaid', \
         last_error = NULL, updated_at = $3 WHERE id = $4 AND status IN ('created', 'prepaid')",
    )
    .bind(prepay_id)
    .bind(prepay_expires_at)
    .bind(now)
    .bind(id)
    .execute(exec)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A live order ends unpaid (`closed` or `failed`): false when it was not live any more.
pub async fn order_end<'c, E>(
    exec: E,
    id: i64,
    status: &str,
    trade_state: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> sqlx::Result<bool>
where
    E: Executor<'c, Database = Any>,
{
    let r = sqlx::query(
        "UPDATE dues_orders SET status = $1, trade_state = COALESCE($2, trade_state), \
         last_error = $3, lease_owner = NULL, lease_until = NULL, updated_at = $4 \
         WHERE id = $5 AND status IN ('created', 'prepaid')",
    )
    .bind(status)
    .bind(trade_state)
    .bind(error)
    .bind(now)
    .bind(id)
    .execute(exec)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The order is paid by `transaction_id` (once).
pub async fn order_mark_paid<'c, E>(
    exec: E,
    id: i64,
    transaction_id: &str,
    now: i64,
) -> sqlx::Result<bool>
where
    E: Executor<'c, Database = Any>,
{
    let r = sqlx::query(
        "UPDATE dues_orders SET status = 'paid', transaction_id = $1, trade_state = 'SUCCESS', \
         lease_owner = NULL, lease_until = NULL, updated_at = $2 WHERE id = $3 AND status <> 'paid'",
    )
    .bind(transaction_id)
    .bind(now)
    .bind(id)
    .execute(exec)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Claim up to `limit` live orders due for a check, with a lease: another replica skips them
/// (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite runs the statement under its write lock).
pub async fn orders_claim<'c, E>(
    exec: E,
    backend: Backend,
    owner: &str,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> sqlx::Result<Vec<OrderRow>>
where
    E: Executor<'c, Database = Any>,
{
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE dues_orders SET lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id IN (SELECT id FROM dues_orders WHERE status IN ('created', 'prepaid') \
           AND next_check_at <= $3 AND (lease_until IS NULL OR lease_until < $3) \
           ORDER BY next_check_at LIMIT {limit}{lock}) \
         AND status IN ('created', 'prepaid') AND (lease_until IS NULL OR lease_until < $3) \
         RETURNING {ORDER_COLS}"
    );
    Ok(sqlx::query(&sql)
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_all(exec)
        .await?
        .iter()
        .map(order_row)
        .collect())
}

/// Give a claimed, still-live order back with its next check time.
pub async fn order_release<'c, E>(
    exec: E,
    id: i64,
    owner: &str,
    next_check_at: i64,
    trade_state: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> sqlx::Result<()>
where
    E: Executor<'c, Database = Any>,
{
    sqlx::query(
        "UPDATE dues_orders SET next_check_at = $1, trade_state = COALESCE($2, trade_state), \
         last_error = $3, lease_owner = NULL, lease_until = NULL, updated_at = $4 \
         WHERE id = $5 AND lease_owner = $6",
    )
    .bind(next_check_at)
    .bind(trade_state)
    .bind(error)
    .bind(now)
    .bind(id)
    .bind(owner)
    .execute(exec)
    .await
    .map(|_| ())
}

// ---------------------------------------------------------------- payments

#[derive(Debug, Clone)]
pub struct PaymentRow {
    pub id: i64,
    pub bill_id: i64,
    pub order_id: i64,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub amount_fen: i64,
    pub bill_month: String,
    pub org_unit_id: i64,
    pub paid_at: i64,
    pub source: String,
}

const PAYMENT_COLS: &str = "p.id, p.bill_id, p.order_id, p.out_trade_no, p.transaction_id, \
     p.amount_fen, p.bill_month, p.org_unit_id, p.paid_at, p.source";

fn payment_row(r: &AnyRow) -> PaymentRow {
    PaymentRow {
        id: r.get(0),
        bill_id: r.get(1),
        order_id: r.get(2),
        out_trade_no: r.get(3),
        transaction_id: r.get(4),
        amount_fen: r.get(5),
        bill_month: r.get(6),
        org_unit_id: r.get(7),
        paid_at: r.get(8),
        source: r.get(9),
    }
}

pub struct NewPayment<'a> {
    pub bill_id: i64,
    pub order_id: i64,
    pub out_trade_no: &'a str,
    pub transaction_id: &'a str,
    pub amount_fen: i64,
    pub payer_total_fen: Option<i64>,
    pub bill_month: &'a str,
    pub org_unit_id: i64,
    pub success_time: Option<&'a str>,
    pub paid_at: i64,
    pub source: &'a str,
}

/// Record a payment unless the bill, order, order number or transaction already has one:
/// Some(id) when this call credited it. On PostgreSQL a concurrent insert of the same keys waits
/// for the first to commit, then does nothing.
pub async fn payment_insert<'c, E>(
    exec: E,
    p: &NewPayment<'_>,
    now: i64,
) -> sqlx::Result<Option<i64>>
where
    E: Executor<'c, Database = Any>,
{
    Ok(sqlx::query(
        "INSERT INTO dues_payments (bill_id, order_id, out_trade_no, transaction_id, amount_fen, \
         payer_total_fen, bill_month, org_unit_id, success_time, paid_at, source, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(p.bill_id)
    .bind(p.order_id)
    .bind(p.out_trade_no)
    .bind(p.transaction_id)
    .bind(p.amount_fen)
    .bind(p.payer_total_fen)
    .bind(p.bill_month)
    .bind(p.org_unit_id)
    .bind(p.success_time)
    .bind(p.paid_at)
    .bind(p.source)
    .bind(now)
    .fetch_optional(exec)
    .await?
    .map(|r| r.get(0)))
}

/// The payment that holds any of these keys (what a conflicting insert collided with).
pub async fn payment_conflicting<'c, E>(
    exec: E,
    bill_id: i64,
    out_trade_no: &str,
    transaction_id: &str,
) -> sqlx::Result<Option<PaymentRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!(
        "SELECT {PAYMENT_COLS} FROM dues_payments p \
         WHERE p.bill_id = $1 OR p.out_trade_no = $2 OR p.transaction_id = $3 ORDER BY p.id LIMIT 1"
    );
    Ok(sqlx::query(&sql)
        .bind(bill_id)
        .bind(out_trade_no)
        .bind(transaction_id)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(payment_row))
}

/// Payments made in `[from, to)` (unix ms), by time.
pub async fn payments_between<'c, E>(exec: E, from: i64, to: i64) -> sqlx::Result<Vec<PaymentRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!(
        "SELECT {PAYMENT_COLS} FROM dues_payments p WHERE p.paid_at >= $1 AND p.paid_at < $2 ORDER BY p.paid_at, p.id"
    );
    Ok(sqlx::query(&sql)
        .bind(from)
        .bind(to)
        .fetch_all(exec)
        .await?
        .iter()
        .map(payment_row)
        .collect())
}

pub async fn payments_by_out_trade_nos<'c, E>(
    exec: E,
    nos: &[String],
) -> sqlx::Result<Vec<PaymentRow>>
where
    E: Executor<'c, Database = Any> + Copy,
{
    let mut out = Vec::new();
    for chunk in nos.chunks(500) {
        let ph: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {PAYMENT_COLS} FROM dues_payments p WHERE p.out_trade_no IN ({})",
            ph.join(",")
        );
        let mut q = sqlx::query(&sql);
        for n in chunk {
            q = q.bind(n);
        }
        out.extend(q.fetch_all(exec).await?.iter().map(payment_row));
    }
    Ok(out)
}

// ---------------------------------------------------------------- notifications

pub struct NewNotification<'a> {
    pub notification_id: &'a str,
    pub event_type: &'a str,
    pub out_trade_no: Option<&'a str>,
    pub transaction_id: Option<&'a str>,
    pub outcome: &'a str,
    pub body: &'a str,
}

/// Store a verified notification once per WeChat notification id: false when it was already
/// stored (and so already handled: the row commits with what it caused).
pub async fn notification_insert<'c, E>(
    exec: E,
    n: &NewNotification<'_>,
    now: i64,
) -> sqlx::Result<bool>
where
    E: Executor<'c, Database = Any>,
{
    let r = sqlx::query(
        "INSERT INTO dues_notifications (notification_id, event_type, out_trade_no, transaction_id, \
         outcome, body, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (notification_id) DO NOTHING",
    )
    .bind(n.notification_id)
    .bind(n.event_type)
    .bind(n.out_trade_no)
    .bind(n.transaction_id)
    .bind(n.outcome)
    .bind(n.body)
    .bind(now)
    .execute(exec)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Whether a notification id is stored. A stored one was handled: its row commits together with
/// what it caused.
pub async fn notification_seen<'c, E>(exec: E, notification_id: &str) -> sqlx::Result<bool>
where
    E: Executor<'c, Database = Any>,
{
    Ok(
        sqlx::query("SELECT 1 FROM dues_notifications WHERE notification_id = $1")
            .bind(notification_id)
            .fetch_optional(exec)
            .await?
            .is_some(),
    )
}

/// The outcome stored with a notification (`credited`, `duplicate`, `incident`, `ignored`).
pub async fn notification_set_outcome<'c, E>(
    exec: E,
    notification_id: &str,
    outcome: &str,
) -> sqlx::Result<()>
where
    E: Executor<'c, Database = Any>,
{
    sqlx::query("UPDATE dues_notifications SET outcome = $1 WHERE notification_id = $2")
        .bind(outcome)
        .bind(notification_id)
        .execute(exec)
        .await
        .map(|_| ())
}

// ---------------------------------------------------------------- incidents

pub struct NewIncident<'a> {
    pub kind: &'a str,
    /// The same problem seen again counts up `occurrences` instead of adding a row.
    pub dedup_key: &'a str,
    pub bill_id: Option<i64>,
    pub org_unit_id: Option<i64>,
    pub out_trade_no: Option<&'a str>,
    pub transaction_id: Option<&'a str>,
    pub expected_fen: Option<i64>,
    pub actual_fen: Option<i64>,
    pub details: &'a str,
}

/// Record an incident (or count another occurrence of it). Some(id) when it is new.
pub async fn incident_upsert<'c, E>(
    exec: E,
    i: &NewIncident<'_>,
    now: i64,
) -> sqlx::Result<(i64, bool)>
where
    E: Executor<'c, Database = Any>,
{
    let r = sqlx::query(
        "INSERT INTO dues_incidents (kind, dedup_key, bill_id, org_unit_id, out_trade_no, \
         transaction_id, expected_fen, actual_fen, details, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
         ON CONFLICT (dedup_key) DO UPDATE SET occurrences = dues_incidents.occurrences + 1, \
         updated_at = excluded.updated_at RETURNING id, occurrences",
    )
    .bind(i.kind)
    .bind(i.dedup_key)
    .bind(i.bill_id)
    .bind(i.org_unit_id)
    .bind(i.out_trade_no)
    .bind(i.transaction_id)
    .bind(i.expected_fen)
    .bind(i.actual_fen)
    .bind(i.details)
    .bind(now)
    .fetch_one(exec)
    .await?;
    Ok((r.get(0), r.get::<i64, _>(1) == 1))
}

#[derive(Debug, Clone)]
pub struct IncidentRow {
    pub id: i64,
    pub kind: String,
    pub bill_id: Option<i64>,
    pub org_unit_id: Option<i64>,
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub expected_fen: Option<i64>,
    pub actual_fen: Option<i64>,
    pub details: String,
    pub status: String,
    pub occurrences: i64,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    pub resolved_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const INCIDENT_COLS: &str = "id, kind, bill_id, org_unit_id, out_trade_no, transaction_id, \
     expected_fen, actual_fen, details, status, occurrences, resolved_by, resolution, resolved_at, \
     created_at, updated_at";

fn incident_row(r: &AnyRow) -> IncidentRow {
    IncidentRow {
        id: r.get(0),
        kind: r.get(1),
        bill_id: r.get(2),
        org_unit_id: r.get(3),
        out_trade_no: r.get(4),
        transaction_id: r.get(5),
        expected_fen: r.get(6),
        actual_fen: r.get(7),
        details: r.get(8),
        status: r.get(9),
        occurrences: r.get(10),
        resolved_by: r.get(11),
        resolution: r.get(12),
        resolved_at: r.get(13),
        created_at: r.get(14),
        updated_at: r.get(15),
    }
}

/// Incidents within `scope` (incidents not tied to an org unit only for `OrgScope::All`),
/// newest first.
pub async fn incidents_list<'c, E>(
    exec: E,
    scope: &OrgScope,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<IncidentRow>>
where
    E: Executor<'c, Database = Any>,
{
    let mut cond = vec![scope.sql_condition("org_unit_id")];
    if status.is_some() {
        cond.push("status = $1".into());
    }
    let sql = format!(
        "SELECT {INCIDENT_COLS} FROM dues_incidents WHERE {} ORDER BY id DESC LIMIT {limit} OFFSET {offset}",
        cond.join(" AND ")
    );
    let mut q = sqlx::query(&sql);
    if let Some(s) = status {
        q = q.bind(s);
    }
    Ok(q.fetch_all(exec).await?.iter().map(incident_row).collect())
}

pub async fn incidents_count<'c, E>(
    exec: E,
    scope: &OrgScope,
    status: Option<&str>,
) -> sqlx::Result<i64>
where
    E: Executor<'c, Database = Any>,
{
    let mut cond = vec![scope.sql_condition("org_unit_id")];
    if status.is_some() {
        cond.push("status = $1".into());
    }
    let sql = format!(
        "SELECT COUNT(*) FROM dues_incidents WHERE {}",
        cond.join(" AND ")
    );
    let mut q = sqlx::query(&sql);
    if let Some(s) = status {
        q = q.bind(s);
    }
    Ok(q.fetch_one(exec).await?.get(0))
}

pub async fn incident_get<'c, E>(exec: E, id: i64) -> sqlx::Result<Option<IncidentRow>>
where
    E: Executor<'c, Database = Any>,
{
    let sql = format!("SELECT {INCIDENT_COLS} FROM dues_incidents WHERE id = $1");
    Ok(sqlx::query(&sql)
        .bind(id)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(incident_row))
}

/// Close an open incident with what a person decided.
pub async fn incident_resolve<'c, E>(
    exec: E,
    id: i64,
    by: &str,
    resolution: &str,
    now: i64,
) -> sqlx::Result<bool>
where
    E: Executor<'c, Database = Any>,
{
    let r = sqlx::query(
        "UPDATE dues_incidents SET status = 'resolved', resolved_by = $1, resolution = $2, \
         resolved_at = $3, updated_at = $3 WHERE id = $4 AND status = 'open'",
    )
    .bind(by)
    .bind(resolution)
    .bind(now)
    .bind(id)
    .execute(exec)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Open incidents about `month`: tied to its bills, or (untied, e.g. an unknown order) created
/// during the month — the latter only for `OrgScope::All`.
pub async fn open_incidents_for_month<'c, E>(
    exec: E,
    month: &str,
    scope: &OrgScope,
    from: i64,
    to: i64,
) -> sqlx::Result<i64>
where
    E: Executor<'c, Database = Any>,
{
    let untied = if *scope == OrgScope::All {
        "OR (i.bill_id IS NULL AND i.created_at >= $2 AND i.created_at < $3)"
    } else {
        "OR (1=0 AND $2 = $3)"
    };
    let sql = format!(
        "SELECT COUNT(*) FROM dues_incidents i WHERE i.status = 'open' AND (\
         i.bill_id IN (SELECT b.id FROM dues_bills b WHERE b.month = $1 AND {}) {untied})",
        scope.sql_condition("b.org_unit_id")
    );
    Ok(sqlx::query(&sql)
        .bind(month)
        .bind(from)
        .bind(to)
        .fetch_one(exec)
        .await?
        .get(0))
}

// ---------------------------------------------------------------- reconciliation

/// Per org unit and status: bill count and amounts for one month. (PostgreSQL sums BIGINT as
/// NUMERIC: the sums are cast back.)
#[derive(Debug, Clone)]
pub struct StatusTotals {
    pub org_unit_id: i64,
    pub status: String,
    pub bills: i64,
    pub amount_fen: i64,
    /// Sum of the credited payments of these bills.
    pub paid_fen: i64,
}

pub async fn month_totals<'c, E>(
    exec: E,
    month: &str,
    scope: &OrgScope,
    unit: Option<&OrgScope>,
) -> sqlx::Result<Vec<StatusTotals>>
where
    E: Executor<'c, Database = Any>,
{
    let mut cond = vec![scope.sql_condition("b.org_unit_id")];
    if let Some(u) = unit {
        cond.push(u.sql_condition("b.org_unit_id"));
    }
    let sql = format!(
        "SELECT b.org_unit_id, b.status, COUNT(*), CAST(COALESCE(SUM(b.amount_fen), 0) AS BIGINT), \
         CAST(COALESCE(SUM(p.amount_fen), 0) AS BIGINT) FROM dues_bills b LEFT JOIN dues_payments p ON p.bill_id = b.id \
         WHERE b.month = $1 AND {} GROUP BY b.org_unit_id, b.status ORDER BY b.org_unit_id, b.status",
        cond.join(" AND ")
    );
    Ok(sqlx::query(&sql)
        .bind(month)
        .fetch_all(exec)
        .await?
        .iter()
        .map(|r| StatusTotals {
            org_unit_id: r.get(0),
            status: r.get(1),
            bills: r.get(2),
            amount_fen: r.get(3),
            paid_fen: r.get(4),
        })
        .collect())
}

/// A ledger line: a bill with its payment, if any.
#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub bill: BillRow,
    pub payment: Option<(i64, i64, String, String)>,
}

fn ledger_row(r: &AnyRow) -> LedgerRow {
    let paid: Option<i64> = r.get(15);
    LedgerRow {
        bill: bill_row(r),
        payment: paid.map(|amount| (amount, r.get(16), r.get(17), r.get(18))),
    }
}

const LEDGER_PAY_COLS: &str = "p.amount_fen, p.paid_at, p.transaction_id, p.out_trade_no";

/// The bills of `month` in scope with their payments, by org unit and member.
pub async fn ledger_bills<'c, E>(
    exec: E,
    month: &str,
    scope: &OrgScope,
    unit: Option<&OrgScope>,
) -> sqlx::Result<Vec<LedgerRow>>
where
    E: Executor<'c, Database = Any>,
{
    let mut cond = vec![scope.sql_condition("b.org_unit_id")];
    if let Some(u) = unit {
        cond.push(u.sql_condition("b.org_unit_id"));
    }
    let sql = format!(
        "SELECT {BILL_COLS}, {LEDGER_PAY_COLS} FROM dues_bills b LEFT JOIN dues_payments p ON p.bill_id = b.id \
         WHERE b.month = $1 AND {} ORDER BY b.org_unit_id, b.member_id",
        cond.join(" AND ")
    );
    Ok(sqlx::query(&sql)
        .bind(month)
        .fetch_all(exec)
        .await?
        .iter()
        .map(ledger_row)
        .collect())
}

/// Payments received in `[from, to)` for bills of months before `month` (late payments, 补交).
pub async fn ledger_back_payments<'c, E>(
    exec: E,
    month: &str,
    from: i64,
    to: i64,
    scope: &OrgScope,
    unit: Option<&OrgScope>,
) -> sqlx::Result<Vec<LedgerRow>>
where
    E: Executor<'c, Database = Any>,
{
    let mut cond = vec![scope.sql_condition("b.org_unit_id")];
    if let Some(u) = unit {
        cond.push(u.sql_condition("b.org_unit_id"));
    }
    let sql = format!(
        "SELECT {BILL_COLS}, {LEDGER_PAY_COLS} FROM dues_payments p JOIN dues_bills b ON b.id = p.bill_id \
         WHERE b.month < $1 AND p.paid_at >= $2 AND p.paid_at < $3 AND {} ORDER BY p.paid_at, p.id",
        cond.join(" AND ")
    );
    Ok(sqlx::query(&sql)
        .bind(month)
        .bind(from)
        .bind(to)
        .fetch_all(exec)
        .await?
        .iter()
        .map(ledger_row)
        .collect())
}

// ---------------------------------------------------------------- trade bills

pub struct TradebillRecord<'a> {
    pub bill_date: &'a str,
    pub row_count: i64,
    pub matched: i64,
    pub total_fen: i64,
    pub incident_count: i64,
    pub by: &'a str,
}

pub async fn tradebill_upsert<'c, E>(exec: E, t: &TradebillRecord<'_>, now: i64) -> sqlx::Result<()>
where
    E: Executor<'c, Database = Any>,
{
    sqlx::query(
        "INSERT INTO dues_tradebills (bill_date, row_count, matched, total_fen, incident_count, fetched_at, fetched_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (bill_date) DO UPDATE SET \
         row_count = excluded.row_count, matched = excluded.matched, total_fen = excluded.total_fen, \
         incident_count = excluded.incident_count, fetched_at = excluded.fetched_at, fetched_by = excluded.fetched_by",
    )
    .bind(t.bill_date)
    .bind(t.row_count)
    .bind(t.matched)
    .bind(t.total_fen)
    .bind(t.incident_count)
    .bind(now)
    .bind(t.by)
    .execute(exec)
    .await
    .map(|_| ())
}

// ---------------------------------------------------------------- reminders

/// A bill whose reminder was just claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminded {
    pub bill_id: i64,
    pub member_id: i64,
    pub month: String,
}

/// Which bills a reminder round takes.
pub struct ReminderClaim<'a> {
    /// One month, or every open month.
    pub month: Option<&'a str>,
    pub scope: &'a OrgScope,
    /// Bills last reminded at or before this (now − the interval) are due again.
    pub cutoff: i64,
    /// Automatic rounds: a bill never reminded is due one interval after it was made (on
    /// request it is due at once).
    pub wait_after_creation: bool,
    pub limit: i64,
}

/// Claim the due reminders: unpaid bills (`unpaid` or `paying`, amount > 0) of open months, in
/// scope, not reminded since `cutoff`; their `reminded_at` becomes `now` in the caller's
/// transaction (with the reminder rows it records), so two replicas or two requests never both
/// take a bill: the outer UPDATE repeats the guard (PostgreSQL re-checks it on the locked row;
/// `SKIP LOCKED` passes over rows another round holds).
pub async fn claim_reminders<'c, E>(
    exec: E,
    backend: Backend,
    c: &ReminderClaim<'_>,
    now: i64,
) -> sqlx::Result<Vec<Reminded>>
where
    E: Executor<'c, Database = Any>,
{
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE OF b SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let never = if c.wait_after_creation {
        "b.reminded_at IS NULL AND b.created_at <= $2"
    } else {
        "b.reminded_at IS NULL"
    };
    let sql = format!(
        "UPDATE dues_bills SET reminded_at = $1 WHERE id IN (\
           SELECT b.id FROM dues_bills b JOIN dues_months mo ON mo.month = b.month \
           WHERE mo.status = 'open' AND b.status IN ('unpaid', 'paying') AND b.amount_fen > 0 \
           AND (({never}) OR b.reminded_at <= $2) AND ($4 = '' OR b.month = $4) AND {} ORDER BY b.id LIMIT $3{lock}) \
         AND status IN ('unpaid', 'paying') AND (reminded_at IS NULL OR reminded_at <= $2) \
         RETURNING id, member_id, month",
        c.scope.sql_condition("b.org_unit_id")
    );
    let mut rows: Vec<Reminded> = sqlx::query(&sql)
        .bind(now)
        .bind(c.cutoff)
        .bind(c.limit)
        .bind(c.month.unwrap_or(""))
        .fetch_all(exec)
        .await?
        .iter()
        .map(|r| Reminded {
            bill_id: r.get(0),
            member_id: r.get(1),
            month: r.get(2),
        })
        .collect();
    rows.sort_by_key(|r| r.bill_id);
    Ok(rows)
}

/// One reminder queued: the bill and the push delivery row that carries it.
pub struct NewReminder<'a> {
    pub bill_id: i64,
    pub member_id: i64,
    pub month: &'a str,
    pub push_id: i64,
    pub delivery_id: Option<i64>,
}

pub async fn insert_reminder<'c, E>(
    exec: E,
    r: &NewReminder<'_>,
    created_by: &str,
    now: i64,
) -> sqlx::Result<()>
where
    E: Executor<'c, Database = Any>,
{
    sqlx::query(
        "INSERT INTO dues_reminders (bill_id, member_id, month, push_id, delivery_id, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(r.bill_id)
    .bind(r.member_id)
    .bind(r.month)
    .bind(r.push_id)
    .bind(r.delivery_id)
    .bind(created_by)
    .bind(now)
    .execute(exec)
    .await?;
    Ok(())
}
