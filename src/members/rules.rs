//! Roster rules with no I/O: member categories and Party statuses, and the import's row
//! parsing (JSON or CSV) and validation. Messages name the problem, never the value.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::platform::pii;

pub const CATEGORIES: [&str; 5] = ["employed", "retired", "student", "unemployed", "other"];
pub const PARTY_STATUSES: [&str; 2] = ["full", "probationary"];
/// Roster status: only `active` members count, bind and receive pushes.
pub const MEMBER_STATUSES: [&str; 3] = ["active", "transferred_out", "left"];

/// Longest validity of an introduction letter (介绍信), in days (three months).
pub const MAX_LETTER_VALIDITY_DAYS: i64 = 90;
/// Validity of a letter when none is given.
pub const DEFAULT_LETTER_VALIDITY_DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;

/// Why an import body cannot be read at all (before row validation).
#[derive(Debug, PartialEq, Eq)]
pub enum ImportError {
    BadJson,
    Invalid(String),
}

/// One invalid row of an import; `row` is 1-based over data rows (the CSV header is not a row).
/// Messages name the problem, never the value.
#[derive(Debug, Clone, Serialize)]
pub struct RowError {
    pub row: usize,
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ImportRow {
    pub name: String,
    pub phone: String,
    pub category: &'static str,
    pub income_fen: Option<i64>,
    pub org_unit: String,
    pub id_number: Option<String>,
    pub party_status: &'static str,
    pub joined_at: Option<i64>,
}

const COLUMNS: [&str; 8] = [
    "name",
    "phone",
    "category",
    "monthly_income_fen",
    "org_unit",
    "id_number",
    "party_status",
    "joined_at",
];

/// Raw cells of one row (JSON values stringified; CSV cells as-is).
pub type RawRow = HashMap<String, String>;

pub fn validate_row(n: usize, raw: &RawRow, errors: &mut Vec<RowError>) -> Option<ImportRow> {
    let before = errors.len();
    let mut err = |field: &'static str, message: &str| {
        errors.push(RowError {
            row: n,
            field,
            message: message.into(),
        })
    };
    let get = |k: &str| raw.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    // Column names are not echoed: a CSV without a header makes its first data row the header.
    if raw.keys().any(|k| !COLUMNS.contains(&k.as_str())) {
        err("columns", "unknown column; expected name, phone, category, monthly_income_fen, org_unit, id_number, party_status, joined_at");
    }
    // A JSON object, array or boolean where a cell belongs (see `stringify`).
    for column in COLUMNS {
        if raw.get(column).is_some_and(|v| v == INVALID_CELL) {
            err(column, "must be a string or a number");
        }
    }
    let name = get("name").unwrap_or_default().to_owned();
    if name.is_empty() || name.chars().count() > 64 {
        err("name", "name is required (at most 64 characters)");
    }
    let phone = get("phone").and_then(pii::normalize_phone);
    if phone.is_none() {
        err("phone", "phone must be an 11-digit mainland mobile number");
    }
    let category = get("category").and_then(|c| CATEGORIES.iter().find(|x| **x == c).copied());
    if category.is_none() {
        err(
            "category",
            "category must be one of employed, retired, student, unemployed, other",
        );
    }
    let income_fen = match get("monthly_income_fen") {
        None => None,
        Some(s) => match s.parse::<i64>() {
            Ok(v) if (0..=10_000_000_000).contains(&v) => Some(v),
            _ => {
                err(
                    "monthly_income_fen",
                    "monthly_income_fen must be a whole number of fen, 0 or more",
                );
                None
            }
        },
    };
    if income_fen.is_none()
        && matches!(category, Some("employed" | "retired"))
        && get("monthly_income_fen").is_none()
    {
        err(
            "monthly_income_fen",
            "monthly_income_fen is required for employed and retired members",
        );
    }
    let org_unit = get("org_unit").unwrap_or_default().to_owned();
    if org_unit.is_empty() || org_unit.chars().count() > 100 {
        err("org_unit", "org_unit is required (at most 100 characters)");
    }
    let id_number = match get("id_number") {
        None => None,
        Some(s) => {
            let v = pii::normalize_id_number(s);
            if v.is_none() {
                err(
                    "id_number",
                    "id_number must be an 18-character resident ID number with a valid check digit",
                );
            }
            v
        }
    };
    let party_status = match get("party_status") {
        None => Some("full"),
        Some(s) => PARTY_STATUSES.iter().find(|x| **x == s).copied(),
    };
    if party_status.is_none() {
        err("party_status", "party_status must be full or probationary");
    }
    let joined_at = match get("joined_at") {
        None => None,
        Some(s) => {
            let v = parse_date(s);
            if v.is_none() {
                err(
                    "joined_at",
                    "joined_at must be a date (YYYY-MM-DD) or RFC 3339 time",
                );
            }
            v
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(ImportRow {
        name,
        phone: phone?,
        category: category?,
        income_fen,
        org_unit,
        id_number,
        party_status: party_status?,
        joined_at,
    })
}

/// `YYYY-MM-DD` (midnight, Asia/Shanghai) or RFC 3339 → unix ms.
pub fn parse_date(s: &str) -> Option<i64> {
    if let Some(ms) = crate::platform::time::parse_time(s) {
        return Some(ms);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, &fmt).ok()?;
    Some(crate::platform::time::unix_ms(
        d.midnight().assume_offset(time::macros::offset!(+8)),
    ))
}

pub fn json_rows(body: &[u8]) -> Result<Vec<RawRow>, ImportError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| ImportError::BadJson)?;
    let Value::Array(items) = v else {
        return Err(ImportError::Invalid(
            "expected a JSON array of members".into(),
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(map) => Ok(stringify(map)),
            _ => Err(ImportError::Invalid(format!(
                "item {} is not an object",
                i + 1
            ))),
        })
        .collect()
}

/// What `stringify` makes of a JSON value no cell can hold; `validate_row` refuses it.
const INVALID_CELL: &str = "\u{0}invalid";

fn stringify(map: Map<String, Value>) -> RawRow {
    map.into_iter()
        .filter_map(|(k, v)| {
            let s = match v {
                Value::Null => return None,
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                // Kept distinguishable from a valid value so that validation reports it.
                _ => INVALID_CELL.to_owned(),
            };
            Some((k, s))
        })
        .collect()
}

/// Rows of a CSV with a header row (UTF-8, optional BOM), read with the `csv` crate.
pub fn csv_rows(body: &[u8]) -> Result<Vec<RawRow>, ImportError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ImportError::Invalid("CSV must be UTF-8".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| ImportError::Invalid(csv_message(&e)))?
        .iter()
        .map(|h| h.trim().to_lowercase())
        .collect();
    if header.iter().all(|h| h.is_empty()) {
        return Err(ImportError::Invalid("empty CSV".into()));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| ImportError::Invalid(csv_message(&e)))?;
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let mut row: RawRow = header
            .iter()
            .cloned()
            .zip(record.iter().map(str::to_owned))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        if record.len() > header.len() {
            row.insert("\u{0}extra".into(), String::new());
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Where the CSV is broken, never what it contains.
fn csv_message(e: &csv::Error) -> String {
    match e.position() {
        Some(p) => format!("malformed CSV near line {}", p.line()),
        None => "malformed CSV".into(),
    }
}

/// The dates that go with a Party status: `joined_at` (admitted as a probationary member) not in
/// the future; `full_at` (转正) only for full members, not before admission, not in the future.
/// The message names the rule.
pub fn party_dates_error(
    party_status: &str,
    joined_at: Option<i64>,
    full_at: Option<i64>,
    now: i64,
) -> Option<&'static str> {
    if joined_at.is_some_and(|j| j > now) {
        return Some("joined_at cannot be in the future");
    }
    match (party_status, full_at) {
        ("probationary", Some(_)) => {
            Some("a probationary member has no full_at (转正) date yet; set party_status to full")
        }
        (_, Some(f)) if f > now => Some("full_at cannot be in the future"),
        (_, Some(f)) if joined_at.is_some_and(|j| f < j) => {
            Some("full_at (转正) cannot be before joined_at (admission)")
        }
        _ => None,
    }
}

/// A member's name as typed: trimmed, 1–64 characters.
pub fn member_name(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty() && s.chars().count() <= 64).then_some(s)
}

