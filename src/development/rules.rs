//! 发展党员 rules with no I/O: the step definitions (`content/development.toml`), calendar
//! arithmetic in Asia/Shanghai dates, the validation of a proposed step date, the deadlines of a
//! person, the next step, reminders due and the stage a record is in.
//!
//! Everything here works on `time::Date` (a calendar date in Asia/Shanghai): a step happens on a
//! day, not at an instant. Months and years are calendar months (2022-03-15 + 1 year =
//! 2023-03-15; a 31st or 29 February start ends on the last day of the shorter month).

use std::collections::{BTreeSet, HashSet};

use anyhow::{bail, ensure, Context};
use serde::{Deserialize, Serialize};
use time::{macros::format_description, Date, Duration, Month, Weekday};

// ---------------------------------------------------------------- stages

/// Where a person is in the process. The order of the variants is the order of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// 入党申请人
    Applicant,
    /// 入党积极分子
    Activist,
    /// 发展对象
    Target,
    /// 预备党员
    Probationary,
    /// 正式党员
    Full,
    /// 取消预备党员资格 (terminal, off the main line)
    Cancelled,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Applicant,
        Stage::Activist,
        Stage::Target,
        Stage::Probationary,
        Stage::Full,
        Stage::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Applicant => "applicant",
            Stage::Activist => "activist",
            Stage::Target => "target",
            Stage::Probationary => "probationary",
            Stage::Full => "full",
            Stage::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The stage's Chinese name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Applicant => "入党申请人",
            Stage::Activist => "入党积极分子",
            Stage::Target => "发展对象",
            Stage::Probationary => "预备党员",
            Stage::Full => "正式党员",
            Stage::Cancelled => "取消预备党员资格",
        }
    }

    /// Steps can still be recorded.
    pub fn is_open(self) -> bool {
        !matches!(self, Stage::Full | Stage::Cancelled)
    }
}

// ---------------------------------------------------------------- dates

/// `2025-03-15` ⇄ `Date`.
pub fn parse_date(s: &str) -> Option<Date> {
    Date::parse(s.trim(), format_description!("[year]-[month]-[day]")).ok()
}

pub fn format_date(d: Date) -> String {
    d.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// Today in Asia/Shanghai at the instant `now_ms` (unix ms).
pub fn today(now_ms: i64) -> Date {
    crate::platform::time::from_unix_ms(now_ms)
        .to_offset(crate::platform::time::SHANGHAI)
        .date()
}

/// Midnight of `d` in Asia/Shanghai, as unix ms (for columns that hold instants).
pub fn start_of_day_ms(d: Date) -> i64 {
    crate::platform::time::unix_ms(
        d.with_hms(0, 0, 0)
            .expect("midnight")
            .assume_offset(crate::platform::time::SHANGHAI),
    )
}

/// `d` plus `months` calendar months; the day is clamped to the length of the target month.
pub fn add_months(d: Date, months: i64) -> Date {
    let total = i64::from(d.year()) * 12 + i64::from(d.month() as u8 - 1) + months;
    let year = total.div_euclid(12) as i32;
    let month = Month::try_from((total.rem_euclid(12) + 1) as u8).expect("month 1..=12");
    let day = d.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).unwrap_or(d)
}

pub fn add_days(d: Date, days: i64) -> Date {
    d.checked_add(Duration::days(days)).unwrap_or(d)
}

/// Whole days from `a` to `b` (negative when `b` is earlier).
pub fn days_between(a: Date, b: Date) -> i64 {
    (b - a).whole_days()
}

/// Working days: Monday–Friday except `holidays`, plus `workdays` (调休 weekends).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    pub holidays: BTreeSet<Date>,
    pub workdays: BTreeSet<Date>,
}

impl Calendar {
    pub fn is_working_day(&self, d: Date) -> bool {
        if self.workdays.contains(&d) {
            return true;
        }
        !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) && !self.holidays.contains(&d)
    }

    /// The `n`-th working day counting from `start` (itself included when it is one); `n ≥ 1`.
    pub fn nth_working_day(&self, start: Date, n: i64) -> Date {
        let mut d = start;
        let mut seen = 0;
        // A year of holidays can't hide more than a few hundred days; the bound only stops a
        // calendar that marks every day a holiday from looping forever.
        for _ in 0..(n.max(1) * 7 + 400) {
            if self.is_working_day(d) {
                seen += 1;
                if seen >= n.max(1) {
                    return d;
                }
            }
            d = add_days(d, 1);
        }
        d
    }
}

/// An offset from another step's date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    Days(i64),
    Months(i64),
    /// Counted from the start day itself: a notice of 5 working days from Monday ends Friday.
    WorkingDays(i64),
}

impl Offset {
    /// The first date allowed by "at least this long after `from`".
    pub fn earliest(self, cal: &Calendar, from: Date) -> Date {
        match self {
            Offset::Days(n) => add_days(from, n),
            Offset::Months(n) => add_months(from, n),
            Offset::WorkingDays(0) => from,
            Offset::WorkingDays(n) => add_days(cal.nth_working_day(from, n), 1),
        }
    }

    /// The last date allowed by "within this long after `from`".
    pub fn latest(self, cal: &Calendar, from: Date) -> Date {
        match self {
            Offset::Days(n) => add_days(from, n),
            Offset::Months(n) => add_months(from, n),
            Offset::WorkingDays(0) => from,
            Offset::WorkingDays(n) => cal.nth_working_day(from, n),
        }
    }
}

