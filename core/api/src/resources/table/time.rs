//! Time cells: upstream's `duration.HumanDuration` and `translateTimestampSince`.

use jiff::{SignedDuration, Timestamp};

/// `<unknown>`, what upstream prints for a missing timestamp.
const UNKNOWN: &str = "<unknown>";

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`), which upstream treats as unset.
const GO_ZERO_SECOND: i64 = -62_135_596_800;

/// Parses an RFC 3339 timestamp (`Time` or `MicroTime`); `None` when empty, invalid or Go's zero time.
pub(crate) fn parse(s: &str) -> Option<Timestamp> {
    let ts: Timestamp = s.parse().ok()?;
    (ts.as_second() != GO_ZERO_SECOND || ts.subsec_nanosecond() != 0).then_some(ts)
}

/// The time since `timestamp` in human form (`"10m"`), or `<unknown>` without one.
pub fn age(timestamp: &str, now: Timestamp) -> String {
    match parse(timestamp) {
        Some(ts) => human_duration(now.duration_since(ts)),
        None => UNKNOWN.to_string(),
    }
}

/// The time from `start` to `end` in human form (a job's duration).
pub(crate) fn between(start: Timestamp, end: Timestamp) -> String {
    human_duration(end.duration_since(start))
}

/// `creationTimestamp` as upstream's default table prints it: RFC 3339 in UTC, whole seconds.
pub(crate) fn rfc3339(timestamp: &str) -> String {
    match parse(timestamp) {
        Some(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "0001-01-01T00:00:00Z".to_string(),
    }
}

/// Upstream's `duration.HumanDuration`: `"45s"`, `"5m30s"`, `"10m"`, `"3h5m"`, `"2d4h"`, `"400d"`, `"2y30d"`, `"9y"`.
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn since(secs: i64) -> String {
        let now = at("2025-06-01T12:00:00Z");
        let created = now
            .checked_sub(SignedDuration::from_secs(secs))
            .expect("in range");
        age(&created.to_string(), now)
    }

    #[test]
    fn age_should_format_like_human_duration() {
        assert_eq!(since(0), "0s");
        assert_eq!(since(45), "45s");
        assert_eq!(since(119), "119s");
        assert_eq!(since(120), "2m");
        assert_eq!(since(330), "5m30s");
        assert_eq!(since(600), "10m");
        assert_eq!(since(179 * 60), "179m");
        assert_eq!(since(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(since(7 * 3600), "7h");
        assert_eq!(since(30 * 3600), "30h");
        assert_eq!(since(2 * 86400 + 4 * 3600), "2d4h");
        assert_eq!(since(5 * 86400), "5d");
        assert_eq!(since(400 * 86400), "400d");
        assert_eq!(since(2 * 365 * 86400), "2y");
        assert_eq!(since(2 * 365 * 86400 + 30 * 86400), "2y30d");
        assert_eq!(since(9 * 365 * 86400 + 30 * 86400), "9y");
    }

    #[test]
    fn age_should_tolerate_small_clock_skew_and_flag_the_future() {
        assert_eq!(since(-1), "0s");
        assert_eq!(since(-5), "<invalid>");
    }

    #[test]
    fn age_should_be_unknown_without_a_timestamp() {
        let now = at("2025-06-01T12:00:00Z");
        assert_eq!(age("", now), "<unknown>");
        assert_eq!(age("yesterday", now), "<unknown>");
        assert_eq!(age("0001-01-01T00:00:00Z", now), "<unknown>");
        assert_eq!(age("2025-06-01T11:59:00.123456Z", now), "59s");
    }

    #[test]
    fn rfc3339_should_print_utc_whole_seconds() {
        assert_eq!(
            rfc3339("2025-06-01T12:00:00.5+02:00"),
            "2025-06-01T10:00:00Z"
        );
        assert_eq!(rfc3339(""), "0001-01-01T00:00:00Z");
    }
}
