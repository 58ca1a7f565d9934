//! Calling hours: a daily window (`09:00`–`20:00`, some weekdays) that must hold in every time
//! zone a destination may be in. A number's zones come from its country (found from the
//! number by `phonenumber`'s metadata) and the tz database's own `zone1970.tab`; an explicit
//! IANA zone names one; SIP addresses use UTC.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::LazyLock;

use chrono::{Datelike, Duration, NaiveTime, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::FieldError;
use super::destination::Destination;
use super::time::Timestamp;

/// The tz database's table of zones by country (public domain, tz 2025b, as `chrono-tz`).
const ZONE1970_TAB: &str = include_str!("../../data/zone1970.tab");
/// How far ahead the next opening is looked for: a week and a day covers every weekday set.
const SEARCH_DAYS: i64 = 8;
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DESTINATION: &str = "destination";

/// A campaign's calling window, as the API takes and shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Window {
    /// Local start time, `HH:MM`.
    #[schema(example = "09:00")]
    pub start: String,
    /// Local end time, `HH:MM`, after `start`; no attempt starts at or after it.
    #[schema(example = "20:00")]
    pub end: String,
    /// Weekdays (`mon` … `sun`) on which the window opens; every day when absent.
    pub days: Vec<String>,
    /// An IANA zone name, or `destination`: the local time of the number's country (all of
    /// its zones), UTC for a SIP address.
    #[schema(example = "destination")]
    pub timezone: String,
}

/// A window ready to check instants against.
#[derive(Debug, Clone)]
pub struct Hours {
    start: NaiveTime,
    end: NaiveTime,
    days: [bool; 7],
    /// `None`: the destination's zones.
    zone: Option<Tz>,
}

impl Window {
    /// Reads `window` of a campaign body, naming each bad field under `field`.
    pub fn parse(value: &serde_json::Value, errors: &mut Vec<FieldError>) -> Option<Self> {
        const FIELD: &str = "window";
        let serde_json::Value::Object(fields) = value else {
            errors.push(FieldError::new(FIELD, "must be an object"));
            return None;
        };
        let before = errors.len();
        let mut time = |name: &str| match fields.get(name).and_then(|v| v.as_str()) {
            Some(raw) => match NaiveTime::parse_from_str(raw.trim(), "%H:%M") {
                Ok(at) => Some(at),
                Err(_) => {
                    errors.push(FieldError::new(
                        format!("{FIELD}.{name}"),
                        "must be a local time HH:MM, e.g. 09:00",
                    ));
                    None
                }
            },
            None => {
                errors.push(FieldError::new(
                    format!("{FIELD}.{name}"),
                    "is required, as HH:MM",
                ));
                None
            }
        };
        let start = time("start");
        let end = time("end");
        if let (Some(start), Some(end)) = (start, end)
            && end <= start
        {
            errors.push(FieldError::new(
                format!("{FIELD}.end"),
                "must be after start (a window does not cross midnight)",
            ));
        }
        let days = match fields.get("days") {
            None | Some(serde_json::Value::Null) => DAYS.iter().map(|d| (*d).to_owned()).collect(),
            Some(serde_json::Value::Array(days))
                if !days.is_empty()
                    && days
                        .iter()
                        .all(|d| d.as_str().is_some_and(|d| DAYS.contains(&d))) =>
            {
                let mut listed: Vec<String> = DAYS
                    .iter()
                    .filter(|day| days.iter().any(|d| d.as_str() == Some(**day)))
                    .map(|d| (*d).to_owned())
                    .collect();
                listed.dedup();
                listed
            }
            Some(_) => {
                errors.push(FieldError::new(
                    format!("{FIELD}.days"),
                    "must be a non-empty list of mon, tue, wed, thu, fri, sat, sun",
                ));
                Vec::new()
            }
        };
        let timezone = match fields.get("timezone") {
            None | Some(serde_json::Value::Null) => DESTINATION.to_owned(),
            Some(serde_json::Value::String(zone))
                if zone == DESTINATION || Tz::from_str(zone).is_ok() =>
            {
                zone.clone()
            }
            Some(_) => {
                errors.push(FieldError::new(
                    format!("{FIELD}.timezone"),
                    "must be an IANA time zone name (e.g. Europe/Berlin) or \"destination\"",
                ));
                String::new()
            }
        };
        (errors.len() == before).then(|| Self {
            start: start
                .map(|t| t.format("%H:%M").to_string())
                .unwrap_or_default(),
            end: end
                .map(|t| t.format("%H:%M").to_string())
                .unwrap_or_default(),
            days,
            timezone,
        })
    }