// ---------------------------------------------------------------- definitions

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recorder {
    /// The branch secretary (or an admin).
    Secretary,
    /// The upper committee: admins only.
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpinionOf {
    /// 培养联系人
    Contact,
    /// 党支部
    Branch,
    /// 上级党委
    Committee,
}

impl OpinionOf {
    pub fn as_str(self) -> &'static str {
        match self {
            OpinionOf::Contact => "contact",
            OpinionOf::Branch => "branch",
            OpinionOf::Committee => "committee",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// Not earlier than `after`'s date plus the offset.
    MinAfter { after: String, offset: Offset },
    /// Not later than `after`'s date plus the offset.
    WithinAfter { after: String, offset: Offset },
    /// The person is at least this old on the step's date.
    MinAge { years: u32 },
    /// At least `min` entries of the (repeatable) step `step` first.
    MinCount { step: String, min: u32 },
    /// `end_date` spans at least `min_days` (both ends counted), or `class_hours ≥ min_hours`.
    Training { min_days: u32, min_hours: u32 },
    /// Not before the end of probation (extensions included).
    AfterProbationEnd,
    /// `extension_months` within bounds.
    ExtensionMonths { min: u32, max: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeRule {
    /// What a refusal reports, e.g. `activist_min_one_year`.
    pub name: String,
    pub label: String,
    pub kind: RuleKind,
    /// A later date is accepted with a `delay_reason` (特殊情况).
    pub unless_reason: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepDef {
    pub key: String,
    pub stage: Stage,
    pub order: i64,
    pub name: String,
    pub role: Recorder,
    pub approval: bool,
    pub documents: Vec<String>,
    pub opinion_of: Option<OpinionOf>,
    pub requires: Vec<String>,
    pub repeatable: bool,
    pub optional: bool,
    pub enters_stage: Option<Stage>,
    pub future_allowed: bool,
    pub min_contacts: u32,
    pub max_contacts: u32,
    pub rules: Vec<TimeRule>,
}

/// What a periodic duty counts.
#[derive(Debug, Clone, PartialEq, Eq, schemars::JsonSchema)]
pub enum Counts {
    /// Thought reports (思想汇报).
    Reports,
    /// Entries of a step.
    Step(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Periodic {
    pub rule: String,
    pub label: String,
    pub counts: Counts,
    pub from: String,
    pub during: Stage,
    pub every_months: u32,
    pub until_probation_end: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probation {
    pub from: String,
    pub months: u32,
    pub extension_step: Option<String>,
    pub due_rule: String,
    pub due_label: String,
    pub met_by: Vec<String>,
}

/// The whole `development.toml`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Definitions {
    /// By `order`.
    pub steps: Vec<StepDef>,
    pub periodic: Vec<Periodic>,
    pub probation: Probation,
    pub reminder_days_before: i64,
    pub calendar: Calendar,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    reminder_days_before: i64,
    #[serde(default)]
    calendar: CalendarFile,
    probation: ProbationFile,
    #[serde(rename = "step")]
    steps: Vec<StepFile>,
    #[serde(default, rename = "periodic")]
    periodic: Vec<PeriodicFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    #[serde(default)]
    holidays: Vec<String>,
    #[serde(default)]
    workdays: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbationFile {
    from: String,
    months: u32,
    extension_step: Option<String>,
    due_rule: String,
    due_label: String,
    #[serde(default)]
    met_by: Vec<String>,
}

fn secretary() -> Recorder {
    Recorder::Secretary
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    key: String,
    stage: Stage,
    order: i64,
    name: String,
    #[serde(default = "secretary")]
    role: Recorder,
    #[serde(default)]
    approval: bool,
    #[serde(default)]
    documents: Vec<String>,
    opinion_of: Option<OpinionOf>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    repeatable: bool,
    #[serde(default)]
    optional: bool,
    enters_stage: Option<Stage>,
    #[serde(default)]
    future_allowed: bool,
    #[serde(default)]
    min_contacts: u32,
    #[serde(default)]
    max_contacts: u32,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    label: Option<String>,
    after: Option<String>,
    min_days: Option<i64>,
    min_months: Option<i64>,
    min_years: Option<i64>,
    min_working_days: Option<i64>,
    within_days: Option<i64>,
    within_months: Option<i64>,
    within_years: Option<i64>,
    min_age_years: Option<u32>,
    count_of: Option<String>,
    min_count: Option<u32>,
    training_min_days: Option<u32>,
    training_min_hours: Option<u32>,
    #[serde(default)]
    after_probation_end: bool,
    extension_min_months: Option<u32>,
    extension_max_months: Option<u32>,
    #[serde(default)]
    unless_reason: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeriodicFile {
    rule: String,
    label: String,
    counts: String,
    from: String,
    during: Stage,
    every_months: u32,
    #[serde(default)]
    until_probation_end: bool,
}

fn rule_kind(r: &RuleFile) -> anyhow::Result<RuleKind> {
    let mut kinds = Vec::new();
    let min = [
        r.min_days.map(Offset::Days),
        r.min_months.map(Offset::Months),
        r.min_years.map(|y| Offset::Months(y * 12)),
        r.min_working_days.map(Offset::WorkingDays),
    ];
    let within = [
        r.within_days.map(Offset::Days),
        r.within_months.map(Offset::Months),
        r.within_years.map(|y| Offset::Months(y * 12)),
    ];
    for o in min.iter().chain(within.iter()).flatten() {
        let (Offset::Days(n) | Offset::Months(n) | Offset::WorkingDays(n)) = *o;
        ensure!(n >= 0, "offsets are not negative");
    }
    for o in min.into_iter().flatten() {
        let after = r.after.clone().context("min_* needs `after`")?;
        kinds.push(RuleKind::MinAfter { after, offset: o });
    }
    for o in within.into_iter().flatten() {
        let after = r.after.clone().context("within_* needs `after`")?;
        kinds.push(RuleKind::WithinAfter { after, offset: o });
    }
    if let Some(years) = r.min_age_years {
        kinds.push(RuleKind::MinAge { years });
    }
    if let Some(step) = &r.count_of {
        kinds.push(RuleKind::MinCount {
            step: step.clone(),
            min: r.min_count.context("count_of needs min_count")?,
        });
    }
    if r.training_min_days.is_some() || r.training_min_hours.is_some() {
        kinds.push(RuleKind::Training {
            min_days: r.training_min_days.context("training_min_days")?,
            min_hours: r.training_min_hours.context("training_min_hours")?,
        });
    }
    if r.after_probation_end {
        kinds.push(RuleKind::AfterProbationEnd);
    }
    if r.extension_min_months.is_some() || r.extension_max_months.is_some() {
        let min = r.extension_min_months.context("extension_min_months")?;
        let max = r.extension_max_months.context("extension_max_months")?;
        ensure!(min <= max, "extension_min_months > extension_max_months");
        kinds.push(RuleKind::ExtensionMonths { min, max });
    }
    match kinds.len() {
        1 => {
            let k = kinds.pop().expect("one");
            let needs_after = matches!(k, RuleKind::MinAfter { .. } | RuleKind::WithinAfter { .. });
            ensure!(
                needs_after || r.after.is_none(),
                "`after` is only for min_*/within_* rules"
            );
            Ok(k)
        }
        0 => bail!("no rule given"),
        _ => bail!("give exactly one rule per [[step.rules]] entry"),
    }
}

impl Definitions {
    pub fn parse(src: &str) -> anyhow::Result<Definitions> {
        let file: File = toml::from_str(src)?;
        ensure!(
            (0..=60).contains(&file.reminder_days_before),
            "reminder_days_before: 0..=60"
        );
        let dates = |list: &[String], what: &str| -> anyhow::Result<BTreeSet<Date>> {
            list.iter()
                .map(|s| {
                    parse_date(s)
                        .with_context(|| format!("calendar.{what}: `{s}` is not YYYY-MM-DD"))
                })
                .collect()
        };
        let calendar = Calendar {
            holidays: dates(&file.calendar.holidays, "holidays")?,
            workdays: dates(&file.calendar.workdays, "workdays")?,
        };
        let mut steps = Vec::with_capacity(file.steps.len());
        let mut rule_names = HashSet::new();
        for s in file.steps {
            let what = format!("step `{}`", s.key);
            ensure!(
                !s.key.is_empty()
                    && s.key.len() <= 64
                    && s.key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{what}: keys are lowercase ASCII letters, digits and _"
            );
            ensure!(!s.name.trim().is_empty(), "{what}: name is empty");
            ensure!(
                s.min_contacts <= s.max_contacts || s.max_contacts == 0,
                "{what}: min_contacts > max_contacts"
            );
            let mut rules = Vec::new();
            for r in &s.rules {
                let kind = rule_kind(r).with_context(|| format!("{what}, rule `{}`", r.name))?;
                ensure!(
                    rule_names.insert(r.name.clone()),
                    "{what}: rule name `{}` used twice",
                    r.name
                );
                ensure!(
                    !r.unless_reason || matches!(kind, RuleKind::WithinAfter { .. }),
                    "{what}, rule `{}`: unless_reason is for within_* rules",
                    r.name
                );
                rules.push(TimeRule {
                    name: r.name.clone(),
                    label: r.label.clone().unwrap_or_else(|| r.name.clone()),
                    kind,
                    unless_reason: r.unless_reason,
                });
            }
            steps.push(StepDef {
                key: s.key,
                stage: s.stage,
                order: s.order,
                name: s.name,
                role: s.role,
                approval: s.approval,
                documents: s.documents,
                opinion_of: s.opinion_of,
                requires: s.requires,
                repeatable: s.repeatable,
                optional: s.optional,
                enters_stage: s.enters_stage,
                future_allowed: s.future_allowed,
                min_contacts: s.min_contacts,
                max_contacts: s.max_contacts,
                rules,
            });
        }
        ensure!(!steps.is_empty(), "no steps");
        steps.sort_by_key(|s| s.order);
        let order_of = |key: &str| steps.iter().find(|s| s.key == key).map(|s| s.order);
        let mut keys = HashSet::new();
        let mut orders = HashSet::new();
        for s in &steps {
            ensure!(keys.insert(s.key.clone()), "step `{}` defined twice", s.key);
            ensure!(orders.insert(s.order), "order {} used twice", s.order);
            for r in &s.requires {
                let o = order_of(r)
                    .with_context(|| format!("step `{}` requires unknown `{r}`", s.key))?;
                ensure!(
                    o < s.order,
                    "step `{}` requires `{r}`, which comes later",
                    s.key
                );
            }
            for r in &s.rules {
                match &r.kind {
                    RuleKind::MinAfter { after, .. } | RuleKind::WithinAfter { after, .. } => {
                        order_of(after).with_context(|| {
                            format!("rule `{}`: unknown step `{after}`", r.name)
                        })?;
                    }
                    RuleKind::MinCount { step, .. } => {
                        order_of(step)
                            .with_context(|| format!("rule `{}`: unknown step `{step}`", r.name))?;
                    }
                    _ => {}
                }
            }
        }
        let p = file.probation;
        ensure!(
            order_of(&p.from).is_some(),
            "probation.from: unknown step `{}`",
            p.from
        );
        ensure!(p.months > 0, "probation.months must be positive");
        if let Some(e) = &p.extension_step {
            ensure!(
                order_of(e).is_some(),
                "probation.extension_step: unknown step `{e}`"
            );
        }
        for m in &p.met_by {
            ensure!(
                order_of(m).is_some(),
                "probation.met_by: unknown step `{m}`"
            );
        }
        ensure!(
            rule_names.insert(p.due_rule.clone()),
            "probation.due_rule `{}` used twice",
            p.due_rule
        );
        let mut periodic = Vec::new();
        for f in file.periodic {
            ensure!(f.every_months > 0, "periodic `{}`: every_months", f.rule);
            ensure!(
                rule_names.insert(f.rule.clone()),
                "rule name `{}` used twice",
                f.rule
            );
            ensure!(
                order_of(&f.from).is_some(),
                "periodic `{}`: unknown step `{}`",
                f.rule,
                f.from
            );
            let counts = if f.counts == "reports" {
                Counts::Reports
            } else {
                ensure!(
                    order_of(&f.counts).is_some(),
                    "periodic `{}`: counts is `reports` or a step",
                    f.rule
                );
                Counts::Step(f.counts)
            };
            periodic.push(Periodic {
                rule: f.rule,
                label: f.label,
                counts,
                from: f.from,
                during: f.during,
                every_months: f.every_months,
                until_probation_end: f.until_probation_end,
            });
        }
        Ok(Definitions {
            steps,
            periodic,
            probation: Probation {
                from: p.from,
                months: p.months,
                extension_step: p.extension_step,
                due_rule: p.due_rule,
                due_label: p.due_label,
                met_by: p.met_by,
            },
            reminder_days_before: file.reminder_days_before,
            calendar,
        })
    }

    pub fn step(&self, key: &str) -> Option<&StepDef> {
        self.steps.iter().find(|s| s.key == key)
    }

    fn name_of<'a>(&'a self, key: &'a str) -> &'a str {
        self.step(key).map(|s| s.name.as_str()).unwrap_or(key)
    }
}

// ---------------------------------------------------------------- a record's facts

/// Step-specific facts given with an entry (stored with it as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Details {
    /// 培养联系人 / 入党介绍人 names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    /// Training: class hours attended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_hours: Option<u32>,
    /// Training: last day (YYYY-MM-DD).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_date")]
    #[schemars(with = "Option<String>")]
    pub end_date: Option<Date>,
    /// Probation extension: months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_months: Option<u32>,
    /// Why a `within` limit was passed (特殊情况).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_reason: Option<String>,
}

mod opt_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    pub fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_date(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => super::parse_date(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("a date is YYYY-MM-DD")),
        }
    }
}

/// One effective entry of a record: recorded, or approved (then dated by the decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub step: String,
    pub date: Date,
    pub details: Details,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Person {
    pub birth_date: Option<Date>,
}

/// What a refusal names: the rule, a sentence, and the date limit it computed (if any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleViolation {
    pub rule: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_date")]
    pub limit: Option<Date>,
}

impl RuleViolation {
    fn new(rule: &str, message: String, limit: Option<Date>) -> RuleViolation {
        RuleViolation {
            rule: rule.to_owned(),
            message,
            limit,
        }
    }
}

/// The entries of `step`, by date.
fn entries<'a>(done: &'a [Done], step: &'a str) -> impl Iterator<Item = &'a Done> + 'a {
    done.iter().filter(move |d| d.step == step)
}

/// The first effective date of `step`.
pub fn first_date(done: &[Done], step: &str) -> Option<Date> {
    entries(done, step).map(|d| d.date).min()
}

fn last_date(done: &[Done], step: &str) -> Option<Date> {
    entries(done, step).map(|d| d.date).max()
}

/// The last day of probation is the day before this: probation runs from the branch meeting for
/// `months` months plus every approved extension; confirmation may be discussed from this date.
pub fn probation_end(defs: &Definitions, done: &[Done]) -> Option<Date> {
    let from = last_date(done, &defs.probation.from)?;
    let extra: i64 = defs
        .probation
        .extension_step
        .as_deref()
        .map(|e| {
            entries(done, e)
                .filter_map(|d| d.details.extension_months)
                .map(i64::from)
                .sum()
        })
        .unwrap_or(0);
    Some(add_months(from, i64::from(defs.probation.months) + extra))
}

/// The stage the effective entries put a record in.
pub fn stage_of(defs: &Definitions, done: &[Done]) -> Stage {
    let mut stage = Stage::Applicant;
    for d in done {
        match defs.step(&d.step).and_then(|s| s.enters_stage) {
            Some(Stage::Cancelled) => return Stage::Cancelled,
            Some(s) if s > stage => stage = s,
            _ => {}
        }
    }
    stage
}

/// When each stage was entered: the first effective date of a step entering it.
pub fn stage_entries(defs: &Definitions, done: &[Done]) -> Vec<(Stage, Date)> {
    let mut out: Vec<(Stage, Date)> = Vec::new();
    for d in done {
        if let Some(s) = defs.step(&d.step).and_then(|s| s.enters_stage) {
            match out.iter_mut().find(|(st, _)| *st == s) {
                Some((_, date)) if d.date < *date => *date = d.date,
                Some(_) => {}
                None => out.push((s, d.date)),
            }
        }
    }
    out.sort();
    out
}

/// Days spent in each left stage: (stage, date it was left, days).
pub fn stage_durations(entries: &[(Stage, Date)]) -> Vec<(Stage, Date, i64)> {
    entries
        .windows(2)
        .map(|w| (w[0].0, w[1].1, days_between(w[0].1, w[1].1)))
        .collect()
}

// ---------------------------------------------------------------- validation

/// A step date someone wants to record (or an approval's decision date).
#[derive(Debug, Clone)]
pub struct Proposal<'a> {
    pub step: &'a StepDef,
    pub date: Date,
    pub details: &'a Details,
    /// Kinds of the documents attached; `None` skips the document check (re-validation).
    pub document_kinds: Option<&'a [String]>,
    pub today: Date,
}

/// Is `p` allowed after the effective entries `done` (which must not contain the entry being
/// decided or corrected)? The first broken rule is returned, by name.
pub fn validate(
    defs: &Definitions,
    person: &Person,
    done: &[Done],
    p: &Proposal<'_>,
) -> Result<(), RuleViolation> {
    let step = p.step;
    let date = p.date;
    let shown = |d: Date| format_date(d);
    if date > p.today && !step.future_allowed {
        return Err(RuleViolation::new(
            "date_not_in_future",
            format!(
                "{}: the date {} is after today ({})",
                step.name,
                shown(date),
                shown(p.today)
            ),
            Some(p.today),
        ));
    }
    for r in &step.requires {
        let Some(first) = first_date(done, r) else {
            return Err(RuleViolation::new(
                "requires_previous_step",
                format!(
                    "{}: 「{}」 ({r}) must be done first",
                    step.name,
                    defs.name_of(r)
                ),
                None,
            ));
        };
        if date < first {
            return Err(RuleViolation::new(
                "not_before_previous_step",
                format!(
                    "{}: may not be dated before 「{}」 ({})",
                    step.name,
                    defs.name_of(r),
                    shown(first)
                ),
                Some(first),
            ));
        }
    }
    if let Some(kinds) = p.document_kinds {
        let missing: Vec<&str> = step
            .documents
            .iter()
            .filter(|k| !kinds.contains(k))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(RuleViolation::new(
                "documents_required",
                format!("{}: attach {}", step.name, missing.join("、")),
                None,
            ));
        }
    }
    if step.max_contacts > 0 {
        let n = p
            .details
            .contacts
            .iter()
            .filter(|c| !c.trim().is_empty())
            .count() as u32;
        if n < step.min_contacts || n > step.max_contacts {
            let want = if step.min_contacts == step.max_contacts {
                step.min_contacts.to_string()
            } else {
                format!("{}–{}", step.min_contacts, step.max_contacts)
            };
            return Err(RuleViolation::new(
                "contacts_required",
                format!("{}: name {want} people in `contacts`", step.name),
                None,
            ));
        }
    }
    for rule in &step.rules {
        check_rule(defs, person, done, p, rule)?;
    }
    Ok(())
}

fn check_rule(
    defs: &Definitions,
    person: &Person,
    done: &[Done],
    p: &Proposal<'_>,
    rule: &TimeRule,
) -> Result<(), RuleViolation> {
    let cal = &defs.calendar;
    let date = p.date;
    let fail = |message: String, limit: Option<Date>| {
        Err(RuleViolation::new(
            &rule.name,
            format!("{}: {message} ({})", p.step.name, rule.label),
            limit,
        ))
    };
    match &rule.kind {
        RuleKind::MinAfter { after, offset } => {
            let Some(from) = last_date(done, after) else {
                return fail(
                    format!("「{}」 must be done first", defs.name_of(after)),
                    None,
                );
            };
            let earliest = offset.earliest(cal, from);
            if date < earliest {
                return fail(
                    format!("not before {}", format_date(earliest)),
                    Some(earliest),
                );
            }
        }
        RuleKind::WithinAfter { after, offset } => {
            let Some(from) = last_date(done, after) else {
                return fail(
                    format!("「{}」 must be done first", defs.name_of(after)),
                    None,
                );
            };
            let latest = offset.latest(cal, from);
            let excused = rule.unless_reason
                && p.details
                    .delay_reason
                    .as_deref()
                    .is_some_and(|r| !r.trim().is_empty());
            if date > latest && !excused {
                let hint = if rule.unless_reason {
                    "; give a `delay_reason` for a later date"
                } else {
                    ""
                };
                return fail(
                    format!("not after {}{hint}", format_date(latest)),
                    Some(latest),
                );
            }
        }
        RuleKind::MinAge { years } => {
            let Some(birth) = person.birth_date else {
                return fail(
                    "the birth date is unknown (ID number or birth_date)".into(),
                    None,
                );
            };
            let of_age = add_months(birth, i64::from(*years) * 12);
            if date < of_age {
                return fail(
                    format!("{years} years old on {}", format_date(of_age)),
                    Some(of_age),
                );
            }
        }
        RuleKind::MinCount { step, min } => {
            let n = entries(done, step).filter(|d| d.date <= date).count() as u32;
            if n < *min {
                return fail(
                    format!("{n} of {min} 「{}」 recorded", defs.name_of(step)),
                    None,
                );
            }
        }
        RuleKind::Training {
            min_days,
            min_hours,
        } => {
            let hours_ok = p.details.class_hours.is_some_and(|h| h >= *min_hours);
            let days = match p.details.end_date {
                Some(end) if end < date => {
                    return fail("end_date is before the start date".into(), Some(date))
                }
                Some(end) if end > p.today => {
                    return Err(RuleViolation::new(
                        "date_not_in_future",
                        format!("{}: end_date is after today", p.step.name),
                        Some(p.today),
                    ))
                }
                Some(end) => days_between(date, end) + 1,
                None => 0,
            };
            if !hours_ok && days < i64::from(*min_days) {
                return fail(
                    format!("give end_date (≥ {min_days} days) or class_hours (≥ {min_hours})"),
                    None,
                );
            }
        }
        RuleKind::AfterProbationEnd => {
            let Some(end) = probation_end(defs, done) else {
                return fail(
                    format!(
                        "「{}」 must be done first",
                        defs.name_of(&defs.probation.from)
                    ),
                    None,
                );
            };
            if date < end {
                return fail(format!("not before {}", format_date(end)), Some(end));
            }
        }
        RuleKind::ExtensionMonths { min, max } => match p.details.extension_months {
            Some(m) if (*min..=*max).contains(&m) => {}
            _ => return fail(format!("extension_months must be {min}–{max}"), None),
        },
    }
    Ok(())
}

// ---------------------------------------------------------------- deadlines

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeadlineStatus {
    Met,
    Open,
    Overdue,
}

/// Something due by a date: a step (within a rule's limit), a confirmation discussion at the end
/// of probation, or one period's item of a periodic duty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    pub rule: String,
    pub label: String,
    /// The step to do (None for thought reports).
    pub step: Option<String>,
    /// Periodic duties: the period's first day.
    pub period_start: Option<Date>,
    pub due: Date,
    pub met_on: Option<Date>,
}

impl Deadline {
    pub fn status(&self, today: Date) -> DeadlineStatus {
        match self.met_on {
            Some(_) => DeadlineStatus::Met,
            None if today > self.due => DeadlineStatus::Overdue,
            None => DeadlineStatus::Open,
        }
    }
}

/// Every deadline of a record: met ones (for the timeline) and those still to meet. Closed records
/// (full, cancelled) have only met ones.
pub fn deadlines(
    defs: &Definitions,
    done: &[Done],
    reports: &[Date],
    stage: Stage,
    today: Date,
) -> Vec<Deadline> {
    let cal = &defs.calendar;
    let mut out = Vec::new();
    for step in &defs.steps {
        for rule in &step.rules {
            let RuleKind::WithinAfter { after, offset } = &rule.kind else {
                continue;
            };
            let Some(from) = last_date(done, after) else {
                continue;
            };
            out.push(Deadline {
                rule: rule.name.clone(),
                label: rule.label.clone(),
                step: Some(step.key.clone()),
                period_start: None,
                due: offset.latest(cal, from),
                met_on: first_date(done, &step.key),
            });
        }
    }
    if stage >= Stage::Probationary && stage != Stage::Cancelled {
        if let Some(end) = probation_end(defs, done) {
            let met_on = defs
                .probation
                .met_by
                .iter()
                .filter_map(|s| first_date(done, s))
                .min();
            out.push(Deadline {
                rule: defs.probation.due_rule.clone(),
                label: defs.probation.due_label.clone(),
                step: defs.probation.met_by.first().cloned(),
                period_start: None,
                due: end,
                met_on,
            });
        }
    }
    for p in defs.periodic.iter().filter(|p| p.during == stage) {
        let Some(from) = last_date(done, &p.from) else {
            continue;
        };
        let stop = if p.until_probation_end {
            probation_end(defs, done)
        } else {
            None
        };
        let mut counted: Vec<Date> = match &p.counts {
            Counts::Reports => reports.to_vec(),
            Counts::Step(s) => entries(done, s).map(|d| d.date).collect(),
        };
        counted.sort();
        let mut used = vec![false; counted.len()];
        let every = i64::from(p.every_months);
        for k in 0..1000 {
            let start = add_months(from, k * every);
            let end = add_months(from, (k + 1) * every);
            if start > today || stop.is_some_and(|s| start >= s) {
                break;
            }
            // Period k runs from `start` to `end`, both days included (like `within_months`);
            // an item on the boundary day counts for one period only, the earlier one unmet.
            let end = stop.map_or(end, |s| end.min(s));
            let met_on = counted
                .iter()
                .enumerate()
                .find(|(i, d)| !used[*i] && **d >= start && **d <= end)
                .map(|(i, d)| {
                    used[i] = true;
                    *d
                });
            out.push(Deadline {
                rule: p.rule.clone(),
                label: format!("{}（第{}期）", p.label, k + 1),
                step: match &p.counts {
                    Counts::Reports => None,
                    Counts::Step(s) => Some(s.clone()),
                },
                period_start: Some(start),
                due: end,
                met_on,
            });
        }
    }
    if !stage.is_open() {
        out.retain(|d| d.met_on.is_some());
    }
    out.sort_by(|a, b| a.due.cmp(&b.due).then_with(|| a.rule.cmp(&b.rule)));
    out
}

/// The next step on the main path, when it may happen, and by when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextStep {
    pub step: String,
    pub name: String,
    pub earliest: Option<Date>,
    pub due: Option<Date>,
    /// Submitted, waiting for the upper committee.
    pub awaiting_approval: bool,
}

