//! The statistics' arithmetic, pure: the period asked for, rates, medians, and the folding of the
//! store's grouped counts into the report's rows. Table-tested below.
//!
//! - A period is a run of whole months (Asia/Shanghai), `from..=to`, at most [`MAX_MONTHS`].
//! - A rate is `part / whole` rounded to four decimals, `None` when the whole is 0 (no bills is
//!   not a 0 % collection rate).
//! - Dues: exempt bills are neither owed nor collected; `paying` counts as not paid yet.
//! - Attendance: present and late count as attended; excused (`leave`) and absent do not, and
//!   every expected member counts in the whole.
//! - Pushes: skipped rows (no openid for the channel) were never attempted and are left out of
//!   the whole; `unknown` rows are in it (their outcome can't be known).
//! - Moderation: the time to decision is `decided_at - created_at` of the items an editor (or the
//!   moderation check) decided; the median of an even count is the mean of the middle two.

use std::collections::BTreeMap;

use serde::Serialize;

pub use crate::dues::rules::Month;

/// The longest period one report covers.
pub const MAX_MONTHS: i64 = 36;
/// The months a report covers when `from` is not given: this one and the five before.
pub const DEFAULT_MONTHS: i64 = 6;
const DAY_MS: i64 = 86_400_000;
/// Asia/Shanghai is UTC+8 all year.
const SHANGHAI_MS: i64 = 8 * 3_600_000;

/// Whole months `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: Month,
    pub to: Month,
}

impl Period {
    /// `from`/`to` as given (`YYYY-MM`, blank = default); `now` is the current month.
    pub fn parse(from: Option<&str>, to: Option<&str>, now: Month) -> Result<Period, String> {
        let month = |field: &str, v: &str| {
            Month::parse(v.trim()).ok_or_else(|| format!("{field}: a month as YYYY-MM"))
        };
        let to = match to {
            Some(v) => month("to", v)?,
            None => now,
        };
        let from = match from {
            Some(v) => month("from", v)?,
            None => to.plus(1 - DEFAULT_MONTHS),
        };
        if from.months_since(to) > 0 {
            return Err("from: must not be after to".into());
        }
        if to.months_since(from) + 1 > MAX_MONTHS {
            return Err(format!("to: at most {MAX_MONTHS} months per report"));
        }
        Ok(Period { from, to })
    }

    pub fn months(self) -> Vec<Month> {
        (0..=self.to.months_since(self.from))
            .map(|i| self.from.plus(i))
            .collect()
    }

    pub fn start_ms(self) -> i64 {
        self.from.start_ms()
    }

    pub fn end_ms(self) -> i64 {
        self.to.end_ms()
    }
}

/// The day number (days since 1970-01-01 in Asia/Shanghai) of an instant; the store groups by
/// the same expression, `(at + 28800000) / 86400000`.
pub fn day_of(ms: i64) -> i64 {
    (ms + SHANGHAI_MS).div_euclid(DAY_MS)
}

/// `2026-11-05` for a day number.
pub fn day_label(day: i64) -> String {
    crate::platform::time::local_date(day * DAY_MS)
}

/// `part / whole`, four decimals; None when `whole` is 0.
pub fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| ((part as f64 / whole as f64) * 10_000.0).round() / 10_000.0)
}

/// The median; the mean (rounded down) of the middle two for an even count.
pub fn median(values: &[i64]) -> Option<i64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]).div_euclid(2)),
    }
}

// ---------------------------------------------------------------- dues

/// One group of the store's dues query: bills of a month and unit in one status.
#[derive(Debug, Clone, PartialEq)]
pub struct BillGroup {
    pub month: String,
    pub org_unit_id: i64,
    pub status: String,
    pub bills: i64,
    pub amount_fen: i64,
    pub paid_fen: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DuesFigures {
    /// Bills owed (every bill but the exempt ones).
    pub bills: i64,
    pub paid: i64,
    pub unpaid: i64,
    pub exempt: i64,
    pub due_fen: i64,
    pub paid_fen: i64,
    /// paid / bills.
    pub rate: Option<f64>,
}

impl DuesFigures {
    fn add(&mut self, g: &BillGroup) {
        match g.status.as_str() {
            "exempt" => self.exempt += g.bills,
            "paid" => {
                self.bills += g.bills;
                self.paid += g.bills;
                self.due_fen += g.amount_fen;
                self.paid_fen += g.paid_fen;
            }
            _ => {
                self.bills += g.bills;
                self.unpaid += g.bills;
                self.due_fen += g.amount_fen;
            }
        }
        self.rate = rate(self.paid, self.bills);
    }
}

/// Dues figures per (month, org unit), per month, and per org unit over the period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DuesFolded {
    pub by_unit_month: BTreeMap<(String, i64), DuesFigures>,
    pub by_month: BTreeMap<String, DuesFigures>,
    pub by_unit: BTreeMap<i64, DuesFigures>,
}

