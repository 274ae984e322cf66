//! Party dues rules (中组发〔2008〕3号《关于中国共产党党费收缴、使用和管理的规定》), pure: no I/O,
//! no state, no SQL. Table-tested and property-tested below.
//!
//! - Employed members pay on their after-tax monthly income: ≤ 3000 yuan 0.5 %, ≤ 5000 1 %,
//!   ≤ 10000 1.5 %, above 2 %. The rate applies to the whole amount (not in slices) and each upper
//!   bound is inclusive: 3000.00 yuan pays 15.00, 3000.01 pays 30.00.
//! - Retirees pay on their pension: ≤ 5000 yuan 0.5 %, above 1 %.
//! - Students, the unemployed and low-income members (roster category `other`) pay 0.20 yuan.
//! - A member may pay more than the rule (voluntary), never less; an exemption (hardship) needs a
//!   reason and makes the month's bill 0.
//! - Probationary members pay from the month of their approval (`joined_at`); nobody owes for a
//!   month before they joined.
//! - Back payment: at most 6 months back.
//! - Amounts are integer fen, rounded half-up.

use std::fmt;

use serde::{Serialize, Serializer};
use time::{Date, Month as TimeMonth, OffsetDateTime, PrimitiveDateTime, Time};

use crate::platform::time::SHANGHAI;

/// Money in integer fen (分). Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fen(pub i64);

impl Fen {
    pub const ZERO: Fen = Fen(0);

    pub fn get(self) -> i64 {
        self.0
    }

    /// `rate_bp` basis points (1 % = 100 bp) of this amount, rounded half-up to a whole fen.
    /// Computed in i128: no overflow for any i64 amount. Negative amounts round half away from
    /// zero (symmetric), though the rules never produce them.
    pub fn percent_bp(self, rate_bp: i64) -> Fen {
        let p = i128::from(self.0) * i128::from(rate_bp);
        let half = 5_000i128;
        let q = if p >= 0 {
            (p + half) / 10_000
        } else {
            -((-p + half) / 10_000)
        };
        Fen(q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }

    /// `12.34` (yuan with two decimals), for ledgers and order descriptions.
    pub fn yuan(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", a / 100, a % 100)
    }

    /// A yuan amount as people type it (`12`, `12.3`, `12.34`, `¥12.34`, spaces around) → fen.
    /// None for anything else: a sign, a third decimal, a thousands separator, an overflow.
    pub fn parse_yuan(s: &str) -> Option<Fen> {
        let s = s.trim();
        let s = s
            .strip_prefix('¥')
            .or_else(|| s.strip_prefix('￥'))
            .unwrap_or(s)
            .trim_start();
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 2 {
            return None;
        }
        if s.ends_with('.') {
            return None;
        }
        let yuan: i64 = whole.parse().ok()?;
        let fen: i64 = format!("{frac:0<2}").parse().ok()?;
        yuan.checked_mul(100)?.checked_add(fen).map(Fen)
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} fen", self.0)
    }
}

impl Serialize for Fen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

/// A dues month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u8,
}

