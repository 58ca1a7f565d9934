//! The body of `POST /v1/campaigns`, and destinations added later as JSON or CSV. Validation
//! is all-or-nothing: every bad field is named (`destinations[3].to`, `line 4: to`), and
//! nothing is kept when one is.

use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::FieldError;
use super::call::SessionParameter;
use super::call_request::{
    MAX_METADATA_BYTES, agent_id, check_parameters, metadata, session_parameters,
};
use super::campaign::MIN_CALLS_PER_SECOND;
use super::destination::Destination;
use super::time::{Timestamp, parse_timestamp};
use super::window::Window;

/// Most destinations one request may carry.
pub const MAX_DESTINATIONS: usize = 100_000;
/// Most errors one refusal lists; a count of the rest follows.
const MAX_ERRORS: usize = 100;
const MAX_NAME_LEN: usize = 200;
const MAX_REDIAL_ON: usize = 20;
const MAX_STATUS_LEN: usize = 64;
/// A redial may wait at most a year.
const MAX_REDIAL_AFTER_SECS: u64 = 366 * 24 * 60 * 60;
pub const DEFAULT_REDIAL_ON: [&str; 2] = ["busy", "timeout"];

/// A destination to add to a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDestination {
    pub to: Destination,
    /// Its own session parameters, applied over the campaign's.
    pub session_parameters: Vec<SessionParameter>,
    /// A JSON object, serialized.
    pub metadata: Option<String>,
}

/// A valid campaign body.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: Option<String>,
    pub agent_id: String,
    pub session_parameters: Vec<SessionParameter>,
    pub hangup_on_answer_machine: bool,
    pub calls_per_second: f64,
    pub max_attempts: u32,
    pub redial_on: Vec<String>,
    pub redial_after_secs: u64,
    pub window: Option<Window>,
    /// `None`: now.
    pub start_at: Option<Timestamp>,
    pub destinations: Vec<NewDestination>,
}

/// The top-level fields of a body, each kept as its JSON text so that a large destination
/// list is read one destination at a time.
pub type RawFields<'a> = HashMap<String, &'a RawValue>;

/// Errors collected up to [`MAX_ERRORS`].
#[derive(Default)]
struct Errors {
    listed: Vec<FieldError>,
    more: usize,
}

impl Errors {
    fn extend(&mut self, errors: impl IntoIterator<Item = FieldError>) {
        for error in errors {
            if self.listed.len() < MAX_ERRORS {
                self.listed.push(error);
            } else {
                self.more += 1;
            }
        }
    }

    fn finish(mut self) -> Result<(), Vec<FieldError>> {
        if self.more > 0 {
            self.listed.push(FieldError::new(
                "body",
                format!("{} more errors are not listed", self.more),
            ));
        }
        if self.listed.is_empty() {
            Ok(())
        } else {
            Err(self.listed)
        }
    }
}

