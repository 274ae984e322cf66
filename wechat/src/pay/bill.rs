//! 申请交易账单 / 下载账单: the bill's announced hash and the trade bill CSV (交易账单, `bill_type=ALL`).
//!
//! File format: a header row of Chinese column names; one row per trade or refund where every
//! field starts with a backtick (`` `2024-01-01 12:00:05 ``, to keep spreadsheets from reading
//! numbers); then the summary header (总交易单数, …) and one summary row. Amounts are yuan with
//! two decimals and become fen here. Columns are found by name, so extra or reordered columns
//! (服务商 bills have 特约商户号) do not matter.

use serde::{Deserialize, Serialize};
use sha1::{Digest as _, Sha1};

use super::{PayError, Result};

/// Answer of 申请交易账单.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillInfo {
    /// `SHA1`.
    pub hash_type: String,
    /// Hex SHA-1 of the file.
    pub hash_value: String,
    /// `https://api.mch.weixin.qq.com/v3/billdownload/file?token=…`, valid for 5 minutes.
    pub download_url: String,
}

/// Check the downloaded `bytes` against the hash 申请交易账单 announced (hex, any case).
pub fn check_bill_hash(info: &BillInfo, bytes: &[u8]) -> Result<()> {
    if !info.hash_type.eq_ignore_ascii_case("SHA1") {
        return Err(PayError::Decode(format!(
            "unsupported bill hash type {:?}",
            info.hash_type
        )));
    }
    let actual = hex::encode(Sha1::digest(bytes));
    if actual.eq_ignore_ascii_case(info.hash_value.trim()) {
        Ok(())
    } else {
        Err(PayError::BillHash {
            expected: info.hash_value.clone(),
            actual,
        })
    }
}

/// One trade (or refund) row of a trade bill.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeBillRow {
    /// 交易时间, Beijing time `YYYY-MM-DD HH:MM:SS`.
    pub trade_time: String,
    /// 公众账号ID.
    pub appid: String,
    /// 商户号.
    pub mchid: String,
    /// 微信订单号.
    pub transaction_id: String,
    /// 商户订单号.
    pub out_trade_no: String,
    /// 用户标识.
    pub openid: String,
    /// 交易类型 (`JSAPI`).
    pub trade_type: String,
    /// 交易状态 (`SUCCESS`, `REFUND`, `REVOKED`).
    pub trade_state: String,
    /// 订单金额 in fen (应结订单金额 when the file has no 订单金额 column).
    pub total_fen: i64,
    /// 应结订单金额 in fen.
    pub settlement_total_fen: i64,
    /// 退款金额 in fen (0 for a trade row).
    pub refund_fen: i64,
    /// 商户退款单号 (empty for a trade row; `0` in the file).
    pub out_refund_no: String,
    /// 商品名称.
    pub description: String,
}

/// The summary row of a trade bill.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeBillSummary {
    /// 总交易单数.
    pub trade_count: u64,
    /// 应结订单总金额 in fen.
    pub settlement_total_fen: i64,
    /// 退款总金额 in fen.
    pub refund_total_fen: i64,
    /// 订单总金额 in fen (0 when absent).
    pub order_total_fen: i64,
}

/// A parsed trade bill.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeBill {
    pub rows: Vec<TradeBillRow>,
    /// None when the file has no summary.
    pub summary: Option<TradeBillSummary>,
}

/// Yuan with up to two decimals (`1234.56`, `0.5`, `3`, `-0.01`; trailing zero decimals beyond
/// two, as in `0.00000`, are accepted) → fen. Anything else is an error, never a rounding.
pub fn yuan_to_fen(s: &str) -> Result<i64> {
    let bad = || PayError::Decode(format!("bad amount {s:?}"));
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty()
        || whole.len() > 15
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.bytes().skip(2).any(|b| b != b'0')
        || (t.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let mut cents = 0i64;
    for (i, b) in frac.bytes().take(2).enumerate() {
        cents += i64::from(b - b'0') * if i == 0 { 10 } else { 1 };
    }
    let fen = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(cents))
        .ok_or_else(bad)?;
    Ok(if neg { -fen } else { fen })
}

/// A field without its backtick and surrounding spaces.
fn clean(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('`').unwrap_or(f).trim()
}

