//! Time in one place: the database stores unix milliseconds (UTC); people read Asia/Shanghai.
//! Every formatting and parsing of times goes through here.

use time::{format_description::well_known::Rfc3339, macros::format_description, OffsetDateTime};

/// China Standard Time (UTC+8, no daylight saving).
pub const SHANGHAI: time::UtcOffset = time::macros::offset!(+8);

/// Unix milliseconds: the one time format stored in the database.
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The instant of a stored unix-millisecond value (the epoch when out of range).
pub fn from_unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 in UTC (`2026-11-05T01:30:00Z`): the admin API's machine-facing times.
pub fn rfc3339(ms: i64) -> String {
    from_unix_ms(ms).format(&Rfc3339).unwrap_or_default()
}

/// RFC 3339 in Asia/Shanghai (`2026-11-05T09:30:00+08:00`), the zone readers and editors live in.
pub fn rfc3339_shanghai(ms: i64) -> String {
    from_unix_ms(ms)
        .to_offset(SHANGHAI)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `2026-11-05 09:30` in Asia/Shanghai: how pages and chat messages show times.
pub fn local_minute(ms: i64) -> String {
    from_unix_ms(ms)
        .to_offset(SHANGHAI)
        .format(format_description!("[year]-[month]-[day] [hour]:[minute]"))
        .unwrap_or_default()
}

/// `2026-11-05` in Asia/Shanghai.
pub fn local_date(ms: i64) -> String {
    from_unix_ms(ms)
        .to_offset(SHANGHAI)
        .format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// An RFC 3339 time (any offset) as unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok().map(unix_ms)
}

/// RFC 3339 or unix milliseconds → unix milliseconds (query parameters accept both).
pub fn parse_time(s: &str) -> Option<i64> {
    match s.parse::<i64>() {
        Ok(ms) => Some(ms),
        Err(_) => parse_rfc3339(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_utc_and_shanghai_and_parses_back() {
        let ms = parse_rfc3339("2026-11-05T01:30:00Z").unwrap();
        assert_eq!(rfc3339(ms), "2026-11-05T01:30:00Z");
        assert_eq!(rfc3339_shanghai(ms), "2026-11-05T09:30:00+08:00");
        assert_eq!(local_minute(ms), "2026-11-05 09:30");
        assert_eq!(local_date(ms), "2026-11-05");
        assert_eq!(parse_rfc3339(&rfc3339_shanghai(ms)), Some(ms));
        assert_eq!(parse_time(&ms.to_string()), Some(ms));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