pub fn fold_dues(groups: &[BillGroup]) -> DuesFolded {
    let mut out = DuesFolded::default();
    for g in groups {
        out.by_unit_month
            .entry((g.month.clone(), g.org_unit_id))
            .or_default()
            .add(g);
        out.by_month.entry(g.month.clone()).or_default().add(g);
        out.by_unit.entry(g.org_unit_id).or_default().add(g);
    }
    out
}

// ---------------------------------------------------------------- attendance

/// One group of the store's attendance query: rows of one meeting and one key (an org unit or a
/// member) in one status.
#[derive(Debug, Clone, PartialEq)]
pub struct AttendanceGroup {
    pub activity_id: i64,
    pub starts_at: i64,
    pub key: i64,
    pub status: String,
    pub count: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AttendanceFigures {
    /// Distinct meetings.
    pub meetings: i64,
    pub expected: i64,
    /// present + late.
    pub attended: i64,
    pub present: i64,
    pub late: i64,
    pub leave: i64,
    pub absent: i64,
    /// attended / expected.
    pub rate: Option<f64>,
}

#[derive(Default)]
struct AttendanceAcc {
    figures: AttendanceFigures,
    meetings: std::collections::BTreeSet<i64>,
}

impl AttendanceAcc {
    fn add(&mut self, g: &AttendanceGroup) {
        let f = &mut self.figures;
        f.expected += g.count;
        match g.status.as_str() {
            "present" => f.present += g.count,
            "late" => f.late += g.count,
            "leave" => f.leave += g.count,
            _ => f.absent += g.count,
        }
        f.attended = f.present + f.late;
        f.rate = rate(f.attended, f.expected);
        self.meetings.insert(g.activity_id);
        f.meetings = self.meetings.len() as i64;
    }
}

/// Attendance per key (org unit or member) over the period, and per month over every key.
pub fn fold_attendance(
    groups: &[AttendanceGroup],
) -> (
    BTreeMap<i64, AttendanceFigures>,
    BTreeMap<String, AttendanceFigures>,
) {
    let mut by_key: BTreeMap<i64, AttendanceAcc> = BTreeMap::new();
    let mut by_month: BTreeMap<String, AttendanceAcc> = BTreeMap::new();
    for g in groups {
        by_key.entry(g.key).or_default().add(g);
        by_month
            .entry(Month::of_unix_ms(g.starts_at).to_string())
            .or_default()
            .add(g);
    }
    (
        by_key.into_iter().map(|(k, a)| (k, a.figures)).collect(),
        by_month.into_iter().map(|(k, a)| (k, a.figures)).collect(),
    )
}

// ---------------------------------------------------------------- followers

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FollowerFigures {
    pub subscribed: i64,
    pub unsubscribed: i64,
    /// subscribed - unsubscribed.
    pub net: i64,
}

impl FollowerFigures {
    fn add(&mut self, kind: &str, n: i64) {
        match kind {
            "subscribe" => self.subscribed += n,
            _ => self.unsubscribed += n,
        }
        self.net = self.subscribed - self.unsubscribed;
    }
}

/// (label, figures) rows: a day (`2026-11-05`) or a month (`2026-11`).
pub type Labelled<F> = Vec<(String, F)>;

/// Follower events per day (every day of the period up to `today`, zeros included, so a chart's
/// x axis is the calendar) and per month. `groups` are (day number, kind, count).
pub fn fold_followers(
    period: Period,
    today: i64,
    groups: &[(i64, String, i64)],
) -> (Labelled<FollowerFigures>, Labelled<FollowerFigures>) {
    let first = day_of(period.start_ms());
    let last = (day_of(period.end_ms()) - 1).min(today).max(first - 1);
    let mut days: BTreeMap<i64, FollowerFigures> =
        (first..=last).map(|d| (d, Default::default())).collect();
    let mut months: BTreeMap<String, FollowerFigures> = period
        .months()
        .into_iter()
        .map(|m| (m.to_string(), Default::default()))
        .collect();
    for (day, kind, n) in groups {
        days.entry(*day).or_default().add(kind, *n);
        months
            .entry(Month::of_unix_ms(day * DAY_MS).to_string())
            .or_default()
            .add(kind, *n);
    }
    let days = days.into_iter().map(|(d, f)| (day_label(d), f)).collect();
    (days, months.into_iter().collect())
}

// ---------------------------------------------------------------- pushes

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DeliveryFigures {
    /// Every delivery row.
    pub total: i64,
    pub sent: i64,
    pub failed: i64,
    pub unknown: i64,
    pub skipped: i64,
    /// pending + in flight: not finished yet.
    pub pending: i64,
    /// sent / (total - skipped).
    pub delivery_rate: Option<f64>,
    /// failed / (total - skipped).
    pub failure_rate: Option<f64>,
}

impl DeliveryFigures {
    pub fn add(&mut self, status: &str, n: i64) {
        self.total += n;
        match status {
            "sent" => self.sent += n,
            "failed" => self.failed += n,
            "unknown" => self.unknown += n,
            "skipped" => self.skipped += n,
            _ => self.pending += n,
        }
        let attempted = self.total - self.skipped;
        self.delivery_rate = rate(self.sent, attempted);
        self.failure_rate = rate(self.failed, attempted);
    }