impl Month {
    /// Strictly `YYYY-MM` (year 2000–2199, month 01–12).
    pub fn parse(s: &str) -> Option<Month> {
        let b = s.as_bytes();
        if b.len() != 7
            || b[4] != b'-'
            || !s[..4]
                .bytes()
                .chain(s[5..].bytes())
                .all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let year: i32 = s[..4].parse().ok()?;
        let month: u8 = s[5..].parse().ok()?;
        ((2000..=2199).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    pub fn new(year: i32, month: u8) -> Option<Month> {
        Month::parse(&format!("{year:04}-{month:02}"))
    }

    /// The month (Asia/Shanghai) of a unix-millisecond instant.
    pub fn of_unix_ms(ms: i64) -> Month {
        let t = crate::platform::time::from_unix_ms(ms).to_offset(SHANGHAI);
        Month {
            year: t.year(),
            month: u8::from(t.month()),
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    /// Months since year 0: differences are month counts.
    fn index(self) -> i64 {
        i64::from(self.year) * 12 + i64::from(self.month) - 1
    }

    fn from_index(i: i64) -> Month {
        Month {
            year: i.div_euclid(12) as i32,
            month: (i.rem_euclid(12) + 1) as u8,
        }
    }

    /// `self - other` in months.
    pub fn months_since(self, other: Month) -> i64 {
        self.index() - other.index()
    }

    pub fn plus(self, months: i64) -> Month {
        Month::from_index(self.index() + months)
    }

    /// First instant of the month in Asia/Shanghai, unix ms.
    pub fn start_ms(self) -> i64 {
        let month = TimeMonth::try_from(self.month).unwrap_or(TimeMonth::January);
        let date = Date::from_calendar_date(self.year, month, 1).unwrap_or(Date::MIN);
        let t = PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_offset(SHANGHAI);
        crate::platform::time::unix_ms(t)
    }

    /// First instant of the next month (exclusive end), unix ms.
    pub fn end_ms(self) -> i64 {
        self.plus(1).start_ms()
    }

    /// 2026年11月, for order descriptions and ledgers.
    pub fn label_zh(self) -> String {
        format!("{}年{}月", self.year, self.month)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Serialize for Month {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The roster categories (`members.category`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Employed,
    Retired,
    Student,
    Unemployed,
    /// Low-income members (农民、低保 and the like): the flat rate.
    Other,
}

impl Category {
    pub fn parse(s: &str) -> Option<Category> {
        Some(match s {
            "employed" => Category::Employed,
            "retired" => Category::Retired,
            "student" => Category::Student,
            "unemployed" => Category::Unemployed,
            "other" => Category::Other,
            _ => return None,
        })
    }
}

/// The rule a bill was computed by; its code is stored with the bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    Employed0_5Pct,
    Employed1Pct,
    Employed1_5Pct,
    Employed2Pct,
    Retired0_5Pct,
    Retired1Pct,
    StudentFlat,
    UnemployedFlat,
    LowIncomeFlat,
    /// More than the rule, at the member's wish.
    Voluntary,
    /// Hardship exemption with a reason.
    Exempt,
    /// Set by hand with a reason after assessment.
    Adjusted,
}

impl Rule {
    pub const ALL: [Rule; 12] = [
        Rule::Employed0_5Pct,
        Rule::Employed1Pct,
        Rule::Employed1_5Pct,
        Rule::Employed2Pct,
        Rule::Retired0_5Pct,
        Rule::Retired1Pct,
        Rule::StudentFlat,
        Rule::UnemployedFlat,
        Rule::LowIncomeFlat,
        Rule::Voluntary,
        Rule::Exempt,
        Rule::Adjusted,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Rule::Employed0_5Pct => "employed_0_5pct",
            Rule::Employed1Pct => "employed_1pct",
            Rule::Employed1_5Pct => "employed_1_5pct",
            Rule::Employed2Pct => "employed_2pct",
            Rule::Retired0_5Pct => "retired_0_5pct",
            Rule::Retired1Pct => "retired_1pct",
            Rule::StudentFlat => "student_flat",
            Rule::UnemployedFlat => "unemployed_flat",
            Rule::LowIncomeFlat => "low_income_flat",
            Rule::Voluntary => "voluntary",
            Rule::Exempt => "exempt",
            Rule::Adjusted => "adjusted",
        }
    }

    pub fn parse(s: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.code() == s)
    }

    /// The rate in basis points for the percentage rules.
    pub fn rate_bp(self) -> Option<i64> {
        match self {
            Rule::Employed0_5Pct | Rule::Retired0_5Pct => Some(50),
            Rule::Employed1Pct | Rule::Retired1Pct => Some(100),
            Rule::Employed1_5Pct => Some(150),
            Rule::Employed2Pct => Some(200),
            _ => None,
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// The flat monthly amount of students, the unemployed and low-income members: 0.20 yuan.
pub const FLAT_FEN: Fen = Fen(20);
/// Back payment reaches at most this many months before the current one.
pub const BACK_PAYMENT_MONTHS: i64 = 6;
/// Bills may be made this many months ahead of the current month (open next month early).
pub const ASSESS_AHEAD_MONTHS: i64 = 1;
/// A voluntary amount above this is refused as a typo (1,000 yuan a month).
pub const MAX_VOLUNTARY_FEN: i64 = 100_000;

/// Employed brackets: (inclusive upper bound in fen, rule).
const EMPLOYED: [(i64, Rule); 3] = [
    (300_000, Rule::Employed0_5Pct),
    (500_000, Rule::Employed1Pct),
    (1_000_000, Rule::Employed1_5Pct),
];
const RETIRED: [(i64, Rule); 1] = [(500_000, Rule::Retired0_5Pct)];

/// The standard dues of a month: `(rule, amount, base)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standard {
    pub rule: Rule,
    pub amount: Fen,
    /// The income or pension the percentage applies to; None for flat rules.
    pub base: Option<Fen>,
}

/// Why no bill is made for a member and month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAssessed {
    /// Employed or retired without an income/pension on the roster.
    MissingBase,
    /// A negative income on the roster.
    NegativeBase,
    /// Joined (or, probationary, approved) after the month.
    NotYetMember,
    /// A category the rules do not know.
    UnknownCategory,
}

impl NotAssessed {
    pub fn code(self) -> &'static str {
        match self {
            NotAssessed::MissingBase => "missing_base",
            NotAssessed::NegativeBase => "negative_base",
            NotAssessed::NotYetMember => "not_yet_member",
            NotAssessed::UnknownCategory => "unknown_category",
        }
    }
}

fn bracket(base: Fen, brackets: &[(i64, Rule)], above: Rule) -> Rule {
    brackets
        .iter()
        .find(|(upper, _)| base.0 <= *upper)
        .map(|(_, r)| *r)
        .unwrap_or(above)
}

/// The rule's dues for one month (中组发〔2008〕3号).
pub fn standard(category: Category, base: Option<Fen>) -> Result<Standard, NotAssessed> {
    let percent = |brackets: &[(i64, Rule)], above: Rule| {
        let base = base.ok_or(NotAssessed::MissingBase)?;
        if base.0 < 0 {
            return Err(NotAssessed::NegativeBase);
        }
        let rule = bracket(base, brackets, above);
        let rate = rule.rate_bp().unwrap_or(0);
        Ok(Standard {
            rule,
            amount: base.percent_bp(rate),
            base: Some(base),
        })
    };
    let flat = |rule| {
        Ok(Standard {
            rule,
            amount: FLAT_FEN,
            base: None,
        })
    };
    match category {
        Category::Employed => percent(&EMPLOYED, Rule::Employed2Pct),
        Category::Retired => percent(&RETIRED, Rule::Retired1Pct),
        Category::Student => flat(Rule::StudentFlat),
        Category::Unemployed => flat(Rule::UnemployedFlat),
        Category::Other => flat(Rule::LowIncomeFlat),
    }
}

/// What the assessment knows of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFacts<'a> {
    pub category: &'a str,
    pub base: Option<Fen>,
    pub probationary: bool,
    /// Joining date, or for probationary members the approval date (unix ms).
    pub joined_at: Option<i64>,
    /// Hardship exemption reason, if exempt.
    pub exempt_reason: Option<&'a str>,
    /// A voluntary monthly amount.
    pub voluntary: Option<Fen>,
}

/// A bill to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// What the member owes.
    pub amount: Fen,
    /// The rule's amount (differs from `amount` when voluntary or exempt).
    pub standard: Standard,
    /// The rule applied to `amount`.
    pub rule: Rule,
    /// The exemption reason.
    pub note: Option<String>,
}

/// One member's bill for `month`.
pub fn assess(month: Month, m: &MemberFacts<'_>) -> Result<Assessment, NotAssessed> {
    if let Some(joined) = m.joined_at {
        // Members owe from the month they joined; probationary members from their approval.
        if Month::of_unix_ms(joined) > month {
            return Err(NotAssessed::NotYetMember);
        }
    }
    let category = Category::parse(m.category).ok_or(NotAssessed::UnknownCategory)?;
    let std = standard(category, m.base)?;
    if let Some(reason) = m.exempt_reason.map(str::trim).filter(|r| !r.is_empty()) {
        return Ok(Assessment {
            amount: Fen::ZERO,
            standard: std,
            rule: Rule::Exempt,
            note: Some(reason.to_owned()),
        });
    }
    match m.voluntary {
        Some(v) if v > std.amount => Ok(Assessment {
            amount: v,
            standard: std,
            rule: Rule::Voluntary,
            note: None,
        }),
        _ => Ok(Assessment {
            amount: std.amount,
            standard: std,
            rule: std.rule,
            note: None,
        }),
    }
}

/// Why a month may not be assessed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonthRefused {
    /// More than [`BACK_PAYMENT_MONTHS`] before the current month.
    TooOld,
    /// More than [`ASSESS_AHEAD_MONTHS`] after the current month.
    TooFarAhead,
}

/// Bills are made for the current month, up to 6 months back (back payment) and one ahead.
pub fn assessable(month: Month, now: Month) -> Result<(), MonthRefused> {
    let back = now.months_since(month);
    if back > BACK_PAYMENT_MONTHS {
        Err(MonthRefused::TooOld)
    } else if -back > ASSESS_AHEAD_MONTHS {
        Err(MonthRefused::TooFarAhead)
    } else {
        Ok(())
    }
}

/// A bill of `month` may still be paid online in `now` (back payment of at most 6 months).
pub fn payable_in(month: Month, now: Month) -> bool {
    now.months_since(month) <= BACK_PAYMENT_MONTHS
}

/// Paid after the end of the bill's month: a late payment (补交), marked in the ledger.
pub fn is_late(month: Month, paid_at_ms: i64) -> bool {
    paid_at_ms >= month.end_ms()
}

/// Where a month stands in the treasurer's cycle: bills made and nothing paid yet (`open`),
/// payments coming in (`collecting`), closed (`settled`: changes only by adjustments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonthPhase {
    Open,
    Collecting,
    Settled,
}