/// Parse a trade bill (`bill_type=ALL`, also SUCCESS/REFUND) downloaded with 下载账单.
pub fn parse_trade_bill(bytes: &[u8]) -> Result<TradeBill> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.records();
    let decode = |e: csv::Error| PayError::Decode(format!("trade bill: {e}"));

    let header = match records.next() {
        Some(r) => r.map_err(decode)?,
        None => return Ok(TradeBill::default()),
    };
    let names: Vec<&str> = header.iter().map(clean).collect();
    let col = |name: &str| names.iter().position(|n| *n == name);
    let need = |name: &str| {
        col(name).ok_or_else(|| PayError::Decode(format!("trade bill: no column {name}")))
    };
    let c_time = need("交易时间")?;
    let c_appid = need("公众账号ID")?;
    let c_mchid = need("商户号")?;
    let c_tx = need("微信订单号")?;
    let c_otn = need("商户订单号")?;
    let c_openid = need("用户标识")?;
    let c_type = col("交易类型");
    let c_state = need("交易状态")?;
    let c_settle = need("应结订单金额")?;
    let c_total = col("订单金额");
    let c_refund = col("退款金额");
    let c_refund_no = col("商户退款单号");
    let c_desc = col("商品名称");

    let mut bill = TradeBill::default();
    while let Some(record) = records.next() {
        let record = record.map_err(decode)?;
        let first = record.get(0).map(clean).unwrap_or("");
        if first == "总交易单数" {
            let sum_names: Vec<&str> = record.iter().map(clean).collect();
            let Some(values) = records.next() else {
                break;
            };
            let values = values.map_err(decode)?;
            let get = |name: &str| {
                sum_names
                    .iter()
                    .position(|n| *n == name)
                    .and_then(|i| values.get(i))
                    .map(clean)
            };
            let money = |name: &str| get(name).map(yuan_to_fen).transpose();
            bill.summary = Some(TradeBillSummary {
                trade_count: get("总交易单数")
                    .unwrap_or("0")
                    .parse()
                    .map_err(|_| PayError::Decode("trade bill: bad 总交易单数".into()))?,
                settlement_total_fen: money("应结订单总金额")?.unwrap_or(0),
                refund_total_fen: money("退款总金额")?.unwrap_or(0),
                order_total_fen: money("订单总金额")?.unwrap_or(0),
            });
            break;
        }
        if record.iter().all(|f| clean(f).is_empty()) {
            continue;
        }
        let row_no = bill.rows.len() + 1;
        let field = |i: usize| -> Result<&str> {
            record.get(i).map(clean).ok_or_else(|| {
                PayError::Decode(format!(
                    "trade bill: row {row_no} has {} fields",
                    record.len()
                ))
            })
        };
        let opt = |c: Option<usize>| -> Result<&str> {
            c.map(field).transpose().map(Option::unwrap_or_default)
        };
        let settlement_total_fen = yuan_to_fen(field(c_settle)?)?;
        let total_fen = match c_total {
            Some(c) => yuan_to_fen(field(c)?)?,
            None => settlement_total_fen,
        };
        let refund_fen = match c_refund {
            Some(c) => yuan_to_fen(field(c)?)?,
            None => 0,
        };
        let out_refund_no = match opt(c_refund_no)? {
            "0" => "",
            other => other,
        };
        bill.rows.push(TradeBillRow {
            trade_time: field(c_time)?.to_owned(),
            appid: field(c_appid)?.to_owned(),
            mchid: field(c_mchid)?.to_owned(),
            transaction_id: field(c_tx)?.to_owned(),
            out_trade_no: field(c_otn)?.to_owned(),
            openid: field(c_openid)?.to_owned(),
            trade_type: opt(c_type)?.to_owned(),
            trade_state: field(c_state)?.to_owned(),
            total_fen,
            settlement_total_fen,
            refund_fen,
            out_refund_no: out_refund_no.to_owned(),
            description: opt(c_desc)?.to_owned(),
        });
    }
    Ok(bill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_to_fen_is_exact() {
        for (s, fen) in [
            ("0.01", 1),
            ("1.00", 100),
            ("1234.56", 123456),
            ("0.5", 50),
            ("3", 300),
            ("0.00000", 0),
            ("0.01000", 1),
            ("-0.50", -50),
        ] {
            assert_eq!(yuan_to_fen(s).unwrap(), fen, "{s}");
        }
        for s in [
            "",
            ".5",
            "1.",
            "1.005",
            "abc",
            "1,00",
            "--1",
            "0.60%",
            "9999999999999999",
        ] {
            assert!(yuan_to_fen(s).is_err(), "{s}");
        }
    }
}