/// The first main-path step not done yet (`submitted`: steps waiting for approval).
pub fn next_step(
    defs: &Definitions,
    done: &[Done],
    submitted: &[String],
    stage: Stage,
) -> Option<NextStep> {
    if !stage.is_open() {
        return None;
    }
    let cal = &defs.calendar;
    let step = defs
        .steps
        .iter()
        .find(|s| !s.optional && first_date(done, &s.key).is_none())?;
    let mut earliest: Option<Date> = step
        .requires
        .iter()
        .filter_map(|r| first_date(done, r))
        .max();
    let mut due: Option<Date> = None;
    for rule in &step.rules {
        let bound = match &rule.kind {
            RuleKind::MinAfter { after, offset } => {
                last_date(done, after).map(|f| (true, offset.earliest(cal, f)))
            }
            RuleKind::AfterProbationEnd => probation_end(defs, done).map(|e| (true, e)),
            RuleKind::WithinAfter { after, offset } => {
                last_date(done, after).map(|f| (false, offset.latest(cal, f)))
            }
            _ => None,
        };
        match bound {
            Some((true, d)) => earliest = Some(earliest.map_or(d, |e| e.max(d))),
            Some((false, d)) => due = Some(due.map_or(d, |e| e.min(d))),
            None => {}
        }
    }
    Some(NextStep {
        step: step.key.clone(),
        name: step.name.clone(),
        earliest,
        due,
        awaiting_approval: submitted.contains(&step.key),
    })
}