impl MonthPhase {
    /// From the stored month status (`open` / `settled`) and how many of its bills are paid.
    pub fn of(status: &str, paid_count: i64) -> MonthPhase {
        match status {
            "settled" => MonthPhase::Settled,
            _ if paid_count > 0 => MonthPhase::Collecting,
            _ => MonthPhase::Open,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            MonthPhase::Open => "open",
            MonthPhase::Collecting => "collecting",
            MonthPhase::Settled => "settled",
        }
    }
}

/// A per-mille rate for people: `667` → `66.7%`; None (nothing due) → `—`.
pub fn percent_label(permille: Option<i64>) -> String {
    match permille {
        Some(p) => format!("{}.{}%", p / 10, p % 10),
        None => "—".into(),
    }
}

/// Collection rate in per-mille of the bills that are due (exempt ones are not).
pub fn collection_rate_permille(paid: i64, due: i64) -> Option<i64> {
    (due > 0).then(|| (paid.max(0) * 1000 + due / 2) / due)
}

/// 商户订单号: 6–32 characters of `[0-9A-Za-z_-|*]`.
pub fn valid_out_trade_no(no: &str) -> bool {
    (6..=32).contains(&no.len())
        && no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
}

/// The order number of a bill's order: `DJ<bill id>_<random>`, at most 32 characters.
pub fn out_trade_no(bill_id: i64, random: &str) -> String {
    let mut s = format!("DJ{bill_id}_");
    let room = 32usize.saturating_sub(s.len());
    s.extend(
        random
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(room.min(12)),
    );
    s
}