impl NewCampaign {
    /// Validates every field of a campaign body.
    pub fn parse(fields: &RawFields<'_>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        // A field JSON itself can read but not hold (a number like 1e400) is named too.
        let mut unreadable = Vec::new();
        let mut value = |name: &str| -> Option<Value> {
            let raw = fields.get(name)?;
            match serde_json::from_str::<Value>(raw.get()) {
                Ok(Value::Null) => None,
                Ok(value) => Some(value),
                Err(_) => {
                    unreadable.push(FieldError::new(name, "is out of range"));
                    None
                }
            }
        };
        let mut scalars = Map::new();
        for name in ["agent_id", "from"] {
            if let Some(v) = value(name) {
                scalars.insert(name.to_owned(), v);
            }
        }
        let agent_id = agent_id(&scalars, &mut errors);
        let name = match value("name") {
            None => None,
            Some(Value::String(name)) if name.chars().count() <= MAX_NAME_LEN => Some(name),
            Some(_) => {
                errors.push(FieldError::new(
                    "name",
                    format!("must be a string of at most {MAX_NAME_LEN} characters"),
                ));
                None
            }
        };
        let session_parameters = session_parameters(
            "session_parameters",
            value("session_parameters").as_ref(),
            &mut errors,
        );
        let hangup_on_answer_machine = match value("hangup_on_answer_machine") {
            None => false,
            Some(Value::Bool(b)) => b,
            Some(_) => {
                errors.push(FieldError::new(
                    "hangup_on_answer_machine",
                    "must be a boolean",
                ));
                false
            }
        };
        let calls_per_second = match value("calls_per_second") {
            None => 1.0,
            Some(Value::Number(n))
                if n.as_f64()
                    .is_some_and(|x| (MIN_CALLS_PER_SECOND..=5.0).contains(&x)) =>
            {
                n.as_f64().unwrap_or(1.0)
            }
            Some(_) => {
                errors.push(FieldError::new(
                    "calls_per_second",
                    "must be a number from 0.001 (a call every 1,000 s) to 5 (AI Studio's \
                     highest per-agent rate)",
                ));
                1.0
            }
        };
        let max_attempts = match value("max_attempts") {
            None => 1,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|x| (1..=10).contains(&x)) => {
                n.as_u64().unwrap_or(1) as u32
            }
            Some(_) => {
                errors.push(FieldError::new(
                    "max_attempts",
                    "must be an integer from 1 to 10",
                ));
                1
            }
        };
        let redial_on = match value("redial_on") {
            None => DEFAULT_REDIAL_ON.iter().map(|s| (*s).to_owned()).collect(),
            Some(Value::Array(statuses))
                if statuses.len() <= MAX_REDIAL_ON
                    && statuses.iter().all(|s| {
                        s.as_str()
                            .is_some_and(|s| !s.trim().is_empty() && s.len() <= MAX_STATUS_LEN)
                    }) =>
            {
                let mut listed: Vec<String> = statuses
                    .iter()
                    .filter_map(|s| s.as_str().map(|s| s.trim().to_owned()))
                    .collect();
                listed.sort();
                listed.dedup();
                listed
            }
            Some(_) => {
                errors.push(FieldError::new(
                    "redial_on",
                    format!(
                        "must be a list of at most {MAX_REDIAL_ON} statuses, e.g. [\"busy\", \"timeout\"]"
                    ),
                ));
                Vec::new()
            }
        };
        let redial_after_secs = match value("redial_after_secs") {
            None => 600,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|x| x <= MAX_REDIAL_AFTER_SECS) => {
                n.as_u64().unwrap_or(600)
            }
            Some(_) => {
                errors.push(FieldError::new(
                    "redial_after_secs",
                    format!("must be an integer of seconds from 0 to {MAX_REDIAL_AFTER_SECS}"),
                ));
                600
            }
        };
        let window = value("window").and_then(|w| Window::parse(&w, &mut errors));
        let start_at = match value("start_at") {
            None => None,
            Some(Value::String(raw)) => {
                let at = parse_timestamp(&raw);
                if at.is_none() {
                    errors.push(FieldError::new(
                        "start_at",
                        "must be an RFC 3339 date-time, e.g. 2026-12-02T08:00:00Z",
                    ));
                }
                at
            }
            Some(_) => {
                errors.push(FieldError::new("start_at", "must be an RFC 3339 date-time"));
                None
            }
        };
        if fields.contains_key("status_url") {
            errors.push(FieldError::new(
                "status_url",
                "is set by callhook: each call gets its own signed status URL",
            ));
        }
        let mut all = Errors::default();
        all.extend(unreadable);
        all.extend(errors);
        let destinations = match fields.get("destinations") {
            None => Vec::new(),
            Some(raw) if raw.get() == "null" => Vec::new(),
            Some(raw) => parse_destinations(raw, &mut all),
        };
        all.finish()?;
        Ok(Self {
            name,
            agent_id: agent_id.unwrap_or_default(),
            session_parameters,
            hangup_on_answer_machine,
            calls_per_second,
            max_attempts,
            redial_on,
            redial_after_secs,
            window,
            start_at,
            destinations,
        })
    }
}

/// Reads `{"destinations": [...]}`, the JSON body of `POST /v1/campaigns/{id}/destinations`.
pub fn parse_destination_list(
    fields: &RawFields<'_>,
) -> Result<Vec<NewDestination>, Vec<FieldError>> {
    let mut errors = Errors::default();
    let destinations = match fields.get("destinations") {
        Some(raw) => parse_destinations(raw, &mut errors),
        None => {
            errors.extend([FieldError::new("destinations", "is required")]);
            Vec::new()
        }
    };
    errors.finish()?;
    if destinations.is_empty() {
        return Err(vec![FieldError::new("destinations", "must not be empty")]);
    }
    Ok(destinations)
}

fn parse_destinations(raw: &RawValue, errors: &mut Errors) -> Vec<NewDestination> {
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        errors.extend([FieldError::new(
            "destinations",
            "must be a list of destinations",
        )]);
        return Vec::new();
    };
    if items.len() > MAX_DESTINATIONS {
        errors.extend([FieldError::new(
            "destinations",
            format!("may hold at most {MAX_DESTINATIONS} destinations per request"),
        )]);
        return Vec::new();
    }
    let mut destinations = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let field = format!("destinations[{index}]");
        let mut found = Vec::new();
        match serde_json::from_str::<Value>(item.get()) {
            Ok(Value::Object(fields)) => {
                if let Some(destination) = destination(&field, &fields, &mut found) {
                    destinations.push(destination);
                }
            }
            _ => found.push(FieldError::new(field, "must be an object with a `to`")),
        }
        errors.extend(found);
    }
    destinations
}

