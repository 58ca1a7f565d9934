//! `POST /telephony/make-call` as AI Studio documents it: key, body, agent and rate checks,
//! then `{session_id, session_start_time}` and the callbacks later.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::Simulator;

/// How long a `fail-hang` request is held before the simulator gives up on it.
const HANG_FOR: Duration = Duration::from_secs(120);
const MIN_DIGITS: usize = 7;
const MAX_DIGITS: usize = 15;

/// A make-call body that AI Studio would accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakeCall {
    pub agent_id: String,
    pub to: String,
    pub status_url: Option<String>,
}

/// AI Studio's error shape, `{"status": N, "message": "…"}`.
fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"status": status.as_u16(), "message": message});
    (status, axum::Json(body)).into_response()
}

pub(super) async fn make_call(
    State(simulator): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers.get("x-vgai-key").map(HeaderValue::as_bytes);
    if !key.is_some_and(|key| simulator.key_matches(key)) {
        tracing::info!("make-call refused: missing or wrong X-Vgai-Key (401)");
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let request = match MakeCall::parse(&body) {
        Ok(request) => request,
        Err(message) => {
            tracing::info!(%message, "make-call refused (400)");
            return error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let agent_id = request.agent_id.as_str();
    match agent_id {
        "fail-500" => {
            tracing::info!(agent_id, "make-call failed as asked (500)");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Failed to fetch preconfigured session information",
            );
        }
        "fail-hang" => {
            tracing::info!(agent_id, "make-call held without an answer, as asked");
            simulator.closing_or(HANG_FOR).await;
            return error(StatusCode::GATEWAY_TIMEOUT, "Gateway timeout");
        }
        _ if agent_id == "fail-404" || !simulator.knows_agent(agent_id) => {
            tracing::info!(agent_id, "make-call refused: unknown agent (404)");
            return error(
                StatusCode::NOT_FOUND,
                "Agent not found, or it has no published version",
            );
        }
        _ => {}
    }
    if let Err(retry_after) = simulator.admit(agent_id) {
        tracing::info!(agent_id, retry_after, "make-call refused: rate limit (429)");
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many calls for this agent; retry later",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        return response;
    }
    let session_id = Uuid::new_v4();
    let started = chrono::Utc::now().naive_utc();
    tracing::info!(
        agent_id,
        to = %request.to,
        %session_id,
        callbacks = simulator.plan(&request.to).len(),
        "make-call accepted"
    );
    simulator.place(AcceptedCall::new(session_id, request));
    axum::Json(json!({
        "session_id": session_id,
        "session_start_time": started.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
    }))
    .into_response()
}

/// A call the simulator accepted, waiting for its callbacks.
#[derive(Debug, Clone)]
pub struct AcceptedCall {
    pub session_id: Uuid,
    pub conversation_uuid: String,
    pub request: MakeCall,
}

impl AcceptedCall {
    pub fn new(session_id: Uuid, request: MakeCall) -> Self {
        Self {
            session_id,
            conversation_uuid: format!("CON-{}", Uuid::new_v4()),
            request,
        }
    }
}

impl MakeCall {
    /// Checks the body as the platform does; the error is the message of a 400.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
            return Err("Invalid request body: expected a JSON object".into());
        };
        let text = |field: &str| match body.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(format!("Invalid {field}: expected a non-empty string")),
        };
        let agent_id = text("agent_id")?.ok_or("Missing agent_id")?;
        let to = text("to")?.ok_or("Missing to")?;
        check_destination(&to)?;
        let status_url = text("status_url")?;
        if !matches!(
            body.get("hangup_on_answer_machine"),
            None | Some(Value::Null | Value::Bool(_))
        ) {
            return Err("Invalid hangup_on_answer_machine: expected a boolean".into());
        }
        match body.get("session_parameters") {
            None | Some(Value::Null) => {}
            Some(Value::Array(parameters))
                if parameters.iter().all(|p| {
                    p.get("name").is_some_and(Value::is_string)
                        && p.get("value").is_some_and(Value::is_string)
                }) => {}
            Some(_) => {
                return Err(
                    "Invalid session_parameters: expected a list of {name, value} strings".into(),
                );
            }
        }
        Ok(Self {
            agent_id,
            to,
            status_url,
        })
    }
}

/// Digits only with the country code (E.164 lengths, no leading 0), or a SIP address.
fn check_destination(to: &str) -> Result<(), String> {
    let lower = to.to_ascii_lowercase();
    if let Some(rest) = lower
        .strip_prefix("sip:")
        .or_else(|| lower.strip_prefix("sips:"))
    {
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        if host.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("Invalid destination: not a SIP address".into());
        }
        return Ok(());
    }
    if !to.bytes().all(|b| b.is_ascii_digit())
        || to.starts_with('0')
        || !(MIN_DIGITS..=MAX_DIGITS).contains(&to.len())
    {
        return Err("Invalid destination number format: digits only, with the country code".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<MakeCall, String> {
        MakeCall::parse(body.to_string().as_bytes())
    }

    #[test]
    fn accepts_the_documented_body() {
        let call = parse(json!({
            "agent_id": "a1", "to": "972541116032", "status_url": "http://127.0.0.1:1/s",
            "hangup_on_answer_machine": false,
            "session_parameters": [{"name": "CALLER_NAME", "value": "Diane"}],
        }))
        .unwrap();
        assert_eq!(call.to, "972541116032");
        assert_eq!(call.status_url.as_deref(), Some("http://127.0.0.1:1/s"));
        assert!(parse(json!({"agent_id": "a1", "to": "sip:1234@sip.example.com"})).is_ok());
    }

    #[test]
    fn refuses_what_the_platform_refuses() {
        for body in [
            json!({"to": "972541116032"}),
            json!({"agent_id": "a1"}),
            json!({"agent_id": "a1", "to": "+972541116032"}),
            json!({"agent_id": "a1", "to": "0541116032"}),
            json!({"agent_id": "a1", "to": "97254CALLME"}),
            json!({"agent_id": "a1", "to": "123456"}),
            json!({"agent_id": "a1", "to": "1234567890123456"}),
            json!({"agent_id": "a1", "to": "sip:"}),
            json!({"agent_id": "a1", "to": "972541116032", "hangup_on_answer_machine": "yes"}),
            json!({"agent_id": "a1", "to": "972541116032", "session_parameters": {"A": "b"}}),
            json!(["not", "an", "object"]),
        ] {
            assert!(parse(body.clone()).is_err(), "{body}");
        }
        assert!(MakeCall::parse(b"{not json").is_err());
    }
}