/// What our order says, to compare a transaction with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected<'a> {
    pub mch_id: &'a str,
    pub app_id: &'a str,
    pub out_trade_no: &'a str,
    pub amount_fen: i64,
}

/// What WeChat Pay says was paid (the decrypted notification or a query answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported<'a> {
    pub mch_id: &'a str,
    pub app_id: &'a str,
    pub out_trade_no: &'a str,
    /// `amount.total`, never `payer_total` (coupons lower that).
    pub total_fen: i64,
    pub currency: Option<&'a str>,
}

/// A disagreement between a transaction and our order: an incident, never a credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    Merchant,
    App,
    OutTradeNo,
    Amount,
    Currency,
}

impl Mismatch {
    pub fn code(self) -> &'static str {
        match self {
            Mismatch::Merchant => "merchant_mismatch",
            Mismatch::App => "app_mismatch",
            Mismatch::OutTradeNo => "out_trade_no_mismatch",
            Mismatch::Amount => "amount_mismatch",
            Mismatch::Currency => "currency_mismatch",
        }
    }
}

/// Every way `got` disagrees with `want`; empty: the payment may be credited.
pub fn check_transaction(want: &Expected<'_>, got: &Reported<'_>) -> Vec<Mismatch> {
    let mut out = Vec::new();
    if got.mch_id != want.mch_id {
        out.push(Mismatch::Merchant);
    }
    if got.app_id != want.app_id {
        out.push(Mismatch::App);
    }
    if got.out_trade_no != want.out_trade_no {
        out.push(Mismatch::OutTradeNo);
    }
    if got.total_fen != want.amount_fen {
        out.push(Mismatch::Amount);
    }
    if got.currency != Some("CNY") {
        out.push(Mismatch::Currency);
    }
    out
}

/// The Shanghai calendar date of a unix-ms instant (trade bills are per Beijing day).
pub fn shanghai_date(ms: i64) -> Date {
    crate::platform::time::from_unix_ms(ms)
        .to_offset(SHANGHAI)
        .date()
}