fn destination(
    field: &str,
    fields: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> Option<NewDestination> {
    let to = match fields.get("to") {
        Some(Value::String(raw)) => Destination::parse(raw)
            .map_err(|message| errors.push(FieldError::new(format!("{field}.to"), message)))
            .ok(),
        None | Some(Value::Null) => {
            errors.push(FieldError::new(format!("{field}.to"), "is required"));
            None
        }
        Some(_) => {
            errors.push(FieldError::new(format!("{field}.to"), "must be a string"));
            None
        }
    };
    let before = errors.len();
    let session_parameters = session_parameters(
        &format!("{field}.session_parameters"),
        fields.get("session_parameters"),
        errors,
    );
    let metadata = metadata(&format!("{field}.metadata"), fields.get("metadata"), errors);
    let to = to?;
    (errors.len() == before).then_some(NewDestination {
        to,
        session_parameters,
        metadata,
    })
}

/// Reads destinations from CSV with a header row: a `to` column, `metadata.KEY` columns into
/// the metadata, every other column a session parameter of that name (empty cells are left
/// out). Lines are counted from 1, the header's.
pub fn parse_csv(body: &[u8]) -> Result<Vec<NewDestination>, Vec<FieldError>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(body);
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(err) => return Err(vec![csv_error(1, &err)]),
    };
    let Some(to_column) = headers.iter().position(|h| h == "to") else {
        return Err(vec![FieldError::new(
            "line 1",
            "the header row must name a `to` column",
        )]);
    };
    let mut errors = Errors::default();
    let mut destinations = Vec::new();
    for record in reader.records() {
        if destinations.len() >= MAX_DESTINATIONS {
            errors.extend([FieldError::new(
                "body",
                format!("may hold at most {MAX_DESTINATIONS} destinations per request"),
            )]);
            break;
        }
        let record = match record {
            Ok(record) => record,
            Err(err) => {
                let line = err.position().map_or(0, |p| p.line());
                errors.extend([csv_error(line, &err)]);
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let mut found = Vec::new();
        let to = Destination::parse(record.get(to_column).unwrap_or_default())
            .map_err(|message| found.push(FieldError::new(format!("line {line}: to"), message)))
            .ok();
        let mut parameters = Vec::new();
        let mut metadata = Map::new();
        for (header, cell) in headers.iter().zip(record.iter()) {
            if header == "to" || cell.is_empty() {
                continue;
            }
            match header.strip_prefix("metadata.") {
                Some(key) => {
                    metadata.insert(key.to_owned(), Value::String(cell.to_owned()));
                }
                None => parameters.push(SessionParameter {
                    name: header.to_owned(),
                    value: cell.to_owned(),
                }),
            }
        }
        check_parameters(
            &format!("line {line}: session_parameters"),
            &parameters,
            &mut found,
        );
        let metadata = (!metadata.is_empty()).then(|| Value::Object(metadata).to_string());
        if metadata
            .as_ref()
            .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
        {
            found.push(FieldError::new(
                format!("line {line}: metadata"),
                format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
            ));
        }
        match to {
            Some(to) if found.is_empty() => destinations.push(NewDestination {
                to,
                session_parameters: parameters,
                metadata,
            }),
            _ => errors.extend(found),
        }
    }
    errors.finish()?;
    if destinations.is_empty() {
        return Err(vec![FieldError::new("body", "holds no destinations")]);
    }
    Ok(destinations)
}

fn csv_error(line: u64, err: &csv::Error) -> FieldError {
    let message = match err.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("has {len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".to_owned(),
        _ => "is not valid CSV".to_owned(),
    };
    FieldError::new(format!("line {line}"), message)
}

/// The session parameters a call gets: the campaign's, with the destination's own over them.
pub fn merge_parameters(
    campaign: &[SessionParameter],
    own: &[SessionParameter],
) -> Vec<SessionParameter> {
    let mut merged: Vec<SessionParameter> = campaign
        .iter()
        .filter(|p| !own.iter().any(|o| o.name == p.name))
        .cloned()
        .collect();
    merged.extend(own.iter().cloned());
    merged
}

/// The body of `POST /v1/campaigns`, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // read by the OpenAPI document only; `NewCampaign::parse` reads the body
pub struct CreateCampaign {
    #[schema(example = "November reminders")]
    name: Option<String>,
    #[schema(example = "60c09d70e6a68858f4220848")]
    agent_id: String,
    /// Up to 100,000 destinations; more can be added later.
    destinations: Option<Vec<DestinationInput>>,
    /// Applied to every call, under each destination's own.
    #[schema(value_type = Option<Object>)]
    session_parameters: Option<super::call::SessionParameters>,
    hangup_on_answer_machine: Option<bool>,
    /// Above 0, at most 5; default 1.
    #[schema(example = 1.0)]
    calls_per_second: Option<f64>,
    /// 1–10, default 1.
    #[schema(example = 3)]
    max_attempts: Option<u32>,
    /// Results that schedule another attempt; default `["busy", "timeout"]`.
    redial_on: Option<Vec<String>>,
    /// Seconds from a result to the next attempt; default 600.
    #[schema(example = 600)]
    redial_after_secs: Option<u64>,
    window: Option<Window>,
    /// RFC 3339; default now.
    #[schema(format = DateTime)]
    start_at: Option<String>,
}

/// One destination of a campaign body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // read by the OpenAPI document only
pub struct DestinationInput {
    /// A phone number with its country code, as people type it, or a SIP address.
    #[schema(example = "+972 54-111-6037")]
    to: String,
    #[schema(value_type = Option<Object>)]
    session_parameters: Option<super::call::SessionParameters>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// The JSON body of `POST /v1/campaigns/{id}/destinations`, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // read by the OpenAPI document only
pub struct AddDestinations {
    destinations: Vec<DestinationInput>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Result<NewCampaign, Vec<FieldError>> {
        let fields: RawFields<'_> = serde_json::from_str(json).unwrap();
        NewCampaign::parse(&fields)
    }

    fn named(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let campaign = fields(r#"{"agent_id": "a1"}"#).unwrap();
        assert_eq!(campaign.calls_per_second, 1.0);
        assert_eq!(campaign.max_attempts, 1);
        assert_eq!(campaign.redial_on, ["busy", "timeout"]);
        assert_eq!(campaign.redial_after_secs, 600);
        assert!(campaign.window.is_none() && campaign.start_at.is_none());
        assert!(campaign.destinations.is_empty());
    }

    #[test]
    fn every_bad_field_is_named_with_its_destination() {
        let errors = fields(
            r#"{"calls_per_second": 6, "max_attempts": 0,
                "destinations": [{"to": "+972 54-111-6037"}, {"to": "054-111"}, 7]}"#,
        )
        .unwrap_err();
        assert_eq!(
            named(&errors),
            [
                "agent_id",
                "calls_per_second",
                "max_attempts",
                "destinations[1].to",
                "destinations[2]"
            ]
        );
    }

    #[test]
    fn numbers_out_of_range_are_refused_not_defaulted() {
        let errors = fields(
            r#"{"agent_id": "a", "calls_per_second": 1e-20, "max_attempts": 1e400,
                "redial_after_secs": 1e999}"#,
        )
        .unwrap_err();
        assert_eq!(
            named(&errors),
            ["max_attempts", "redial_after_secs", "calls_per_second"]
        );
    }

    #[test]
    fn csv_columns_become_parameters_and_metadata() {
        let destinations = parse_csv(
            b"to,CALLER_NAME,metadata.order\n+972 54-111-6037,Diane Miller,4711\n972541116038,,\n",
        )
        .unwrap();
        assert_eq!(destinations.len(), 2);
        assert_eq!(
            destinations[0].to,
            Destination::Phone("972541116037".into())
        );
        assert_eq!(destinations[0].session_parameters[0].value, "Diane Miller");
        assert_eq!(
            destinations[0].metadata.as_deref(),
            Some(r#"{"order":"4711"}"#)
        );
        assert!(destinations[1].session_parameters.is_empty());
        assert!(destinations[1].metadata.is_none());
    }

    #[test]
    fn a_bad_csv_row_is_named_by_its_line() {
        let errors =
            parse_csv(b"to,NAME\n972541116037,a\n972541116038,b\nnot a number,c\n").unwrap_err();
        assert_eq!(named(&errors), ["line 4: to"]);
        let errors = parse_csv(b"number\n972541116037\n").unwrap_err();
        assert_eq!(named(&errors), ["line 1"]);
        let errors = parse_csv(b"to,NAME\n972541116037,a,extra\n").unwrap_err();
        assert_eq!(named(&errors), ["line 2"]);
    }

    #[test]
    fn a_destinations_parameters_apply_over_the_campaigns() {
        let parameter = |name: &str, value: &str| SessionParameter {
            name: name.into(),
            value: value.into(),
        };
        let merged = merge_parameters(
            &[
                parameter("COMPANY", "Acme"),
                parameter("CALLER_NAME", "team"),
            ],
            &[parameter("CALLER_NAME", "Diane")],
        );
        assert_eq!(
            merged,
            [
                parameter("COMPANY", "Acme"),
                parameter("CALLER_NAME", "Diane")
            ]
        );
    }
}