    /// The window ready for checks; `None` for a stored window that no longer reads.
    pub fn hours(&self) -> Option<Hours> {
        let start = NaiveTime::parse_from_str(&self.start, "%H:%M").ok()?;
        let end = NaiveTime::parse_from_str(&self.end, "%H:%M").ok()?;
        let mut days = [false; 7];
        for day in &self.days {
            days[DAYS.iter().position(|d| d == day)?] = true;
        }
        let zone = match self.timezone.as_str() {
            DESTINATION => None,
            name => Some(Tz::from_str(name).ok()?),
        };
        Some(Hours {
            start,
            end,
            days,
            zone,
        })
    }
}

/// When a destination may next be dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    Now,
    At(Timestamp),
    /// The window never holds in all of the destination's zones at once.
    Never,
}

impl Hours {
    /// The first instant at or after `at` inside the window for `to`.
    pub fn next_opening(&self, to: &Destination, at: Timestamp) -> Opening {
        let zones = match self.zone {
            Some(zone) => vec![zone],
            None => zones_of(to),
        };
        if self.holds(&zones, at) {
            return Opening::Now;
        }
        // The window opens when the last of the zones opens, so the opening is one of the
        // zones' local start times.
        let mut candidates: Vec<Timestamp> = zones
            .iter()
            .flat_map(|zone| {
                let today = at.with_timezone(zone).date_naive();
                (0..=SEARCH_DAYS).filter_map(move |offset| {
                    let local = (today + Duration::days(offset)).and_time(self.start);
                    zone.from_local_datetime(&local)
                        .earliest()
                        .map(|opening| opening.to_utc())
                })
            })
            .filter(|opening| *opening > at)
            .collect();
        candidates.sort_unstable();
        candidates
            .into_iter()
            .find(|opening| self.holds(&zones, *opening))
            .map_or(Opening::Never, Opening::At)
    }

    fn holds(&self, zones: &[Tz], at: Timestamp) -> bool {
        zones.iter().all(|zone| {
            let local = at.with_timezone(zone);
            let time = local.time();
            self.days[local.weekday().num_days_from_monday() as usize]
                && time >= self.start
                && time < self.end
        })
    }
}

/// The zones a destination may be in: those of the number's country, UTC for SIP addresses
/// and for numbers whose country is not known.
pub fn zones_of(to: &Destination) -> Vec<Tz> {
    let Destination::Phone(digits) = to else {
        return vec![Tz::UTC];
    };
    country_of(digits)
        .and_then(|country| ZONES.get(country.as_str()))
        .cloned()
        .unwrap_or_else(|| vec![Tz::UTC])
}

/// The ISO 3166 country of an international number (digits with the country code): the
/// region whose numbering plan the number fits, else the main region of its calling code.
pub fn country_of(digits: &str) -> Option<String> {
    let number = phonenumber::parse(None, format!("+{digits}")).ok()?;
    if let Some(id) = number.country().id() {
        return Some(id.as_ref().to_owned());
    }
    phonenumber::metadata::DATABASE
        .region(&number.code().value())
        .and_then(|regions| regions.first().map(|r| (*r).to_owned()))
}

