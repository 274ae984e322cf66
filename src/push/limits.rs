//! WeChat's limits on template-message and subscribe-message values (模板消息 / 订阅消息 参数值
//!内容限制), enforced before sending: WeChat answers 47003 (argument invalid) to a push that is
//! then wrong for every recipient. The keyword's type is its name without the number: `thing1` is a
//! `thing`, `character_string3` a `character_string`.
//!
//! Free text (`thing`, and the classic `first`/`keywordN`/`remark`) is truncated with "…"; values
//! that would be *wrong* if cut (numbers, times, dates, amounts, codes) are refused.

use std::sync::LazyLock;

use regex::Regex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {why}")]
pub struct InvalidValue {
    pub key: String,
    pub why: String,
}

/// Classic template keys (`first`, `keywordN`, `remark`) have no documented per-field limit; this
/// keeps a runaway summary from making the message unreadable.
const CLASSIC_MAX: usize = 200;

static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^-?\d+(\.\d+)?$").unwrap());
static LETTER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z]+$").unwrap());
static SYMBOL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[[:punct:]]+$").unwrap());
static CHARACTER_STRING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[[:graph:]]+$").unwrap());
static AMOUNT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[¥￥$€£]?\d{1,10}(\.\d{1,2})?元?$").unwrap());
static PHONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[0-9+\-() ]{1,17}$").unwrap());
static CAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\p{Han}A-Z0-9]?[A-Z0-9]{1,6}[\p{Han}A-Z0-9]?$").unwrap());
static HAN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\p{Han}+$").unwrap());
static NAME_LATIN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z .·-]*$").unwrap());
/// One point in time: `15:01`, `2019年10月1日`, `2019-10-01 15:01`, `2019/10/01 15:01:30`.
const DATE: &str = r"\d{4}(年\d{1,2}月\d{1,2}日|-\d{1,2}-\d{1,2}|/\d{1,2}/\d{1,2})";
const CLOCK: &str = r"([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?";
static TIME: LazyLock<Regex> = LazyLock::new(|| {
    let point = format!(r"({DATE}\s*)?{CLOCK}");
    Regex::new(&format!(r"^{point}(\s*~\s*{point})?$")).unwrap()
});
static DATE_RE: LazyLock<Regex> = LazyLock::new(|| {
    let point = format!(r"{DATE}(\s*{CLOCK})?");
    Regex::new(&format!(r"^{point}(\s*~\s*{point})?$")).unwrap()
});

/// The keyword type of a data key: trailing digits removed, `.DATA` ignored.
pub fn key_type(key: &str) -> &str {
    let key = key.strip_suffix(".DATA").unwrap_or(key);
    key.trim_end_matches(|c: char| c.is_ascii_digit())
}

/// Cut `s` to at most `max` characters, the last being "…" when something was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Check (and where allowed, truncate) one value.
pub fn enforce(key: &str, value: &str) -> Result<String, InvalidValue> {
    let bad = |why: &str| InvalidValue {
        key: key.to_owned(),
        why: why.to_owned(),
    };
    let value = value.trim();
    let chars = value.chars().count();
    let check = |ok: bool, max: usize, why: &str| -> Result<String, InvalidValue> {
        if chars == 0 {
            return Err(bad("must not be empty"));
        }
        if chars > max {
            return Err(bad(&format!("at most {max} characters, got {chars}")));
        }
        if !ok {
            return Err(bad(why));
        }
        Ok(value.to_owned())
    };
    match key_type(key) {
        "thing" => {
            if chars == 0 {
                return Err(bad("must not be empty"));
            }
            Ok(truncate(value, 20))
        }
        "first" | "keyword" | "remark" => Ok(truncate(value, CLASSIC_MAX)),
        "number" => check(
            NUMBER.is_match(value),
            32,
            "digits only (a decimal point allowed)",
        ),
        "letter" => check(LETTER.is_match(value), 32, "letters only"),
        "symbol" => check(SYMBOL.is_match(value), 5, "symbols only"),
        "character_string" => check(
            CHARACTER_STRING.is_match(value),
            32,
            "letters, digits and symbols only",
        ),
        "time" => check(
            TIME.is_match(value),
            64,
            "a 24-hour time such as 15:01 or 2019年10月1日 15:01",
        ),
        "date" => check(
            DATE_RE.is_match(value),
            64,
            "a date such as 2019年10月1日 or 2019-10-01 15:01",
        ),
        "amount" => check(
            AMOUNT.is_match(value),
            14,
            "an amount such as ¥12.50 or 100元",
        ),
        "phone_number" => check(PHONE.is_match(value), 17, "digits and + - ( ) only"),
        "car_number" => check(CAR.is_match(value), 8, "a licence plate"),
        "phrase" => check(HAN.is_match(value), 5, "Chinese characters only"),
        "name" => {
            if HAN.is_match(value) {
                check(true, 10, "")
            } else {
                check(
                    NAME_LATIN.is_match(value),
                    20,
                    "a name in Chinese (≤10) or letters (≤20)",
                )
            }
        }
        "const" => Err(bad("const values are fixed by WeChat and cannot be sent")),
        _ => Ok(truncate(value, CLASSIC_MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_is_truncated_to_twenty_characters_with_an_ellipsis() {
        let long = "学习贯彻党的二十届三中全会精神专题党课通知全文";
        let v = enforce("thing1", long).unwrap();
        assert_eq!(v.chars().count(), 20);
        assert!(v.ends_with('…'));
        assert_eq!(enforce("thing2", "短标题").unwrap(), "短标题");
        assert!(enforce("thing3", "  ").is_err());
    }

    #[test]
    fn typed_values_are_refused_not_cut() {
        assert_eq!(
            enforce("time2", "2024年10月1日 15:01").unwrap(),
            "2024年10月1日 15:01"
        );
        assert!(enforce("time2", "15:01").is_ok());
        assert!(enforce("time2", "2024-10-01 09:30 ~ 2024-10-01 11:00").is_ok());
        assert!(enforce("time2", "tomorrow").is_err());
        assert!(enforce("date3", "2024年10月1日").is_ok());
        assert!(enforce("date3", "2024-13").is_err());
        assert!(enforce("character_string4", "DJ-2024-0001").is_ok());
        assert!(enforce("character_string4", &"x".repeat(33)).is_err());
        assert!(enforce("character_string4", "含中文").is_err());
        assert!(enforce("phrase5", "已发布").is_ok());
        assert!(enforce("phrase5", "已经正式发布了").is_err());
        assert!(enforce("phrase5", "ok").is_err());
        assert!(enforce("number6", "12.5").is_ok());
        assert!(enforce("number6", "12a").is_err());
        assert!(enforce("amount7", "¥12.50").is_ok());
        assert!(enforce("amount7", "12.505").is_err());
        assert!(enforce("name8", "张三").is_ok());
        assert!(enforce("name8", "张三李四王五赵六钱七孙").is_err());
        assert!(enforce("symbol9", "!!").is_ok());
        assert!(enforce("symbol9", "!!!!!!").is_err());
    }

    #[test]
    fn classic_keys_are_generous_and_key_types_strip_numbers() {
        assert_eq!(key_type("character_string12"), "character_string");
        assert_eq!(key_type("keyword1.DATA"), "keyword");
        assert_eq!(enforce("keyword1", "a").unwrap(), "a");
        assert_eq!(
            enforce("remark", &"长".repeat(300))
                .unwrap()
                .chars()
                .count(),
            200
        );
    }
}
