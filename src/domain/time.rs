//! Instants as callhook reads and writes them: parsed leniently, kept at microsecond
//! precision (what Postgres stores), and always written as RFC 3339 UTC with milliseconds.

use chrono::{DateTime, Datelike, NaiveDateTime, SubsecRound, Utc};
use serde::Serializer;

pub type Timestamp = DateTime<Utc>;

/// Parses an RFC 3339 timestamp; one without an offset (as AI Studio sends) is read as UTC.
/// Instants whose UTC year RFC 3339 cannot write (outside 0000–9999) are refused.
pub fn parse_timestamp(raw: &str) -> Option<Timestamp> {
    let raw = raw.trim();
    let at = match DateTime::parse_from_rfc3339(raw) {
        Ok(at) => at.with_timezone(&Utc),
        Err(_) => ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())?
            .and_utc(),
    };
    in_range(at).map(|at| at.trunc_subsecs(6))
}

/// The instant, if RFC 3339 can write its UTC year.
pub fn in_range(at: Timestamp) -> Option<Timestamp> {
    (0..=9999).contains(&at.year()).then_some(at)
}

/// A span of time as instants add it; callers pass spans far inside chrono's range (a
/// larger one reads as none).
pub fn span(duration: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or_default()
}

/// The current instant at the precision callhook stores.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

pub fn format_timestamp(at: &Timestamp) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `serialize_with` for timestamps in responses.
pub fn serialize<S: Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_timestamp(at))
}

/// `serialize_with` for optional timestamps in responses.
pub fn serialize_opt<S: Serializer>(
    at: &Option<Timestamp>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serialize(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// Microseconds since the epoch: how the SQLite backend stores instants.
pub fn to_micros(at: &Timestamp) -> i64 {
    at.timestamp_micros()
}

pub fn from_micros(micros: i64) -> Timestamp {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsetless_timestamps_are_utc() {
        let at = parse_timestamp("2020-10-14T09:42:07.151657").unwrap();
        assert_eq!(format_timestamp(&at), "2020-10-14T09:42:07.151Z");
        assert_eq!(to_micros(&at) % 1_000_000, 151_657);
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let at = parse_timestamp("2022-05-31T08:40:45.475+02:00").unwrap();
        assert_eq!(format_timestamp(&at), "2022-05-31T06:40:45.475Z");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(
            parse_timestamp("9999-12-31T23:00:00-05:00").is_none(),
            "year 10000 in UTC"
        );
        assert!(parse_timestamp("yesterday").is_none());
        assert!(parse_timestamp("2022-13-31T00:00:00Z").is_none());
        assert!(parse_timestamp("").is_none());
    }
}