// ---------------------------------------------------------------- reminders

/// A reminder to send: `kind` is `<rule>:due_soon` or `<rule>:overdue`, keyed with `due`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueReminder {
    pub kind: String,
    pub due: Date,
    pub label: String,
    pub overdue: bool,
}

/// Reminders `today` calls for: `reminder_days_before` days before an open deadline, and once it
/// has passed unmet. The caller sends each (kind, due) once.
pub fn reminders_due(defs: &Definitions, deadlines: &[Deadline], today: Date) -> Vec<DueReminder> {
    let mut out = Vec::new();
    for d in deadlines.iter().filter(|d| d.met_on.is_none()) {
        let overdue = today > d.due;
        let soon = !overdue && today >= add_days(d.due, -defs.reminder_days_before);
        if overdue || soon {
            out.push(DueReminder {
                kind: format!(
                    "{}:{}",
                    d.rule,
                    if overdue { "overdue" } else { "due_soon" }
                ),
                due: d.due,
                label: d.label.clone(),
                overdue,
            });
        }
    }
    out
}

/// The reminder's text for the applicant, or for the secretary (who needs the person's name).
pub fn reminder_text(r: &DueReminder, person_name: Option<&str>) -> String {
    let who = person_name.map(|n| format!("{n}：")).unwrap_or_default();
    if r.overdue {
        format!(
            "【发展党员提醒】{who}{}已逾期（应于 {} 前完成），请尽快办理。",
            r.label,
            format_date(r.due)
        )
    } else {
        format!(
            "【发展党员提醒】{who}{}将于 {} 到期，请按时完成。",
            r.label,
            format_date(r.due)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILTIN: &str = include_str!("../../content/development.toml");

    fn d(s: &str) -> Date {
        parse_date(s).unwrap_or_else(|| panic!("bad test date {s}"))
    }

    fn defs() -> Definitions {
        Definitions::parse(BUILTIN).expect("built-in development.toml")
    }

    fn done(list: &[(&str, &str)]) -> Vec<Done> {
        list.iter()
            .map(|(s, date)| Done {
                step: (*s).into(),
                date: d(date),
                details: Details::default(),
            })
            .collect()
    }

    /// Validate `step` on `date` with documents and contacts supplied, `today` far ahead.
    fn check(
        defs: &Definitions,
        person: &Person,
        done: &[Done],
        step: &str,
        date: &str,
        details: &Details,
    ) -> Result<(), String> {
        let def = defs.step(step).unwrap();
        validate(
            defs,
            person,
            done,
            &Proposal {
                step: def,
                date: d(date),
                details,
                document_kinds: Some(&def.documents),
                today: d("2030-01-01"),
            },
        )
        .map_err(|v| v.rule)
    }

    fn adult() -> Person {
        Person {
            birth_date: Some(d("2000-05-01")),
        }
    }

    #[test]
    fn builtin_definitions_parse_with_about_25_steps_in_order() {
        let defs = defs();
        assert!(
            (25..=30).contains(&defs.steps.len()),
            "{}",
            defs.steps.len()
        );
        assert!(defs.steps.windows(2).all(|w| w[0].order < w[1].order));
        let stages: Vec<Stage> = defs.steps.iter().filter_map(|s| s.enters_stage).collect();
        assert_eq!(
            stages,
            vec![
                Stage::Applicant,
                Stage::Activist,
                Stage::Target,
                Stage::Probationary,
                Stage::Full,
                Stage::Cancelled
            ]
        );
        assert_eq!(defs.step("committee_talk").unwrap().role, Recorder::Admin);
        assert!(defs.step("committee_approval").unwrap().approval);
        assert_eq!(defs.reminder_days_before, 7);
    }

    #[test]
    fn broken_definitions_are_refused_with_a_reason() {
        let cases = [
            (
                BUILTIN.replace("requires = [\"application\"]", "requires = [\"nope\"]"),
                "unknown",
            ),
            (BUILTIN.replace("order = 20\n", "order = 10\n"), "order 10"),
            (
                BUILTIN.replace("within_months = 1\n", "within_months = 1\nmin_days = 2\n"),
                "exactly one",
            ),
            (
                BUILTIN.replace(
                    "name = \"talk_within_one_month\"",
                    "name = \"applicant_min_age_18\"",
                ),
                "used twice",
            ),
            (
                BUILTIN.replace("holidays = []", "holidays = [\"2025-13-01\"]"),
                "calendar",
            ),
            (
                BUILTIN.replace(
                    "requires = [\"application\"]",
                    "requires = [\"application_talk\"]",
                ),
                "comes later",
            ),
            (
                BUILTIN.replace("every_months = 3", "every_months = 0"),
                "every_months",
            ),
        ];
        for (src, want) in cases {
            let err = format!("{:#}", Definitions::parse(&src).unwrap_err());
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn calendar_months_clamp_to_the_end_of_shorter_months() {
        for (from, months, want) in [
            ("2022-03-15", 12, "2023-03-15"),
            ("2024-02-29", 12, "2025-02-28"),
            ("2024-02-29", 48, "2028-02-29"),
            ("2023-01-31", 1, "2023-02-28"),
            ("2024-01-31", 1, "2024-02-29"),
            ("2023-11-30", 3, "2024-02-29"),
            ("2023-06-20", 3, "2023-09-20"),
            ("2023-12-15", 1, "2024-01-15"),
            ("2024-03-31", -1, "2024-02-29"),
        ] {
            assert_eq!(
                format_date(add_months(d(from), months)),
                want,
                "{from} + {months}"
            );
        }
    }

    #[test]
    fn working_days_skip_weekends_and_holidays_and_count_make_up_days() {
        let plain = Calendar::default();
        let five = Offset::WorkingDays(5);
        // Monday 2025-03-03: Mon–Fri are the five days; the next step may come on Saturday.
        assert_eq!(five.earliest(&plain, d("2025-03-03")), d("2025-03-08"));
        // Wednesday: Wed, Thu, Fri, Mon, Tue → from Wednesday the week after (a plain 5 days
        // would wrongly allow Monday).
        assert_eq!(five.earliest(&plain, d("2025-03-05")), d("2025-03-12"));
        // A notice put up on Saturday starts counting on Monday.
        assert_eq!(five.earliest(&plain, d("2025-03-08")), d("2025-03-15"));
        assert_eq!(five.latest(&plain, d("2025-03-05")), d("2025-03-11"));
        let cal = Calendar {
            holidays: [
                d("2025-10-01"),
                d("2025-10-02"),
                d("2025-10-03"),
                d("2025-10-06"),
                d("2025-10-07"),
                d("2025-10-08"),
            ]
            .into_iter()
            .collect(),
            workdays: [d("2025-09-28"), d("2025-10-11")].into_iter().collect(),
        };
        // Sunday 28 Sep is a working day: Sun 28, Mon 29, Tue 30, Thu 9, Fri 10.
        assert_eq!(five.earliest(&cal, d("2025-09-28")), d("2025-10-11"));
        // Thu 9, Fri 10, Sat 11 (调休), Mon 13, Tue 14.
        assert_eq!(five.earliest(&cal, d("2025-10-09")), d("2025-10-15"));
        assert!(!cal.is_working_day(d("2025-10-01")) && cal.is_working_day(d("2025-10-11")));
    }

    #[test]
    fn applicant_must_be_18_on_the_application_date() {
        let defs = defs();
        let none = Details::default();
        let p = adult(); // born 2000-05-01
        assert_eq!(
            check(&defs, &p, &[], "application", "2018-05-01", &none),
            Ok(())
        );
        assert_eq!(
            check(&defs, &p, &[], "application", "2018-04-30", &none),
            Err("applicant_min_age_18".into())
        );
        let leap = Person {
            birth_date: Some(d("2004-02-29")),
        };
        assert_eq!(
            check(&defs, &leap, &[], "application", "2022-02-28", &none),
            Ok(())
        );
        assert_eq!(
            check(&defs, &leap, &[], "application", "2022-02-27", &none),
            Err("applicant_min_age_18".into())
        );
        assert_eq!(
            check(
                &defs,
                &Person::default(),
                &[],
                "application",
                "2022-02-27",
                &none
            ),
            Err("applicant_min_age_18".into()),
            "an unknown birth date can't prove the age"
        );
    }

    #[test]
    fn talk_is_within_one_month_of_the_application() {
        let defs = defs();
        let none = Details::default();
        let app = done(&[("application", "2021-09-10")]);
        assert_eq!(
            check(
                &defs,
                &adult(),
                &app,
                "application_talk",
                "2021-09-10",
                &none
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &app,
                "application_talk",
                "2021-10-10",
                &none
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &app,
                "application_talk",
                "2021-10-11",
                &none
            ),
            Err("talk_within_one_month".into())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &app,
                "application_talk",
                "2021-09-09",
                &none
            ),
            Err("not_before_previous_step".into())
        );
        let jan = done(&[("application", "2023-01-31")]);
        assert_eq!(
            check(
                &defs,
                &adult(),
                &jan,
                "application_talk",
                "2023-02-28",
                &none
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &jan,
                "application_talk",
                "2023-03-01",
                &none
            ),
            Err("talk_within_one_month".into())
        );
    }

    fn activist_history() -> Vec<Done> {
        done(&[
            ("application", "2021-09-10"),
            ("application_talk", "2021-10-08"),
            ("activist_recommendation", "2022-03-01"),
            ("activist_determined", "2022-03-15"),
            ("contacts_assigned", "2022-03-20"),
            ("activist_assessment", "2022-09-15"),
            ("activist_assessment", "2023-03-10"),
            ("target_opinions", "2023-03-12"),
        ])
    }

    #[test]
    fn development_target_comes_at_least_one_year_after_activist() {
        let defs = defs();
        let none = Details::default();
        let h = activist_history();
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "development_target_determined",
                "2023-03-15",
                &none
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "development_target_determined",
                "2023-03-14",
                &none
            ),
            Err("activist_min_one_year".into()),
            "one day short of a year"
        );
        // Two half-yearly assessments are needed too.
        let mut one = h.clone();
        one.retain(|x| !(x.step == "activist_assessment" && x.date == d("2023-03-10")));
        assert_eq!(
            check(
                &defs,
                &adult(),
                &one,
                "development_target_determined",
                "2023-06-01",
                &none
            ),
            Err("activist_assessed_twice".into())
        );
        // Becoming activist on 29 February: the year is over on 28 February.
        let mut leap = h.clone();
        for x in leap.iter_mut().filter(|x| x.step == "activist_determined") {
            x.date = d("2024-02-29");
        }
        for x in leap.iter_mut().filter(|x| x.step == "target_opinions") {
            x.date = d("2025-02-01");
        }
        assert_eq!(
            check(
                &defs,
                &adult(),
                &leap,
                "development_target_determined",
                "2025-02-28",
                &none
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &leap,
                "development_target_determined",
                "2025-02-27",
                &none
            ),
            Err("activist_min_one_year".into())
        );
    }

    #[test]
    fn contacts_and_introducers_are_counted() {
        let defs = defs();
        let h = done(&[("activist_determined", "2022-03-15")]);
        let with = |names: &[&str]| Details {
            contacts: names.iter().map(|s| (*s).into()).collect(),
            ..Default::default()
        };
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "contacts_assigned",
                "2022-03-20",
                &with(&["王"])
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "contacts_assigned",
                "2022-03-20",
                &with(&["王", "李"])
            ),
            Ok(())
        );
        for bad in [&[][..], &["王", "李", "赵"][..], &["  "][..]] {
            assert_eq!(
                check(
                    &defs,
                    &adult(),
                    &h,
                    "contacts_assigned",
                    "2022-03-20",
                    &with(bad)
                ),
                Err("contacts_required".into()),
                "{bad:?}"
            );
        }
        let t = done(&[("development_target_determined", "2023-03-15")]);
        assert_eq!(
            check(
                &defs,
                &adult(),
                &t,
                "introducers_assigned",
                "2023-03-20",
                &with(&["王"])
            ),
            Err("contacts_required".into())
        );
    }

    #[test]
    fn training_is_three_days_or_24_class_hours() {
        let defs = defs();
        let t = done(&[("development_target_determined", "2023-03-15")]);
        let days = |end: &str| Details {
            end_date: Some(d(end)),
            ..Default::default()
        };
        let hours = |h: u32| Details {
            class_hours: Some(h),
            ..Default::default()
        };
        let rule = Err("training_min_3_days_or_24_hours".to_string());
        assert_eq!(
            check(
                &defs,
                &adult(),
                &t,
                "short_training",
                "2023-04-17",
                &days("2023-04-19")
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &t,
                "short_training",
                "2023-04-17",
                &days("2023-04-18")
            ),
            rule
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &t,
                "short_training",
                "2023-04-17",
                &hours(24)
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &t,
                "short_training",
                "2023-04-17",
                &hours(23)
            ),
            rule
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &t,
                "short_training",
                "2023-04-17",
                &Details::default()
            ),
            rule
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &t,
                "short_training",
                "2023-04-17",
                &days("2023-04-16")
            ),
            rule
        );
    }

    #[test]
    fn prereview_waits_for_five_working_days_of_public_notice() {
        let defs = defs();
        let none = Details::default();
        // Wednesday 2023-05-17: Wed, Thu, Fri, Mon, Tue.
        let h = done(&[("public_notice", "2023-05-17")]);
        assert_eq!(
            check(&defs, &adult(), &h, "upper_prereview", "2023-05-24", &none),
            Ok(())
        );
        assert_eq!(
            check(&defs, &adult(), &h, "upper_prereview", "2023-05-23", &none),
            Err("public_notice_min_5_working_days".into())
        );
        // Monday 2023-05-15: done on Friday night, Saturday is fine.
        let h = done(&[("public_notice", "2023-05-15")]);
        assert_eq!(
            check(&defs, &adult(), &h, "upper_prereview", "2023-05-20", &none),
            Ok(())
        );
        assert_eq!(
            check(&defs, &adult(), &h, "upper_prereview", "2023-05-19", &none),
            Err("public_notice_min_5_working_days".into())
        );
    }

    #[test]
    fn committee_approval_within_three_months_or_six_with_a_reason() {
        let defs = defs();
        let h = done(&[
            ("branch_meeting_admission", "2023-06-20"),
            ("committee_talk", "2023-07-05"),
        ]);
        let none = Details::default();
        let reason = Details {
            delay_reason: Some("党委换届".into()),
            ..Default::default()
        };
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "committee_approval",
                "2023-09-20",
                &none
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "committee_approval",
                "2023-09-21",
                &none
            ),
            Err("approval_within_three_months".into()),
            "one day over three months"
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "committee_approval",
                "2023-09-21",
                &reason
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "committee_approval",
                "2023-12-20",
                &reason
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "committee_approval",
                "2023-12-21",
                &reason
            ),
            Err("approval_max_six_months".into())
        );
        let blank = Details {
            delay_reason: Some("  ".into()),
            ..Default::default()
        };
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "committee_approval",
                "2023-09-21",
                &blank
            ),
            Err("approval_within_three_months".into())
        );
    }

    fn probation_history() -> Vec<Done> {
        done(&[
            ("branch_meeting_admission", "2023-06-20"),
            ("committee_approval", "2023-08-15"),
            ("oath", "2023-08-20"),
            ("confirmation_application", "2024-06-10"),
            ("confirmation_opinions", "2024-06-11"),
            ("confirmation_committee_review", "2024-06-12"),
            ("confirmation_notice", "2024-06-12"),
        ])
    }

    #[test]
    fn confirmation_comes_after_one_year_of_probation_and_extensions_move_it() {
        let defs = defs();
        let none = Details::default();
        let h = probation_history();
        assert_eq!(probation_end(&defs, &h), Some(d("2024-06-20")));
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "confirmation_branch_meeting",
                "2024-06-20",
                &none
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "confirmation_branch_meeting",
                "2024-06-19",
                &none
            ),
            Err("probation_min_one_year".into())
        );
        let ext = |m: u32| Details {
            extension_months: Some(m),
            ..Default::default()
        };
        let rule = Err("extension_six_to_twelve_months".to_string());
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "probation_extension",
                "2024-06-20",
                &ext(6)
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "probation_extension",
                "2024-06-20",
                &ext(12)
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "probation_extension",
                "2024-06-20",
                &ext(5)
            ),
            rule
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "probation_extension",
                "2024-06-20",
                &ext(13)
            ),
            rule
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "probation_extension",
                "2024-06-20",
                &none
            ),
            rule
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "probation_extension",
                "2024-06-19",
                &ext(6)
            ),
            Err("extension_at_probation_end".into())
        );
        let mut extended = h.clone();
        extended.push(Done {
            step: "probation_extension".into(),
            date: d("2024-06-25"),
            details: ext(6),
        });
        assert_eq!(probation_end(&defs, &extended), Some(d("2024-12-20")));
        assert_eq!(
            check(
                &defs,
                &adult(),
                &extended,
                "confirmation_branch_meeting",
                "2024-12-19",
                &none
            ),
            Err("probation_min_one_year".into())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &extended,
                "confirmation_branch_meeting",
                "2024-12-20",
                &none
            ),
            Ok(())
        );
    }

    #[test]
    fn confirmation_approval_within_three_months_of_the_branch_vote() {
        let defs = defs();
        let none = Details::default();
        let mut h = probation_history();
        h.push(Done {
            step: "confirmation_branch_meeting".into(),
            date: d("2024-06-20"),
            details: none.clone(),
        });
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "confirmation_approval",
                "2024-09-20",
                &none
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &defs,
                &adult(),
                &h,
                "confirmation_approval",
                "2024-09-21",
                &none
            ),
            Err("confirmation_approval_within_three_months".into())
        );
    }

    #[test]
    fn order_future_dates_and_documents_are_checked_before_time_rules() {
        let defs = defs();
        let none = Details::default();
        assert_eq!(
            check(&defs, &adult(), &[], "oath", "2023-08-20", &none),
            Err("requires_previous_step".into())
        );
        let def = defs.step("application").unwrap();
        let today = d("2025-06-01");
        let at = |date: &str, docs: &[String]| {
            validate(
                &defs,
                &adult(),
                &[],
                &Proposal {
                    step: def,
                    date: d(date),
                    details: &none,
                    document_kinds: Some(docs),
                    today,
                },
            )
            .map_err(|v| v.rule)
        };
        let docs = vec!["入党申请书".to_string()];
        assert_eq!(at("2025-06-01", &docs), Ok(()), "today is allowed");
        assert_eq!(at("2025-06-02", &docs), Err("date_not_in_future".into()));
        assert_eq!(at("2025-06-01", &[]), Err("documents_required".into()));
        assert_eq!(
            at("2025-06-01", &["其他".to_string()]),
            Err("documents_required".into())
        );
    }

    #[test]
    fn stages_follow_the_steps_that_enter_them() {
        let defs = defs();
        assert_eq!(stage_of(&defs, &[]), Stage::Applicant);
        assert_eq!(stage_of(&defs, &activist_history()), Stage::Activist);
        let mut h = activist_history();
        h.extend(done(&[("development_target_determined", "2023-03-15")]));
        assert_eq!(stage_of(&defs, &h), Stage::Target);
        h.extend(done(&[("committee_approval", "2023-08-15")]));
        assert_eq!(stage_of(&defs, &h), Stage::Probationary);
        let mut cancelled = h.clone();
        cancelled.extend(done(&[("probation_cancellation", "2024-01-10")]));
        assert_eq!(stage_of(&defs, &cancelled), Stage::Cancelled);
        h.extend(done(&[("confirmation_approval", "2024-07-10")]));
        assert_eq!(stage_of(&defs, &h), Stage::Full);
        let entries = stage_entries(&defs, &h);
        assert_eq!(
            entries,
            vec![
                (Stage::Applicant, d("2021-09-10")),
                (Stage::Activist, d("2022-03-15")),
                (Stage::Target, d("2023-03-15")),
                (Stage::Probationary, d("2023-08-15")),
                (Stage::Full, d("2024-07-10")),
            ]
        );
        let durations = stage_durations(&entries);
        assert_eq!(durations[0], (Stage::Applicant, d("2022-03-15"), 186));
        assert_eq!(durations[1], (Stage::Activist, d("2023-03-15"), 365));
    }

    #[test]
    fn deadlines_talk_approval_quarterly_reports_and_confirmation() {
        let defs = defs();
        let h = done(&[("application", "2021-09-10")]);
        let talk = deadlines(&defs, &h, &[], Stage::Applicant, d("2021-09-20"));
        assert_eq!(talk.len(), 1);
        assert_eq!(
            (talk[0].rule.as_str(), talk[0].due),
            ("talk_within_one_month", d("2021-10-10"))
        );
        assert_eq!(talk[0].status(d("2021-10-10")), DeadlineStatus::Open);
        assert_eq!(talk[0].status(d("2021-10-11")), DeadlineStatus::Overdue);

        let mut p = done(&[
            ("application", "2021-09-10"),
            ("application_talk", "2021-10-08"),
            ("branch_meeting_admission", "2023-06-20"),
        ]);
        let target = deadlines(&defs, &p, &[], Stage::Target, d("2023-07-01"));
        let approval: Vec<(&str, Date)> = target
            .iter()
            .filter(|x| x.met_on.is_none())
            .map(|x| (x.rule.as_str(), x.due))
            .collect();
        assert_eq!(
            approval,
            vec![
                ("approval_within_three_months", d("2023-09-20")),
                ("approval_max_six_months", d("2023-12-20"))
            ]
        );
        p.extend(done(&[("committee_approval", "2023-08-15")]));
        // Quarters from the branch meeting: 06-20 … 09-20, 09-20 … 12-20, ...
        let reports = [d("2023-07-30")];
        let dl = deadlines(&defs, &p, &reports, Stage::Probationary, d("2023-10-05"));
        let quarters: Vec<(Date, Option<Date>)> = dl
            .iter()
            .filter(|x| x.rule == "probation_quarterly_report")
            .map(|x| (x.due, x.met_on))
            .collect();
        assert_eq!(
            quarters,
            vec![
                (d("2023-09-20"), Some(d("2023-07-30"))),
                (d("2023-12-20"), None)
            ]
        );
        let confirm = dl.iter().find(|x| x.rule == "confirmation_due").unwrap();
        assert_eq!((confirm.due, confirm.met_on), (d("2024-06-20"), None));
        // A report on the quarter's last day counts for it, and only for it.
        let quarterly = |reports: &[Date]| -> Vec<Option<Date>> {
            deadlines(&defs, &p, reports, Stage::Probationary, d("2023-10-05"))
                .iter()
                .filter(|x| x.rule == "probation_quarterly_report")
                .map(|x| x.met_on)
                .collect()
        };
        assert_eq!(
            quarterly(&[d("2023-09-20")]),
            vec![Some(d("2023-09-20")), None]
        );
        assert_eq!(
            quarterly(&[d("2023-09-19"), d("2023-09-20")]),
            vec![Some(d("2023-09-19")), Some(d("2023-09-20"))]
        );
        assert_eq!(
            quarterly(&[d("2023-09-21")]),
            vec![None, Some(d("2023-09-21"))]
        );
        assert_eq!(
            quarterly(&[d("2023-06-19")]),
            vec![None, None],
            "before probation"
        );
        // At the end of probation: four quarters, no fifth.
        let late = deadlines(&defs, &p, &[], Stage::Probationary, d("2024-08-01"));
        assert_eq!(
            late.iter()
                .filter(|x| x.rule == "probation_quarterly_report")
                .count(),
            4
        );
        // Closed records keep only what was met.
        let full = deadlines(&defs, &p, &[], Stage::Full, d("2024-08-01"));
        assert!(full.iter().all(|x| x.met_on.is_some()), "{full:?}");
    }

    #[test]
    fn activist_half_year_assessments_are_due_every_six_months() {
        let defs = defs();
        let h = done(&[
            ("activist_determined", "2022-03-15"),
            ("activist_assessment", "2022-09-10"),
        ]);
        let dl = deadlines(&defs, &h, &[], Stage::Activist, d("2023-01-01"));
        let half: Vec<(Date, Option<Date>)> = dl
            .iter()
            .filter(|x| x.rule == "activist_half_year_assessment")
            .map(|x| (x.due, x.met_on))
            .collect();
        assert_eq!(
            half,
            vec![
                (d("2022-09-15"), Some(d("2022-09-10"))),
                (d("2023-03-15"), None)
            ]
        );
    }

    #[test]
    fn reminders_come_seven_days_before_and_once_overdue() {
        let defs = defs();
        let h = done(&[("application", "2021-09-10")]);
        let at = |today: &str| {
            let dl = deadlines(&defs, &h, &[], Stage::Applicant, d(today));
            reminders_due(&defs, &dl, d(today))
                .into_iter()
                .map(|r| r.kind)
                .collect::<Vec<_>>()
        };
        assert!(at("2021-10-02").is_empty(), "8 days before");
        assert_eq!(at("2021-10-03"), vec!["talk_within_one_month:due_soon"]);
        assert_eq!(at("2021-10-10"), vec!["talk_within_one_month:due_soon"]);
        assert_eq!(at("2021-10-11"), vec!["talk_within_one_month:overdue"]);
        let met = done(&[
            ("application", "2021-09-10"),
            ("application_talk", "2021-10-01"),
        ]);
        let dl = deadlines(&defs, &met, &[], Stage::Applicant, d("2021-10-11"));
        assert!(reminders_due(&defs, &dl, d("2021-10-11")).is_empty());
        let r = DueReminder {
            kind: "x:overdue".into(),
            due: d("2023-09-20"),
            label: "预备党员每季度提交思想汇报（第1期）".into(),
            overdue: true,
        };
        assert!(reminder_text(&r, Some("王小明"))
            .contains("王小明：预备党员每季度提交思想汇报（第1期）已逾期"));
    }

    #[test]
    fn next_step_says_when_it_may_happen_and_by_when() {
        let defs = defs();
        let n = next_step(&defs, &[], &[], Stage::Applicant).unwrap();
        assert_eq!(
            (n.step.as_str(), n.earliest, n.due),
            ("application", None, None)
        );
        let h = done(&[("application", "2021-09-10")]);
        let n = next_step(&defs, &h, &[], Stage::Applicant).unwrap();
        assert_eq!(n.step, "application_talk");
        assert_eq!(
            (n.earliest, n.due),
            (Some(d("2021-09-10")), Some(d("2021-10-10")))
        );
        let mut a = activist_history();
        let n = next_step(&defs, &a, &[], Stage::Activist).unwrap();
        assert_eq!(
            (n.step.as_str(), n.earliest),
            ("development_target_determined", Some(d("2023-03-15")))
        );
        a.extend(done(&[("branch_meeting_admission", "2023-06-20")]));
        let mut all = activist_history();
        all.extend(done(&[
            ("development_target_determined", "2023-03-15"),
            ("introducers_assigned", "2023-03-20"),
            ("political_review", "2023-04-10"),
            ("short_training", "2023-04-17"),
            ("branch_committee_review", "2023-04-25"),
            ("public_notice", "2023-05-17"),
            ("upper_prereview", "2023-05-30"),
            ("volunteer_form", "2023-06-05"),
            ("committee_talk", "2023-07-05"),
        ]));
        all.extend(probation_history());
        let n = next_step(
            &defs,
            &all,
            &["confirmation_branch_meeting".into()],
            Stage::Probationary,
        )
        .unwrap();
        assert_eq!(
            (n.step.as_str(), n.earliest, n.awaiting_approval),
            ("confirmation_branch_meeting", Some(d("2024-06-20")), true)
        );
        assert_eq!(next_step(&defs, &a, &[], Stage::Full), None);
    }

    #[test]
    fn today_is_the_shanghai_date() {
        // 2025-03-14T16:30Z is already the 15th in Shanghai.
        let ms = crate::platform::time::parse_rfc3339("2025-03-14T16:30:00Z").unwrap();
        assert_eq!(today(ms), d("2025-03-15"));
        assert_eq!(today(ms - 31 * 60 * 1000), d("2025-03-14"));
        assert_eq!(
            crate::platform::time::rfc3339_shanghai(start_of_day_ms(d("2025-03-15"))),
            "2025-03-15T00:00:00+08:00"
        );
    }
}
