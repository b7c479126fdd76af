//! The only place that reads the wall clock.
//!
//! Everything that schedules work uses `tokio::time`, so tests run with paused time. An absolute
//! expiry (from STS or a JWT) is turned into a tokio deadline once, here, by measuring how far in
//! the future it lies right now.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
#[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
pub fn now_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Milliseconds since the Unix epoch, now.
#[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
pub fn now_unix_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// How long from now until `unix` (zero when it is already past).
pub fn until_unix(unix: i64) -> Duration {
    Duration::from_secs(u64::try_from(unix.saturating_sub(now_unix())).unwrap_or(0))
}

/// Formats a Unix time as `YYYY-MM-DDTHH:MM:SSZ`, the only expiry format every SDK accepts.
pub fn format_rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Reads an RFC 3339 time (`2026-01-01T12:00:00Z`, fractions and offsets allowed) as Unix
/// seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_seconds_with_z() {
        assert_eq!(format_rfc3339(1_767_268_800), "2026-01-01T12:00:00Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn parses_what_sts_and_roles_anywhere_send() {
        assert_eq!(parse_rfc3339("2026-01-01T12:00:00Z"), Some(1_767_268_800));
        assert_eq!(
            parse_rfc3339("2026-01-01T12:00:00.123Z"),
            Some(1_767_268_800)
        );
        assert_eq!(
            parse_rfc3339("2026-01-01T13:00:00+01:00"),
            Some(1_767_268_800)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn past_times_are_zero_away() {
        assert_eq!(until_unix(0), Duration::ZERO);
        assert!(until_unix(now_unix() + 100) <= Duration::from_secs(100));
    }
}
