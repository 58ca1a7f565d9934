//! The `to` of an outbound call: a phone number in international form, or a SIP address.

use std::fmt;

/// E.164 allows at most 15 digits; no assigned international number is shorter than 7.
const MIN_DIGITS: usize = 7;
const MAX_DIGITS: usize = 15;
const MAX_SIP_LEN: usize = 256;

/// A destination AI Studio accepts: digits only with the country code, or a SIP URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Phone(String),
    Sip(String),
}

impl Destination {
    /// Accepts numbers as people type them (`+972 54-111-6037`, `(972) 541116037`) and SIP
    /// addresses as given; refuses national numbers, letters and impossible lengths.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        let lower = raw.to_ascii_lowercase();
        if lower.starts_with("sip:") || lower.starts_with("sips:") {
            return parse_sip(raw);
        }
        parse_phone(raw)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Phone(s) | Self::Sip(s) => s,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn parse_sip(raw: &str) -> Result<Destination, String> {
    let (_, rest) = raw.split_once(':').unwrap_or_default();
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    if raw.len() > MAX_SIP_LEN {
        return Err(format!(
            "a SIP address must be at most {MAX_SIP_LEN} characters"
        ));
    }
    if host.is_empty() || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be a SIP address such as sip:1234@sip.example.com".into());
    }
    Ok(Destination::Sip(raw.to_owned()))
}

fn parse_phone(raw: &str) -> Result<Destination, String> {
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_digit() || " +-().\u{a0}".contains(*c)))
    {
        return Err(format!(
            "must be a phone number with its country code (digits, spaces, + - ( ) .) or a SIP address; found {bad:?}"
        ));
    }
    if raw.rfind('+').is_some_and(|at| at > 0) {
        return Err("a + may only lead the number".into());
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.starts_with('0') {
        return Err(
            "looks like a national number (leading 0): give the country code, e.g. 972541116037"
                .into(),
        );
    }
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
        return Err(format!(
            "must have {MIN_DIGITS} to {MAX_DIGITS} digits including the country code (E.164); found {}",
            digits.len()
        ));
    }
    Ok(Destination::Phone(digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_people_type_them_become_digits() {
        for raw in [
            "+972 54-111-6037",
            "(972) 541116037",
            "972541116037",
            " +972.54.111.6037 ",
        ] {
            assert_eq!(
                Destination::parse(raw),
                Ok(Destination::Phone("972541116037".into())),
                "{raw}"
            );
        }
    }

    #[test]
    fn national_numbers_letters_and_bad_lengths_are_refused() {
        for raw in [
            "054-111-6037",
            "+0972541116037",
            "97254CALLME",
            "123456",
            "1234567890123456",
            "97+2541116037",
            "",
        ] {
            assert!(Destination::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn sip_addresses_pass_as_given() {
        assert_eq!(
            Destination::parse("sip:1234@sip.example.com"),
            Ok(Destination::Sip("sip:1234@sip.example.com".into()))
        );
        assert!(Destination::parse("sip:").is_err());
        assert!(Destination::parse("sip:12 34@example.com").is_err());
    }
}
