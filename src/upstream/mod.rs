//! The AI Studio make-call client: one shared `reqwest::Client`, typed answers, and the one
//! retry that cannot ring anybody twice (a connection that was never made).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::call::SessionParameter;
pub use crate::domain::region::Region;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Retries of a request that provably never left (connection not established): two, after
/// 100–200 ms and then twice that, with jitter.
const CONNECT_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(100))
    .with_factor(2.0)
    .with_max_times(2)
    .with_jitter();
/// Upstream messages are kept short in call records and responses.
const MAX_MESSAGE_LEN: usize = 500;

#[derive(Debug, Serialize)]
pub struct MakeCall<'a> {
    pub agent_id: &'a str,
    pub to: &'a str,
    pub status_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hangup_on_answer_machine: Option<bool>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub session_parameters: &'a [SessionParameter],
}

/// AI Studio's success answer; `session_start_time` has no zone and is read as UTC.
#[derive(Debug, Clone, Deserialize)]
pub struct Accepted {
    pub session_id: String,
    pub session_start_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Why AI Studio did not initiate a call, as typed as what it answered allows.
pub enum Failure {
    /// Upstream answered with an error status and (when it sent one) its message, with any
    /// copy of the API key in it redacted.
    Refused {
        status: u16,
        message: String,
        retry_after: Option<u64>,
    },
    /// No connection could be made, even after retrying: the request never left.
    Unreachable(String),
    /// The request was sent but no answer came in time: the call may have been placed.
    Timeout,
    /// The request may have been sent, then the connection failed.
    Interrupted(String),
    /// Upstream said yes with a body that is not the documented shape.
    UnreadableAnswer(u16),
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

pub struct AiStudioClient {
    http: reqwest::Client,
    endpoint: String,
    key: SecretString,
}

impl AiStudioClient {
    pub fn new(base_url: &str, key: SecretString, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .user_agent(concat!("callhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with static settings");
        Self {
            http,
            endpoint: format!("{}/telephony/make-call", base_url.trim_end_matches('/')),
            key,
        }
    }

    /// Places a call, retrying a connection that could not be made (that request never left).
    pub async fn make_call(&self, request: &MakeCall<'_>) -> Result<Accepted, Failure> {
        self.send(request, CONNECT_BACKOFF).await
    }

    /// Places a call with one try: a caller that paces its requests retries at a time of
    /// its own choosing.
    pub async fn make_call_once(&self, request: &MakeCall<'_>) -> Result<Accepted, Failure> {
        self.send(request, CONNECT_BACKOFF.with_max_times(0)).await
    }

    #[tracing::instrument(skip_all, fields(agent_id = request.agent_id))]
    async fn send(
        &self,
        request: &MakeCall<'_>,
        connect_backoff: ExponentialBuilder,
    ) -> Result<Accepted, Failure> {
        let send = || async {
            let started = std::time::Instant::now();
            let sent = self
                .http
                .post(&self.endpoint)
                .header("X-Vgai-Key", self.key.expose_secret())
                .json(request)
                .send()
                .await;
            let outcome = match &sent {
                Ok(response) => response.status().as_u16().to_string(),
                Err(err) if err.is_connect() => "unreachable".to_owned(),
                Err(err) if err.is_timeout() => "timeout".to_owned(),
                Err(_) => "interrupted".to_owned(),
            };
            metrics::histogram!("callhook_upstream_request_duration_seconds", "outcome" => outcome)
                .record(started.elapsed().as_secs_f64());
            sent
        };
        // Only a connection that was never made is retried: that request cannot have rung.
        let response = send
            .retry(connect_backoff)
            .when(reqwest::Error::is_connect)
            .notify(|_, backoff| {
                tracing::warn!(
                    backoff_ms = backoff.as_millis() as u64,
                    "AI Studio unreachable; retrying"
                );
            })
            .await
            .map_err(|err| classify(&err))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after_seconds(v, chrono::Utc::now()));
        let body = response.bytes().await.map_err(|err| classify(&err))?;
        if status.is_success() {
            return serde_json::from_slice::<Accepted>(&body)
                .map_err(|_| Failure::UnreadableAnswer(status.as_u16()));
        }
        Err(Failure::Refused {
            status: status.as_u16(),
            message: error_message(status, &body, self.key.expose_secret()),
            retry_after,
        })
    }
}

/// `Retry-After` as seconds (at least 1): either delay-seconds or an HTTP-date (RFC 9110).
fn retry_after_seconds(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.max(1));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at
        .duration_since(std::time::SystemTime::from(now))
        .unwrap_or_default();
    Some((wait.as_millis() as u64).div_ceil(1000).max(1))
}

fn classify(err: &reqwest::Error) -> Failure {
    // Only the kind of failure is kept: reqwest's text may carry the URL.
    if err.is_connect() {
        Failure::Unreachable("could not connect to AI Studio".into())
    } else if err.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Interrupted("the connection to AI Studio failed mid-request".into())
    }
}

/// The `message` of a `{status, message}` body, or a description of a body that is not one.
/// An upstream that echoes the API key back does not get it shown: the key is redacted.
fn error_message(status: StatusCode, body: &[u8], key: &str) -> String {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.message)
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| {
            format!(
                "AI Studio answered {} without an error message",
                status.canonical_reason().map_or_else(
                    || status.as_str().to_owned(),
                    |r| format!("{} {r}", status.as_str())
                )
            )
        });
    let message = if key.is_empty() {
        message
    } else {
        message.replace(key, "[redacted]")
    };
    message.chars().take(MAX_MESSAGE_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::retry_after_seconds;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T07:28:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(retry_after_seconds("7", now), Some(7));
        assert_eq!(retry_after_seconds(" 0 ", now), Some(1));
        assert_eq!(
            retry_after_seconds("Wed, 25 Nov 2026 07:28:30 GMT", now),
            Some(30)
        );
        assert_eq!(
            retry_after_seconds("Wed, 25 Nov 2026 07:27:00 GMT", now),
            Some(1),
            "a date in the past means now"
        );
        assert_eq!(retry_after_seconds("soon", now), None);
    }
}