/// Zones by country code, from `zone1970.tab` (a zone may serve several countries).
static ZONES: LazyLock<HashMap<String, Vec<Tz>>> = LazyLock::new(|| {
    let mut zones: HashMap<String, Vec<Tz>> = HashMap::new();
    for line in ZONE1970_TAB.lines().filter(|l| !l.starts_with('#')) {
        let mut columns = line.split('\t');
        let (Some(countries), Some(_), Some(name)) =
            (columns.next(), columns.next(), columns.next())
        else {
            continue;
        };
        let Ok(zone) = Tz::from_str(name) else {
            continue;
        };
        for country in countries.split(',') {
            zones.entry(country.to_owned()).or_default().push(zone);
        }
    }
    zones
});

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(raw: &str) -> Timestamp {
        raw.parse().unwrap()
    }

    fn hours(window: serde_json::Value) -> Hours {
        let mut errors = Vec::new();
        let window = Window::parse(&window, &mut errors).unwrap();
        assert!(errors.is_empty());
        window.hours().unwrap()
    }

    fn phone(digits: &str) -> Destination {
        Destination::Phone(digits.into())
    }

    #[test]
    fn countries_come_from_the_number_and_their_zones_from_the_tz_database() {
        assert_eq!(country_of("972541116037").as_deref(), Some("IL"));
        assert_eq!(country_of("4930123456").as_deref(), Some("DE"));
        assert_eq!(country_of("12125550123").as_deref(), Some("US"));
        assert_eq!(country_of("14165550123").as_deref(), Some("CA"));
        assert_eq!(
            zones_of(&phone("972541116037")),
            [chrono_tz::Asia::Jerusalem]
        );
        let us = zones_of(&phone("12125550123"));
        assert!(us.contains(&chrono_tz::America::New_York));
        assert!(us.contains(&chrono_tz::Pacific::Honolulu));
        assert_eq!(
            zones_of(&Destination::Sip("sip:1@example.com".into())),
            [Tz::UTC]
        );
    }

    #[test]
    fn a_window_holds_in_the_destinations_local_time() {
        let hours = hours(json!({"start": "09:00", "end": "20:00"}));
        let israel = phone("972541116037");
        // 06:30 UTC is 08:30 in Jerusalem in winter: closed until 07:00 UTC.
        assert_eq!(
            hours.next_opening(&israel, at("2026-12-01T06:30:00Z")),
            Opening::At(at("2026-12-01T07:00:00Z"))
        );
        assert_eq!(
            hours.next_opening(&israel, at("2026-12-01T10:00:00Z")),
            Opening::Now
        );
        // 18:00 UTC is 20:00 there: the end is outside; tomorrow 09:00 local.
        assert_eq!(
            hours.next_opening(&israel, at("2026-12-01T18:00:00Z")),
            Opening::At(at("2026-12-02T07:00:00Z"))
        );
    }

    #[test]
    fn a_country_with_several_zones_needs_the_window_in_all_of_them() {
        let hours = hours(json!({"start": "09:00", "end": "20:00"}));
        let us = phone("12125550123");
        // 14:00 UTC: 09:00 in New York but 04:00 in Honolulu.
        let next = hours.next_opening(&us, at("2026-12-01T14:00:00Z"));
        // 09:00 in Honolulu (UTC-10) is 19:00 UTC, when it is 14:00 in New York; Alaska's
        // western Aleutians (Adak, UTC-10 in winter) open at the same instant.
        assert_eq!(next, Opening::At(at("2026-12-01T19:00:00Z")));
        let narrow = self::hours(json!({"start": "09:00", "end": "10:00"}));
        assert_eq!(
            narrow.next_opening(&us, at("2026-12-01T14:00:00Z")),
            Opening::Never
        );
    }

    #[test]
    fn days_and_an_explicit_zone_apply() {
        let hours = hours(json!({"start": "09:00", "end": "17:00", "days": ["mon"],
                                 "timezone": "Europe/Berlin"}));
        // Tuesday 2026-12-01: next Monday 09:00 Berlin (08:00 UTC).
        assert_eq!(
            hours.next_opening(&phone("972541116037"), at("2026-12-01T10:00:00Z")),
            Opening::At(at("2026-12-07T08:00:00Z"))
        );
    }

    #[test]
    fn bad_windows_name_their_fields() {
        let mut errors = Vec::new();
        let parsed = Window::parse(
            &json!({"start": "9", "end": "08:00", "days": ["monday"], "timezone": "Mars/Base"}),
            &mut errors,
        );
        assert!(parsed.is_none());
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["window.start", "window.days", "window.timezone"]);
        errors.clear();
        Window::parse(&json!({"start": "10:00", "end": "09:00"}), &mut errors);
        assert_eq!(errors[0].field, "window.end");
    }
}
