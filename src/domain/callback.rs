//! A status callback as AI Studio posts it to a `status_url`, parsed from the raw body.

use std::collections::HashMap;

use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::FieldError;
use super::conversation::ConversationUuid;
use super::time::{Timestamp, parse_timestamp};

pub use super::conversation::MAX_CONVERSATION_UUID_LEN;
/// Longest `status` accepted. Statuses are stored exactly as sent (case, spaces, unknown
/// words); this bound only keeps the unique key within what an index entry can hold.
pub const MAX_STATUS_LEN: usize = 1024;
const MAX_SHORT_FIELD_LEN: usize = 200;

/// A validated callback, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    pub conversation_uuid: ConversationUuid,
    pub status: String,
    pub occurred_at: Timestamp,
    pub agent_id: Option<String>,
    pub to: Option<String>,
    /// Set when the callback came through a per-call status URL.
    pub call_id: Option<Uuid>,
    pub received_at: Timestamp,
    /// The body exactly as received, kept for audit and replay.
    pub payload: String,
}

#[derive(Debug, PartialEq)]
pub enum CallbackError {
    /// The body is not a JSON object (400).
    NotAnObject,
    /// Required fields are missing or invalid (422).
    Invalid(Vec<FieldError>),
}

impl Callback {
    /// Parses a raw callback body. Any content type is accepted: the body must be a JSON
    /// object with `conversation_uuid`, `status` and `timestamp`. Only the top level is read
    /// into values; every other member is checked for JSON grammar alone, so that any depth
    /// of nesting and numbers of any size are stored rather than refused.
    pub fn parse(
        body: &[u8],
        call_id: Option<Uuid>,
        received_at: Timestamp,
    ) -> Result<Self, CallbackError> {
        let Ok(members) = serde_json::from_slice::<HashMap<String, Box<RawValue>>>(body) else {
            return Err(CallbackError::NotAnObject);
        };
        let fields = Fields(members);
        let mut errors = Vec::new();
        let conversation_uuid = conversation_uuid(&fields, &mut errors);
        let status = status_as_sent(&fields, &mut errors);
        let occurred_at = required_string(&fields, "timestamp", 64, &mut errors).and_then(|raw| {
            let parsed = parse_timestamp(&raw);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "timestamp",
                    "must be an RFC 3339 date-time, e.g. 2022-05-31T06:40:45.475Z",
                ));
            }
            parsed
        });
        match (conversation_uuid, status, occurred_at) {
            (Some(conversation_uuid), Some(status), Some(occurred_at)) if errors.is_empty() => {
                Ok(Self {
                    conversation_uuid,
                    status,
                    occurred_at,
                    // Older accounts send `from` where newer ones send `agent_id`.
                    agent_id: optional_string(&fields, "agent_id")
                        .or_else(|| optional_string(&fields, "from")),
                    to: optional_string(&fields, "to"),
                    call_id,
                    received_at,
                    payload: String::from_utf8_lossy(body).into_owned(),
                })
            }
            _ => Err(CallbackError::Invalid(errors)),
        }
    }
}

/// The top-level members of a callback; a member is read into a value only when asked for,
/// and one too deep or with a number outside f64 reads as "not a string".
struct Fields(HashMap<String, Box<RawValue>>);

impl Fields {
    fn get(&self, name: &str) -> Option<Value> {
        let raw = self.0.get(name)?;
        Some(serde_json::from_str(raw.get()).unwrap_or(Value::Array(Vec::new())))
    }
}

fn conversation_uuid(fields: &Fields, errors: &mut Vec<FieldError>) -> Option<ConversationUuid> {
    let message = match fields.get("conversation_uuid").as_ref() {
        None | Some(Value::Null) => "is required".to_owned(),
        Some(Value::String(s)) => match ConversationUuid::parse(s) {
            Ok(id) => return Some(id),
            Err(message) => message,
        },
        Some(_) => "must be a string".to_owned(),
    };
    errors.push(FieldError::new("conversation_uuid", message));
    None
}

fn required_string(
    fields: &Fields,
    name: &str,
    max_len: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let message = match fields.get(name).as_ref() {
        None | Some(Value::Null) => "is required",
        Some(Value::String(s)) if s.trim().is_empty() => "must not be empty",
        Some(Value::String(s)) if s.len() > max_len => {
            errors.push(FieldError::new(
                name,
                format!("must be at most {max_len} bytes"),
            ));
            return None;
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            "must not contain control characters"
        }
        Some(Value::String(s)) => return Some(s.trim().to_owned()),
        Some(_) => "must be a string",
    };
    errors.push(FieldError::new(name, message));
    None
}