/// A monthly income in fen: 0 to 100 million yuan.
pub fn income_ok(fen: i64) -> bool {
    (0..=10_000_000_000).contains(&fen)
}

/// Employed and retired members' dues are a share of their income: they need one.
pub fn needs_income(category: &str) -> bool {
    matches!(category, "employed" | "retired")
}

/// `YYYY-MM` (e.g. the month Party dues are paid up to) → (year, month).
pub fn parse_month(s: &str) -> Option<(i32, u8)> {
    let (y, m) = s.trim().split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let y: i32 = y.parse().ok()?;
    let m: u8 = m.parse().ok()?;
    ((1949..=2200).contains(&y) && (1..=12).contains(&m)).then_some((y, m))
}

/// Validity of an outgoing letter: the days given (1 to three months) and when it expires.
pub fn letter_validity(days: Option<i64>, issued_at: i64) -> Result<(i64, i64), String> {
    let days = days.unwrap_or(DEFAULT_LETTER_VALIDITY_DAYS);
    if !(1..=MAX_LETTER_VALIDITY_DAYS).contains(&days) {
        return Err(format!(
            "validity_days must be 1 to {MAX_LETTER_VALIDITY_DAYS}"
        ));
    }
    Ok((days, issued_at + days * DAY_MS))
}

/// The number printed on our introduction letter: year of issue and the transfer's id.
pub fn letter_no(issued_year: i32, transfer_id: i64) -> String {
    format!("{issued_year}-{transfer_id:06}")
}

/// An organisation's name as typed (destination or origin of a transfer): 1–100 characters.
pub fn organisation_name(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty() && s.chars().count() <= 100).then_some(s)
}