/// `YYYY-MM-DD`, strictly.
pub fn parse_date(s: &str) -> Option<Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    (s.len() == 10).then(|| Date::parse(s, &fmt).ok()).flatten()
}

/// WeChat Pay's `success_time` (RFC 3339 with offset) → unix ms.
pub fn parse_success_time(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(crate::platform::time::unix_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The OpenAPI document describes a month with a pattern: it accepts what `Month::parse` does.
    #[test]
    fn the_documented_month_pattern_is_what_parse_accepts() {
        let pattern = regex::Regex::new(crate::http::doc::MONTH_PATTERN).unwrap();
        let mut inputs: Vec<String> = [
            "",
            "2026-1",
            "2026-001",
            "2026/11",
            " 2026-11",
            "2026-11 ",
            "२०२६-११",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for year in 1990..2210 {
            for month in 0..14 {
                inputs.push(format!("{year:04}-{month:02}"));
            }
        }
        for input in &inputs {
            assert_eq!(
                pattern.is_match(input),
                Month::parse(input).is_some(),
                "{input:?}"
            );
        }
    }

    fn employed(base: i64) -> Standard {
        standard(Category::Employed, Some(Fen(base))).unwrap()
    }

    #[test]
    fn employed_brackets_apply_to_the_whole_amount_with_inclusive_upper_bounds() {
        // (monthly income in fen, rule, dues in fen)
        let table = [
            (0, "employed_0_5pct", 0),
            (99, "employed_0_5pct", 0),  // 0.495 fen → 0
            (100, "employed_0_5pct", 1), // 0.5 fen → 1 (half-up)
            (200_000, "employed_0_5pct", 1_000),
            (299_999, "employed_0_5pct", 1_500), // 1499.995 → 1500
            (300_000, "employed_0_5pct", 1_500), // 3000.00 yuan: still 0.5 %
            (300_001, "employed_1pct", 3_000),   // 3000.01 yuan: 1 % of the whole
            (450_050, "employed_1pct", 4_501),   // 4500.5 → 4501
            (500_000, "employed_1pct", 5_000),
            (500_001, "employed_1_5pct", 7_500),
            (812_345, "employed_1_5pct", 12_185), // 12185.175 → 12185
            (1_000_000, "employed_1_5pct", 15_000),
            (1_000_001, "employed_2pct", 20_000),
            (2_000_025, "employed_2pct", 40_001), // 40000.5 → 40001
        ];
        for (base, rule, dues) in table {
            let s = employed(base);
            assert_eq!(s.rule.code(), rule, "{base}");
            assert_eq!(s.amount, Fen(dues), "{base}");
            assert_eq!(s.base, Some(Fen(base)));
        }
    }

    #[test]
    fn retirees_pay_on_the_pension() {
        let table = [
            (300_000, "retired_0_5pct", 1_500),
            (500_000, "retired_0_5pct", 2_500),
            (500_001, "retired_1pct", 5_000),
            (650_050, "retired_1pct", 6_501),
        ];
        for (base, rule, dues) in table {
            let s = standard(Category::Retired, Some(Fen(base))).unwrap();
            assert_eq!((s.rule.code(), s.amount), (rule, Fen(dues)), "{base}");
        }
    }

    #[test]
    fn students_unemployed_and_low_income_pay_twenty_fen_whatever_the_income() {
        for (cat, rule) in [
            (Category::Student, "student_flat"),
            (Category::Unemployed, "unemployed_flat"),
            (Category::Other, "low_income_flat"),
        ] {
            for base in [None, Some(Fen(0)), Some(Fen(900_000))] {
                let s = standard(cat, base).unwrap();
                assert_eq!((s.rule.code(), s.amount, s.base), (rule, Fen(20), None));
            }
        }
    }

    #[test]
    fn missing_or_negative_bases_are_not_assessed() {
        assert_eq!(
            standard(Category::Employed, None),
            Err(NotAssessed::MissingBase)
        );
        assert_eq!(
            standard(Category::Retired, Some(Fen(-1))),
            Err(NotAssessed::NegativeBase)
        );
    }

    fn facts(category: &str, base: i64) -> MemberFacts<'_> {
        MemberFacts {
            category,
            base: Some(Fen(base)),
            probationary: false,
            joined_at: None,
            exempt_reason: None,
            voluntary: None,
        }
    }

    #[test]
    fn voluntary_amounts_count_only_when_higher_than_the_rule() {
        let m = Month::parse("2026-11").unwrap();
        let mut f = facts("employed", 300_000);
        f.voluntary = Some(Fen(10_000));
        let a = assess(m, &f).unwrap();
        assert_eq!((a.amount, a.rule.code()), (Fen(10_000), "voluntary"));
        assert_eq!(a.standard.amount, Fen(1_500));
        f.voluntary = Some(Fen(100));
        let a = assess(m, &f).unwrap();
        assert_eq!((a.amount, a.rule.code()), (Fen(1_500), "employed_0_5pct"));
    }

    #[test]
    fn an_exemption_needs_a_reason_and_makes_the_bill_zero() {
        let m = Month::parse("2026-11").unwrap();
        let mut f = facts("employed", 812_345);
        f.exempt_reason = Some("  ");
        assert_eq!(assess(m, &f).unwrap().amount, Fen(12_185));
        f.exempt_reason = Some("重病住院");
        let a = assess(m, &f).unwrap();
        assert_eq!((a.amount, a.rule), (Fen(0), Rule::Exempt));
        assert_eq!(a.note.as_deref(), Some("重病住院"));
        assert_eq!(a.standard.amount, Fen(12_185), "the rule's amount is kept");
    }

    #[test]
    fn probationary_members_pay_from_the_month_of_their_approval() {
        let nov = Month::parse("2026-11").unwrap();
        let approved = nov.start_ms() + 29 * 86_400_000; // 2026-11-30 00:00 Beijing
        let mut f = facts("student", 0);
        f.probationary = true;
        f.joined_at = Some(approved);
        assert!(assess(nov, &f).is_ok());
        assert_eq!(
            assess(nov.plus(-1), &f),
            Err(NotAssessed::NotYetMember),
            "October is before the approval"
        );
        // 2026-12-01 00:00 Beijing is still 2026-11-30 in UTC: the month is Beijing's.
        f.joined_at = Some(nov.plus(1).start_ms());
        assert_eq!(assess(nov, &f), Err(NotAssessed::NotYetMember));
    }

    #[test]
    fn months_parse_strictly_and_count() {
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-11",
            "2026/11",
            "2026-11-01",
            "",
            "1999-12",
            "２０２６-11",
            "2026-+1",
        ] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
        let m = Month::parse("2026-01").unwrap();
        assert_eq!(m.plus(-1).to_string(), "2025-12");
        assert_eq!(m.plus(13).to_string(), "2027-02");
        assert_eq!(Month::parse("2026-07").unwrap().months_since(m), 6);
        assert_eq!(m.end_ms() - m.start_ms(), 31 * 86_400_000);
        assert_eq!(Month::of_unix_ms(m.start_ms()), m);
        assert_eq!(Month::of_unix_ms(m.start_ms() - 1), m.plus(-1));
        assert_eq!(m.label_zh(), "2026年1月");
    }

    #[test]
    fn back_payment_reaches_six_months_and_bills_one_month_ahead() {
        let now = Month::parse("2026-11").unwrap();
        assert_eq!(assessable(now, now), Ok(()));
        assert_eq!(assessable(now.plus(-6), now), Ok(()));
        assert_eq!(assessable(now.plus(-7), now), Err(MonthRefused::TooOld));
        assert_eq!(assessable(now.plus(1), now), Ok(()));
        assert_eq!(assessable(now.plus(2), now), Err(MonthRefused::TooFarAhead));
        assert!(payable_in(now.plus(-6), now));
        assert!(!payable_in(now.plus(-7), now));
    }

    #[test]
    fn late_payments_are_those_after_the_month() {
        let m = Month::parse("2026-10").unwrap();
        assert!(!is_late(m, m.end_ms() - 1));
        assert!(is_late(m, m.end_ms()));
    }

    #[test]
    fn transactions_are_checked_against_the_order_on_total_not_payer_total() {
        let want = Expected {
            mch_id: "1900000109",
            app_id: "wxmp",
            out_trade_no: "DJ1_abc",
            amount_fen: 1500,
        };
        let ok = Reported {
            mch_id: "1900000109",
            app_id: "wxmp",
            out_trade_no: "DJ1_abc",
            total_fen: 1500,
            currency: Some("CNY"),
        };
        assert!(check_transaction(&want, &ok).is_empty());
        let cases: [(Reported<'_>, Mismatch); 5] = [
            (
                Reported {
                    total_fen: 1,
                    ..ok.clone()
                },
                Mismatch::Amount,
            ),
            (
                Reported {
                    mch_id: "1900000999",
                    ..ok.clone()
                },
                Mismatch::Merchant,
            ),
            (
                Reported {
                    app_id: "wxother",
                    ..ok.clone()
                },
                Mismatch::App,
            ),
            (
                Reported {
                    out_trade_no: "DJ2_x",
                    ..ok.clone()
                },
                Mismatch::OutTradeNo,
            ),
            (
                Reported {
                    currency: None,
                    ..ok.clone()
                },
                Mismatch::Currency,
            ),
        ];
        for (got, m) in cases {
            assert_eq!(check_transaction(&want, &got), vec![m]);
        }
    }

    #[test]
    fn order_numbers_fit_wechat_pay() {
        let no = out_trade_no(123, "AbC9xyz0000000000000000000");
        assert_eq!(no, "DJ123_AbC9xyz00000");
        assert!(valid_out_trade_no(&no));
        let no = out_trade_no(i64::MAX, "AbC9xyz0000000000000000000");
        assert!(valid_out_trade_no(&no), "{no}");
        assert!(!valid_out_trade_no("DJ1"));
        assert!(!valid_out_trade_no("DJ1_订单"));
        assert!(valid_out_trade_no("a-b|c*d_e"));
    }

    #[test]
    fn collection_rates_round_half_up_per_mille() {
        assert_eq!(collection_rate_permille(0, 0), None);
        assert_eq!(collection_rate_permille(2, 3), Some(667));
        assert_eq!(collection_rate_permille(3, 3), Some(1000));
    }

    #[test]
    fn fen_formats_as_yuan() {
        for (fen, yuan) in [
            (12_185, "121.85"),
            (20, "0.20"),
            (0, "0.00"),
            (5, "0.05"),
            (100, "1.00"),
            (1_000_000, "10000.00"),
            (-5, "-0.05"),
            (-12_345, "-123.45"),
            (i64::MIN, "-92233720368547758.08"),
        ] {
            assert_eq!(Fen(fen).yuan(), yuan, "{fen}");
        }
    }

    #[test]
    fn yuan_as_typed_parses_to_fen() {
        for (text, want) in [
            ("121.85", Some(12_185)),
            ("0.2", Some(20)),
            ("0.20", Some(20)),
            ("15", Some(1_500)),
            (" 15.00 ", Some(1_500)),
            ("¥30", Some(3_000)),
            ("￥ 30.5", Some(3_050)),
            ("0", Some(0)),
            ("", None),
            (".5", None),
            ("5.", None),
            ("1.234", None),
            ("-1", None),
            ("+1", None),
            ("1,000", None),
            ("1e3", None),
            ("12.3a", None),
            ("一百", None),
            ("92233720368547758.08", None),
        ] {
            assert_eq!(Fen::parse_yuan(text).map(Fen::get), want, "{text:?}");
        }
        for fen in [0, 1, 20, 99, 100, 12_185, 1_000_000] {
            assert_eq!(Fen::parse_yuan(&Fen(fen).yuan()), Some(Fen(fen)));
        }
    }

    #[test]
    fn a_month_is_open_then_collecting_then_settled() {
        for (status, paid, want) in [
            ("open", 0, MonthPhase::Open),
            ("open", 3, MonthPhase::Collecting),
            ("settled", 0, MonthPhase::Settled),
            ("settled", 7, MonthPhase::Settled),
        ] {
            assert_eq!(MonthPhase::of(status, paid), want, "{status} {paid}");
        }
        assert_eq!(percent_label(Some(667)), "66.7%");
        assert_eq!(percent_label(Some(1000)), "100.0%");
        assert_eq!(percent_label(Some(0)), "0.0%");
        assert_eq!(percent_label(None), "—");
    }

    proptest! {
        /// Money as people read and type it: every amount prints as yuan with two decimals and
        /// parses back to the same fen, with or without the ¥ sign.
        #[test]
        fn yuan_round_trips_for_every_amount(fen in 0i64..i64::MAX / 2) {
            let text = Fen(fen).yuan();
            prop_assert_eq!(Fen::parse_yuan(&text), Some(Fen(fen)));
            prop_assert_eq!(Fen::parse_yuan(&format!("¥{text}")), Some(Fen(fen)));
            let (whole, frac) = text.split_once('.').unwrap();
            prop_assert_eq!(frac.len(), 2);
            prop_assert_eq!(whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap(), fen);
        }

        /// A collection rate is a per-mille within 0..=1000 while no more is paid than is due,
        /// rounded to the nearest per-mille, and absent when nothing is due.
        #[test]
        fn collection_rates_are_per_mille_of_what_is_due(due in 0i64..10_000_000, paid_share in 0.0f64..=1.0) {
            let paid = (due as f64 * paid_share) as i64;
            match collection_rate_permille(paid, due) {
                None => prop_assert_eq!(due, 0),
                Some(r) => {
                    prop_assert!((0..=1000).contains(&r));
                    let exact = paid as f64 * 1000.0 / due as f64;
                    prop_assert!((r as f64 - exact).abs() <= 0.5 + 1e-9, "{r} vs {exact}");
                    if paid == due { prop_assert_eq!(r, 1000); }
                }
            }
        }

        /// A transaction is credited only when it says exactly what our order says: any change
        /// of amount (a single fen either way, a coupon's payer total is not compared) is an
        /// incident.
        #[test]
        fn only_an_exact_transaction_is_credited(amount in 1i64..100_000_000, delta in -10_000i64..10_000) {
            let want = Expected { mch_id: "1900000109", app_id: "wxmp", out_trade_no: "DJ1_abc", amount_fen: amount };
            let got = Reported { mch_id: "1900000109", app_id: "wxmp", out_trade_no: "DJ1_abc", total_fen: amount + delta, currency: Some("CNY") };
            let mismatches = check_transaction(&want, &got);
            if delta == 0 {
                prop_assert!(mismatches.is_empty());
            } else {
                prop_assert_eq!(mismatches, vec![Mismatch::Amount]);
            }
        }

        /// A printed ledger adds up: the bills of a roster, printed in yuan and read back, sum
        /// to the fen total of the bills, and no bill is more than 2 % of its base (half-up).
        #[test]
        fn a_printed_ledger_adds_up_to_its_bills(bases in proptest::collection::vec(0i64..3_000_000, 0..200)) {
            let bills: Vec<i64> = bases.iter().map(|b| employed(*b).amount.0).collect();
            let printed: i64 = bills.iter().map(|f| Fen::parse_yuan(&Fen(*f).yuan()).unwrap().0).sum();
            prop_assert_eq!(printed, bills.iter().sum::<i64>());
            for (b, fen) in bases.iter().zip(&bills) {
                prop_assert!(*fen >= 0 && *fen * 10_000 <= *b * 200 + 5_000, "{b} → {fen}");
            }
        }
    }

    proptest! {
        /// Half-up: the result is within half a fen of the exact value, and exact halves go up.
        #[test]
        fn rounding_is_half_up_to_the_nearest_fen(base in 0i64..1_000_000_000_000, bp in prop::sample::select(vec![50i64, 100, 150, 200])) {
            let got = Fen(base).percent_bp(bp).0 as i128;
            let exact_x10000 = base as i128 * bp as i128;
            let diff = got * 10_000 - exact_x10000; // in 1/10000 fen
            prop_assert!(diff > -5_000 && diff <= 5_000, "diff {diff}");
            if exact_x10000 % 10_000 == 5_000 {
                prop_assert_eq!(diff, 5_000);
            }
        }

        /// A higher income never pays less: within a bracket the amount grows with the base, and
        /// at each bound it jumps up (the rate applies to the whole amount).
        #[test]
        fn dues_are_monotonic_within_and_across_brackets(a in 0i64..3_000_000, b in 0i64..3_000_000) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let (sl, sh) = (employed(lo), employed(hi));
            prop_assert!(sl.amount <= sh.amount, "{lo} {hi}");
            let (rl, rh) = (
                standard(Category::Retired, Some(Fen(lo))).unwrap(),
                standard(Category::Retired, Some(Fen(hi))).unwrap(),
            );
            prop_assert!(rl.amount <= rh.amount);
        }

        /// The bracket is the first whose inclusive upper bound holds the income.
        #[test]
        fn the_bracket_follows_the_inclusive_bounds(base in 0i64..5_000_000) {
            let want = if base <= 300_000 { 50 } else if base <= 500_000 { 100 } else if base <= 1_000_000 { 150 } else { 200 };
            prop_assert_eq!(employed(base).rule.rate_bp(), Some(want));
        }

        /// Whatever the month text, parsing never panics and what parses prints back the same.
        #[test]
        fn month_parsing_round_trips(s in "\\PC{0,9}") {
            if let Some(m) = Month::parse(&s) {
                prop_assert_eq!(m.to_string(), s);
            }
        }
    }
}