    pub fn merge(&mut self, other: &DeliveryFigures) {
        for (status, n) in [
            ("sent", other.sent),
            ("failed", other.failed),
            ("unknown", other.unknown),
            ("skipped", other.skipped),
            ("pending", other.pending),
        ] {
            self.add(status, n);
        }
    }
}

// ---------------------------------------------------------------- moderation

/// One submission or board post as the store reads it (not drafts).
#[derive(Debug, Clone, PartialEq)]
pub struct Moderated {
    pub created_at: i64,
    pub status: String,
    pub decided_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModerationFigures {
    pub count: i64,
    pub approved: i64,
    pub rejected: i64,
    pub pending: i64,
    /// Median of decided_at - created_at, in seconds, over the items with a decision time.
    pub median_decision_seconds: Option<i64>,
}

pub fn moderation_figures<'a>(items: impl IntoIterator<Item = &'a Moderated>) -> ModerationFigures {
    let mut f = ModerationFigures::default();
    let mut waits = Vec::new();
    for i in items {
        f.count += 1;
        match i.status.as_str() {
            "approved" => f.approved += 1,
            "rejected" => f.rejected += 1,
            _ => f.pending += 1,
        }
        if let Some(d) = i.decided_at {
            waits.push((d - i.created_at).max(0) / 1000);
        }
    }
    f.median_decision_seconds = median(&waits);
    f
}

/// Per month of the period (every month, zeros included), by the month an item came in.
pub fn moderation_by_month(period: Period, items: &[Moderated]) -> Labelled<ModerationFigures> {
    period
        .months()
        .into_iter()
        .map(|m| {
            let (start, end) = (m.start_ms(), m.end_ms());
            let f = moderation_figures(
                items
                    .iter()
                    .filter(|i| i.created_at >= start && i.created_at < end),
            );
            (m.to_string(), f)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Month {
        Month::parse(s).unwrap()
    }

    #[test]
    fn periods_default_to_six_months_and_refuse_bad_input() {
        let now = m("2026-11");
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Result<(&'a str, &'a str), &'a str>,
        );
        let cases: &[Case] = &[
            (None, None, Ok(("2026-06", "2026-11"))),
            (Some("2026-01"), None, Ok(("2026-01", "2026-11"))),
            (None, Some("2026-02"), Ok(("2025-09", "2026-02"))),
            (Some("2026-03"), Some("2026-03"), Ok(("2026-03", "2026-03"))),
            (Some("2023-12"), Some("2026-11"), Ok(("2023-12", "2026-11"))),
            (Some("2023-11"), Some("2026-11"), Err("to: at most 36")),
            (
                Some("2026-05"),
                Some("2026-04"),
                Err("from: must not be after"),
            ),
            (Some("2026-13"), None, Err("from: a month")),
            (None, Some("26-1"), Err("to: a month")),
        ];
        for (from, to, want) in cases {
            let got = Period::parse(*from, *to, now);
            match want {
                Ok((f, t)) => {
                    let p = got.unwrap();
                    assert_eq!(
                        (p.from.to_string(), p.to.to_string()),
                        (f.to_string(), t.to_string())
                    );
                }
                Err(msg) => assert!(got.unwrap_err().starts_with(msg), "{from:?} {to:?}"),
            }
        }
        let p = Period::parse(Some("2025-11"), Some("2026-02"), now).unwrap();
        let months: Vec<String> = p.months().iter().map(|m| m.to_string()).collect();
        assert_eq!(months, ["2025-11", "2025-12", "2026-01", "2026-02"]);
        // 2026-01-01 00:00 Asia/Shanghai is 2025-12-31 16:00 UTC.
        assert_eq!(
            crate::platform::time::rfc3339(m("2026-01").start_ms()),
            "2025-12-31T16:00:00Z"
        );
    }

    #[test]
    fn days_are_shanghai_days() {
        let midnight = m("2026-11").start_ms();
        assert_eq!(day_label(day_of(midnight)), "2026-11-01");
        assert_eq!(day_label(day_of(midnight - 1)), "2026-10-31");
        assert_eq!(day_of(midnight + DAY_MS - 1), day_of(midnight));
    }

    #[test]
    fn rates_round_to_four_decimals_and_need_a_whole() {
        let cases = [
            (1, 2, Some(0.5)),
            (2, 3, Some(0.6667)),
            (0, 5, Some(0.0)),
            (5, 5, Some(1.0)),
            (0, 0, None),
        ];
        for (part, whole, want) in cases {
            assert_eq!(rate(part, whole), want, "{part}/{whole}");
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        let cases: &[(&[i64], Option<i64>)] = &[
            (&[], None),
            (&[7], Some(7)),
            (&[30, 10, 20], Some(20)),
            (&[40, 10, 20, 30], Some(25)),
            (&[1, 2], Some(1)),
        ];
        for (v, want) in cases {
            assert_eq!(median(v), *want, "{v:?}");
        }
    }

    fn bills(month: &str, unit: i64, status: &str, n: i64, amount: i64, paid: i64) -> BillGroup {
        BillGroup {
            month: month.into(),
            org_unit_id: unit,
            status: status.into(),
            bills: n,
            amount_fen: amount,
            paid_fen: paid,
        }
    }

    #[test]
    fn dues_collection_leaves_exempt_bills_out() {
        let f = fold_dues(&[
            bills("2026-10", 1, "paid", 3, 3000, 3100),
            bills("2026-10", 1, "unpaid", 1, 1000, 0),
            bills("2026-10", 1, "paying", 1, 500, 0),
            bills("2026-10", 1, "exempt", 2, 0, 0),
            bills("2026-10", 2, "unpaid", 2, 40, 0),
            bills("2026-11", 1, "paid", 1, 1000, 1000),
        ]);
        let u1 = &f.by_unit_month[&("2026-10".to_string(), 1)];
        assert_eq!(
            (
                u1.bills,
                u1.paid,
                u1.unpaid,
                u1.exempt,
                u1.due_fen,
                u1.paid_fen,
                u1.rate
            ),
            (5, 3, 2, 2, 4500, 3100, Some(0.6))
        );
        let u2 = &f.by_unit_month[&("2026-10".to_string(), 2)];
        assert_eq!((u2.bills, u2.paid, u2.rate), (2, 0, Some(0.0)));
        let oct = &f.by_month["2026-10"];
        assert_eq!((oct.bills, oct.paid, oct.rate), (7, 3, Some(0.4286)));
        let unit1 = &f.by_unit[&1];
        assert_eq!((unit1.bills, unit1.paid, unit1.rate), (6, 4, Some(0.6667)));
        let only_exempt = fold_dues(&[bills("2026-10", 3, "exempt", 1, 0, 0)]);
        assert_eq!(only_exempt.by_unit[&3].rate, None);
    }

    #[test]
    fn attendance_counts_present_and_late_of_everyone_expected() {
        let g = |activity_id, key, status: &str, count| AttendanceGroup {
            activity_id,
            starts_at: m("2026-10").start_ms() + activity_id * DAY_MS,
            key,
            status: status.into(),
            count,
        };
        let (by_key, by_month) = fold_attendance(&[
            g(1, 10, "present", 3),
            g(1, 10, "late", 1),
            g(1, 10, "leave", 1),
            g(1, 10, "absent", 1),
            g(2, 10, "absent", 2),
            g(2, 20, "present", 2),
        ]);
        let u = &by_key[&10];
        assert_eq!(
            (u.meetings, u.expected, u.attended, u.leave, u.absent, u.rate),
            (2, 8, 4, 1, 3, Some(0.5))
        );
        assert_eq!(by_key[&20].rate, Some(1.0));
        let oct = &by_month["2026-10"];
        assert_eq!((oct.meetings, oct.expected, oct.attended), (2, 10, 6));
    }

    #[test]
    fn follower_days_fill_the_calendar_up_to_today() {
        let p = Period::parse(Some("2026-10"), Some("2026-11"), m("2026-11")).unwrap();
        let nov3 = day_of(m("2026-11").start_ms()) + 2;
        let (days, months) = fold_followers(
            p,
            nov3,
            &[
                (nov3, "subscribe".into(), 3),
                (nov3, "unsubscribe".into(), 1),
                (nov3 - 10, "subscribe".into(), 2),
            ],
        );
        assert_eq!(days.len(), 31 + 3);
        assert_eq!(days.last().unwrap().0, "2026-11-03");
        assert_eq!(days.last().unwrap().1.net, 2);
        assert_eq!(
            months,
            vec![
                (
                    "2026-10".into(),
                    FollowerFigures {
                        subscribed: 2,
                        unsubscribed: 0,
                        net: 2
                    }
                ),
                (
                    "2026-11".into(),
                    FollowerFigures {
                        subscribed: 3,
                        unsubscribed: 1,
                        net: 2
                    }
                ),
            ]
        );
    }

    #[test]
    fn delivery_rates_leave_skipped_rows_out() {
        let mut f = DeliveryFigures::default();
        for (s, n) in [
            ("sent", 6),
            ("failed", 1),
            ("unknown", 1),
            ("skipped", 2),
            ("pending", 0),
        ] {
            f.add(s, n);
        }
        assert_eq!(
            (f.total, f.delivery_rate, f.failure_rate),
            (10, Some(0.75), Some(0.125))
        );
        let mut sum = DeliveryFigures::default();
        sum.merge(&f);
        sum.merge(&f);
        assert_eq!(
            (sum.total, sum.sent, sum.delivery_rate),
            (20, 12, Some(0.75))
        );
        assert_eq!(DeliveryFigures::default().delivery_rate, None);
    }

    #[test]
    fn moderation_counts_and_median_turnaround() {
        let start = m("2026-11").start_ms();
        let item = |created: i64, status: &str, wait_s: Option<i64>| Moderated {
            created_at: start + created,
            status: status.into(),
            decided_at: wait_s.map(|w| start + created + w * 1000),
        };
        let items = [
            item(0, "approved", Some(60)),
            item(1000, "rejected", Some(600)),
            item(2000, "approved", Some(120)),
            item(3000, "pending", None),
            item(-1000, "approved", Some(5)),
        ];
        let p = Period::parse(Some("2026-10"), Some("2026-11"), m("2026-11")).unwrap();
        let by_month = moderation_by_month(p, &items);
        assert_eq!(by_month[0].0, "2026-10");
        assert_eq!(
            (by_month[0].1.count, by_month[0].1.median_decision_seconds),
            (1, Some(5))
        );
        let nov = &by_month[1].1;
        assert_eq!(
            (
                nov.count,
                nov.approved,
                nov.rejected,
                nov.pending,
                nov.median_decision_seconds
            ),
            (4, 2, 1, 1, Some(120))
        );
        assert_eq!(moderation_figures(&items).median_decision_seconds, Some(90));
    }
}