/// The status exactly as sent: only an empty one, or one with a NUL character (which no
/// database text column holds), is refused.
fn status_as_sent(fields: &Fields, errors: &mut Vec<FieldError>) -> Option<String> {
    let message = match fields.get("status").as_ref() {
        None | Some(Value::Null) => "is required".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "must not be empty".to_owned(),
        Some(Value::String(s)) if s.len() > MAX_STATUS_LEN => {
            format!("must be at most {MAX_STATUS_LEN} bytes")
        }
        Some(Value::String(s)) if s.contains('\0') => "must not contain NUL characters".to_owned(),
        Some(Value::String(s)) => return Some(s.clone()),
        Some(_) => "must be a string".to_owned(),
    };
    errors.push(FieldError::new("status", message));
    None
}

/// Optional descriptive fields are kept when usable and ignored otherwise: a callback is
/// never refused for them, since whatever is refused is lost.
fn optional_string(fields: &Fields, name: &str) -> Option<String> {
    let value = match fields.get(name)? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let usable = !value.is_empty()
        && value.len() <= MAX_SHORT_FIELD_LEN
        && !value.chars().any(char::is_control);
    usable.then_some(value)
}

/// A status callback as AI Studio sends it. Any content type is accepted.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // read by the OpenAPI document only; `Callback::parse` reads the body
pub struct CallbackBody {
    /// Kept when a string (or number); any other value is ignored, never refused.
    #[schema(value_type = Value, required = false, example = "60c09d70e6a68858f4220848")]
    agent_id: Option<serde_json::Value>,
    /// Kept when a string (or number); any other value is ignored, never refused.
    #[schema(value_type = Value, required = false, example = "972542233016")]
    to: Option<serde_json::Value>,
    #[schema(example = "CON-4ee2e523-4ee13-4e98-ae94-e6e3e1ab9ac6")]
    conversation_uuid: String,
    /// `cancelled`, `rejected`, `busy`, `timeout`, `failed`, or any other string (stored as sent).
    #[schema(example = "busy")]
    status: String,
    /// RFC 3339; without an offset it is read as UTC.
    #[schema(example = "2022-05-31T06:40:45.475Z")]
    timestamp: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::now;

    fn parse(body: &str) -> Result<Callback, CallbackError> {
        Callback::parse(body.as_bytes(), None, now())
    }

    #[test]
    fn documented_callback_parses() {
        let cb = parse(
            r#"{"agent_id":"a1","to":"972542233016","conversation_uuid":"CON-1","status":"busy","timestamp":"2022-05-31T06:40:45.475Z"}"#,
        )
        .unwrap();
        assert_eq!(cb.conversation_uuid, "CON-1");
        assert_eq!(cb.status, "busy");
        assert_eq!(cb.to.as_deref(), Some("972542233016"));
    }

    #[test]
    fn non_objects_are_not_callbacks() {
        for body in ["", "[]", "\"busy\"", "{", "null", "status=busy"] {
            assert_eq!(parse(body), Err(CallbackError::NotAnObject), "{body}");
        }
    }

    #[test]
    fn every_missing_field_is_named() {
        let Err(CallbackError::Invalid(errors)) = parse(r#"{"timestamp":"nope"}"#) else {
            panic!("expected invalid");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["conversation_uuid", "status", "timestamp"]);
    }

    #[test]
    fn unknown_statuses_are_kept_as_sent() {
        let cb = parse(r#"{"conversation_uuid":"C","status":"Voicemail-Full","timestamp":"2022-05-31T06:40:45Z"}"#).unwrap();
        assert_eq!(cb.status, "Voicemail-Full");
        let long = "machine_detected_".repeat(10);
        for status in [" Busy ", "tab\there", long.as_str()] {
            let body = serde_json::json!({"conversation_uuid": "C", "status": status,
                "timestamp": "2022-05-31T06:40:45Z"});
            let cb = parse(&body.to_string()).unwrap();
            assert_eq!(cb.status, status, "stored exactly as sent");
        }
    }

    #[test]
    fn any_nesting_and_any_number_elsewhere_is_stored() {
        let deep = format!("{}1{}", "[".repeat(20_000), "]".repeat(20_000));
        let digits = "9".repeat(5000);
        for extra in [
            deep.as_str(),
            "1e999999",
            digits.as_str(),
            r#"{"a":{"b":[1,2,{"c":null}]}}"#,
        ] {
            let body = format!(
                r#"{{"conversation_uuid":"C","status":"busy","timestamp":"2022-05-31T06:40:45Z","extra":{extra},"to":{extra}}}"#
            );
            let cb = parse(&body)
                .unwrap_or_else(|e| panic!("{e:?} for {}", &extra[..10.min(extra.len())]));
            assert_eq!(cb.payload, body, "the raw body is kept");
            assert_eq!(cb.to, None, "an unusable optional field is dropped");
        }
    }

    #[test]
    fn a_required_field_out_of_reach_is_named() {
        let body = format!(
            r#"{{"conversation_uuid":{}"C"{},"status":"busy","timestamp":"2022-05-31T06:40:45Z"}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let Err(CallbackError::Invalid(errors)) = parse(&body) else {
            panic!("expected invalid");
        };
        assert_eq!(errors[0].field, "conversation_uuid");
    }
}
