//! A request to place a call, parsed from the JSON body of `POST /v1/calls`.

use serde_json::{Map, Value};

use super::FieldError;
use super::call::{SessionParameter, SessionParameters};
use super::destination::Destination;

const MAX_AGENT_ID_LEN: usize = 128;
const MAX_PARAMETERS: usize = 50;
const MAX_PARAMETER_NAME_LEN: usize = 100;
const MAX_PARAMETER_VALUE_LEN: usize = 2000;
/// Caller metadata, serialized, may be at most this long.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct CallRequest {
    pub agent_id: String,
    pub to: Destination,
    pub hangup_on_answer_machine: bool,
    pub session_parameters: Vec<SessionParameter>,
    /// A JSON object, serialized.
    pub metadata: Option<String>,
}

impl CallRequest {
    /// Validates every field, reporting all that are wrong at once.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let Value::Object(fields) = body else {
            return Err(vec![FieldError::new("body", "must be a JSON object")]);
        };
        let mut errors = Vec::new();
        let agent_id = agent_id(fields, &mut errors);
        let to = match fields.get("to") {
            Some(Value::String(raw)) => Destination::parse(raw)
                .map_err(|message| errors.push(FieldError::new("to", message)))
                .ok(),
            None | Some(Value::Null) => {
                errors.push(FieldError::new("to", "is required"));
                None
            }
            Some(_) => {
                errors.push(FieldError::new("to", "must be a string"));
                None
            }
        };
        let hangup_on_answer_machine = match fields.get("hangup_on_answer_machine") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                errors.push(FieldError::new(
                    "hangup_on_answer_machine",
                    "must be a boolean",
                ));
                false
            }
        };
        let session_parameters = session_parameters(
            "session_parameters",
            fields.get("session_parameters"),
            &mut errors,
        );
        let metadata = metadata("metadata", fields.get("metadata"), &mut errors);
        if fields.contains_key("status_url") {
            errors.push(FieldError::new(
                "status_url",
                "is set by callhook: each call gets its own signed status URL",
            ));
        }
        match (agent_id, to) {
            (Some(agent_id), Some(to)) if errors.is_empty() => Ok(Self {
                agent_id,
                to,
                hangup_on_answer_machine,
                session_parameters,
                metadata,
            }),
            _ => Err(errors),
        }
    }
}

pub(super) fn agent_id(
    fields: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    // Older AI Studio accounts name the agent `from`.
    let (field, value) = match (fields.get("agent_id"), fields.get("from")) {
        (Some(value), _) => ("agent_id", value),
        (None, Some(value)) => ("from", value),
        (None, None) => {
            errors.push(FieldError::new("agent_id", "is required"));
            return None;
        }
    };
    let message = match value {
        Value::String(s) if s.trim().is_empty() => "must not be empty",
        Value::String(s) if s.len() > MAX_AGENT_ID_LEN => "must be at most 128 characters",
        Value::String(s) if s.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            "must not contain spaces or control characters"
        }
        Value::String(s) => return Some(s.clone()),
        _ => "must be a string",
    };
    errors.push(FieldError::new(field, message));
    None
}

/// Reads `session_parameters` (a list or an object) of the field named `field`.
pub(super) fn session_parameters(
    field: &str,
    value: Option<&Value>,
    errors: &mut Vec<FieldError>,
) -> Vec<SessionParameter> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Vec::new();
    };
    let Ok(parameters) = serde_json::from_value::<SessionParameters>(value.clone()) else {
        errors.push(FieldError::new(
            field,
            "must be a list of {\"name\": string, \"value\": string} or an object of string values",
        ));
        return Vec::new();
    };
    let parameters = parameters.into_list();
    check_parameters(field, &parameters, errors);
    parameters
}

/// Checks the count and lengths of session parameters, naming each bad one under `field`.
pub(super) fn check_parameters(
    field: &str,
    parameters: &[SessionParameter],
    errors: &mut Vec<FieldError>,
) {
    if parameters.len() > MAX_PARAMETERS {
        errors.push(FieldError::new(
            field,
            format!("may have at most {MAX_PARAMETERS} parameters"),
        ));
    }
    for (index, parameter) in parameters.iter().enumerate() {
        let name = parameter.name.trim();
        if name.is_empty() || name.len() > MAX_PARAMETER_NAME_LEN {
            errors.push(FieldError::new(
                format!("{field}[{index}].name"),
                format!("must be 1 to {MAX_PARAMETER_NAME_LEN} characters"),
            ));
        }
        if parameter.value.len() > MAX_PARAMETER_VALUE_LEN {
            errors.push(FieldError::new(
                format!("{field}[{index}].value"),
                format!("must be at most {MAX_PARAMETER_VALUE_LEN} characters"),
            ));
        }
    }
}

/// Reads `metadata` (a JSON object, kept serialized) of the field named `field`.
pub(super) fn metadata(
    field: &str,
    value: Option<&Value>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        Some(object @ Value::Object(_)) => {
            let text = object.to_string();
            if text.len() > MAX_METADATA_BYTES {
                errors.push(FieldError::new(
                    field,
                    format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
                ));
                return None;
            }
            Some(text)
        }
        Some(_) => {
            errors.push(FieldError::new(field, "must be a JSON object"));
            None
        }
    }
}

/// The body of `POST /v1/calls`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // read by the OpenAPI document only; `CallRequest::parse` reads the body
pub struct CreateCall {
    /// The AI Studio agent that places the call (`from` is accepted as an alias).
    #[schema(example = "60c09d70e6a68858f4220848")]
    agent_id: String,
    /// A phone number with its country code, as people type it, or a SIP address.
    #[schema(example = "+972 54-111-6037")]
    to: String,
    hangup_on_answer_machine: Option<bool>,
    /// A list of `{name, value}` or an object `{"NAME": "value"}`.
    #[schema(value_type = Option<Object>)]
    session_parameters: Option<super::call::SessionParameters>,
    /// Free-form JSON object (up to 8 KiB) stored and returned with the call.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_parameters_become_the_upstream_list() {
        let request = CallRequest::parse(&json!({
            "agent_id": "a1", "to": "+972 54-111-6037",
            "session_parameters": {"CALLER_NAME": "Diane Miller"}
        }))
        .unwrap();
        assert_eq!(request.to, Destination::Phone("972541116037".into()));
        assert_eq!(
            request.session_parameters,
            [SessionParameter {
                name: "CALLER_NAME".into(),
                value: "Diane Miller".into()
            }]
        );
    }

    #[test]
    fn every_bad_field_is_reported() {
        let errors = CallRequest::parse(&json!({
            "to": "054-111-6037", "hangup_on_answer_machine": "yes",
            "session_parameters": [{"name": 1}], "metadata": [1]
        }))
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "agent_id",
                "to",
                "hangup_on_answer_machine",
                "session_parameters",
                "metadata"
            ]
        );
    }
}
