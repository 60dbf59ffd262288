//! Timestamps and durations as auditd reads and prints them.

use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 3339 in UTC with whole seconds (`2026-11-27T10:15:00Z`).
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// No duration in the config may exceed this: ten years is longer than anything auditd waits for,
/// and the bound keeps every sum of a timestamp and a duration far from overflowing.
pub const MAX_CONFIG_DURATION: Duration = Duration::from_secs(3650 * 86400);

/// The longest wait a server's `Retry-After` can impose, whatever it asks for: a hostile or broken
/// server must not park an alert or an org for years.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Parses config durations with `humantime` (`"500ms"`, `"30s"`, `"15m"`, `"2h"`, `"1d"`, `"1h 30m"`;
/// `"0s"` is zero), refusing a bare number and anything above [`MAX_CONFIG_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` has no unit (write e.g. \"{t}s\"; units: ms, s, m, h, d)"
        ));
    }
    // humantime also reads `M` (months), `w`, `y` and more; a typo such as "30M" for minutes must
    // not silently mean 30 months, so only the five documented units pass.
    if let Some(unit) = t
        .split(|c: char| c.is_ascii_digit() || c.is_whitespace())
        .find(|u| !u.is_empty() && !matches!(*u, "ms" | "s" | "m" | "h" | "d"))
    {
        return Err(format!("`{text}`: unknown unit `{unit}` (use ms, s, m, h or d)"));
    }
    let d = humantime::parse_duration(t).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => {
            format!("`{text}` is too long (at most 3650d)")
        }
        e => format!("`{text}` is not a duration ({e}; expected e.g. \"30s\", \"15m\", \"2h\")"),
    })?;
    if d > MAX_CONFIG_DURATION {
        return Err(format!("`{text}` is too long (at most 3650d)"));
    }
    Ok(d)
}

/// A duration as whole seconds for timestamp arithmetic, saturating instead of wrapping.
pub fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// A `Retry-After` header value in seconds, capped at [`MAX_RETRY_AFTER`]. (The HTTP-date form is
/// not used by Zoho or by common webhook receivers; it reads as absent.)
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A number too big even for u64 is still "very long": the cap, not "absent".
    let secs = v.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Prints a duration the way config files write it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else {
        let s = d.as_secs();
        if s != 0 && s.is_multiple_of(3600) {
            format!("{}h", s / 3600)
        } else if s != 0 && s.is_multiple_of(60) {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("fast").is_err());
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn durations_above_ten_years_are_refused_never_wrapped() {
        assert_eq!(parse_duration("3650d"), Ok(MAX_CONFIG_DURATION));
        for huge in [
            "3651d",
            "213503982334602d",
            "18446744073709551615s",
            "9223372036854775808s",
        ] {
            let err = parse_duration(huge).unwrap_err();
            assert!(err.contains("too long"), "{huge}: {err}");
        }
    }

    #[test]
    fn only_the_documented_units_are_read() {
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        for other in ["30M", "1w", "1y", "5min", "2 hours", "1us"] {
            let err = parse_duration(other).unwrap_err();
            assert!(err.contains("unknown unit"), "{other}: {err}");
        }
    }

    #[test]
    fn retry_after_is_capped_at_an_hour() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("99999999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("18446744073709551616"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