/// A text longer than allowed.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLong;

/// Free text such as a reason: trimmed, at most `max` characters; empty is none.
pub fn short_text(s: Option<&str>, max: usize) -> Result<Option<&str>, TooLong> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(t) if t.chars().count() <= max => Ok(Some(t)),
        Some(_) => Err(TooLong),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_cell_must_be_a_string_or_a_number() {
        let rows = json_rows(
            r#"[{"name":"张三","phone":"13800000001","category":"student","org_unit":"一支部"},
            {"name":"李四","phone":"13800000002","category":"student","org_unit":{}},
            {"name":["王五"],"phone":"13800000003","category":"student","org_unit":"一支部"}]"#
                .as_bytes(),
        )
        .unwrap();
        let mut errors = Vec::new();
        assert!(validate_row(1, &rows[0], &mut errors).is_some());
        assert!(validate_row(2, &rows[1], &mut errors).is_none());
        assert!(validate_row(3, &rows[2], &mut errors).is_none());
        let fields: Vec<(usize, &str)> = errors.iter().map(|e| (e.row, e.field)).collect();
        assert_eq!(fields, [(2, "org_unit"), (3, "name")]);
    }

    #[test]
    fn party_dates_follow_the_status() {
        let now = 1_000 * DAY_MS;
        let cases: [(&str, Option<i64>, Option<i64>, bool); 8] = [
            ("full", None, None, true),
            (
                "full",
                Some(now - 400 * DAY_MS),
                Some(now - 30 * DAY_MS),
                true,
            ),
            (
                "full",
                Some(now - 10 * DAY_MS),
                Some(now - 30 * DAY_MS),
                false,
            ),
            ("full", Some(now - 10 * DAY_MS), Some(now + DAY_MS), false),
            ("probationary", Some(now - 10 * DAY_MS), None, true),
            ("probationary", Some(now - 10 * DAY_MS), Some(now), false),
            ("probationary", Some(now + DAY_MS), None, false),
            ("full", None, Some(now), true),
        ];
        for (status, joined, full, ok) in cases {
            assert_eq!(
                party_dates_error(status, joined, full, now).is_none(),
                ok,
                "{status} {joined:?} {full:?}"
            );
        }
    }

    #[test]
    fn months_letters_and_texts_are_checked() {
        assert_eq!(parse_month("2026-11"), Some((2026, 11)));
        for bad in [
            "2026-13", "2026-1", "26-11", "2026/11", "", "2026-00", "x-yz",
        ] {
            assert_eq!(parse_month(bad), None, "{bad}");
        }
        assert_eq!(letter_validity(None, 0), Ok((30, 30 * DAY_MS)));
        assert_eq!(letter_validity(Some(90), 5), Ok((90, 5 + 90 * DAY_MS)));
        assert!(letter_validity(Some(0), 0).is_err());
        assert!(letter_validity(Some(91), 0).is_err());
        assert_eq!(letter_no(2026, 12), "2026-000012");
        assert_eq!(member_name("  张三 "), Some("张三"));
        assert_eq!(member_name(" "), None);
        assert_eq!(short_text(Some("  "), 5), Ok(None));
        assert_eq!(short_text(Some("一二三四五六"), 5), Err(TooLong));
        assert!(needs_income("retired") && !needs_income("student"));
        assert!(income_ok(0) && !income_ok(-1));
    }

    #[test]
    fn csv_rows_handle_quotes_crlf_bom_and_embedded_commas() {
        let body = "\u{feff}Name,phone,org_unit\r\n\"x, y\",\"he said \"\"hi\"\"\",3\r\nlast,,\n";
        let rows = csv_rows(body.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["name"], "x, y");
        assert_eq!(rows[0]["phone"], "he said \"hi\"");
        assert_eq!(rows[0]["org_unit"], "3");
        assert_eq!(rows[1].len(), 1, "blank cells are absent: {:?}", rows[1]);
        assert!(matches!(
            csv_rows(&[0xff, 0xfe]),
            Err(ImportError::Invalid(_))
        ));
    }

    #[test]
    fn extra_cells_are_reported_as_an_unknown_column() {
        let rows = csv_rows(b"name,phone\nA,13800000000,surplus\n").unwrap();
        let mut errors = Vec::new();
        assert!(validate_row(1, &rows[0], &mut errors).is_none());
        assert!(errors.iter().any(|e| e.field == "columns"));
    }

    #[test]
    fn row_validation_reports_fields_without_values() {
        let mut errors = Vec::new();
        let raw: RawRow = [
            ("name", ""),
            ("phone", "12345"),
            ("category", "boss"),
            ("org_unit", "一支部"),
            ("monthly_income_fen", "-5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert!(validate_row(7, &raw, &mut errors).is_none());
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["name", "phone", "category", "monthly_income_fen"]);
        assert!(errors
            .iter()
            .all(|e| e.row == 7 && !e.message.contains("12345")));
    }
}
