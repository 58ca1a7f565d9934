//! One delivery attempt: a signed `POST` per Standard Webhooks, and what the receiver's
//! answer means.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Client, Url, redirect};
use standardwebhooks::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP};
use uuid::Uuid;

use super::target::{self, PrivateAddress, PublicResolver};

/// What a receiver made of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Any 2xx.
    Delivered(u16),
    /// 410: the receiver asks for nothing more.
    Gone,
    /// Anything else; `status` absent when no answer came.
    Failed {
        status: Option<u16>,
        error: String,
        kind: Failure,
    },
}

/// Why an attempt failed, as metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The receiver answered, but not 2xx.
    Status,
    Timeout,
    /// No connection, or it broke.
    Unreachable,
    /// The host is, or resolves to, a private address.
    Private,
}

/// Every label of `callhook_webhook_attempts_total`.
pub const ATTEMPT_RESULTS: [&str; 6] = [
    "delivered",
    "gone",
    "refused",
    "timeout",
    "unreachable",
    "private_address",
];

impl Answer {
    /// The label of `callhook_webhook_attempts_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered(_) => "delivered",
            Self::Gone => "gone",
            Self::Failed { kind, .. } => match kind {
                Failure::Status => "refused",
                Failure::Timeout => "timeout",
                Failure::Unreachable => "unreachable",
                Failure::Private => "private_address",
            },
        }
    }
}

/// Sends deliveries: one client, its connections reused across deliveries.
#[derive(Debug, Clone)]
pub struct Sender {
    client: Client,
    allow_private: bool,
    timeout: Duration,
}

impl Sender {
    pub fn new(timeout: Duration, allow_private: bool) -> Self {
        let mut builder = Client::builder()
            .timeout(timeout)
            // A redirect could lead anywhere, private addresses included: a receiver that
            // moved is a receiver to subscribe again.
            .redirect(redirect::Policy::none())
            // The resolver is the check: a proxy would resolve instead of it.
            .no_proxy()
            .user_agent(concat!("callhook/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicResolver));
        }
        Self {
            client: builder.build().expect("the TLS backend initializes"),
            allow_private,
            timeout,
        }
    }

    /// Posts `payload` to `url`, signed with `secret` (`whsec_…`) for message `id`.
    pub async fn send(&self, url: &str, secret: &str, id: Uuid, payload: &str) -> Answer {
        let failed = |kind: Failure, error: String| Answer::Failed {
            status: None,
            error,
            kind,
        };
        let Ok(url) = Url::parse(url) else {
            return failed(Failure::Unreachable, "the URL does not parse".into());
        };
        if !self.allow_private && !target::literal_allowed(&url) {
            return failed(
                Failure::Private,
                "the URL's host is a loopback or private address".into(),
            );
        }
        let id = id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let signature = match sign(secret, &id, timestamp, payload) {
            Ok(signature) => signature,
            Err(error) => return failed(Failure::Unreachable, error),
        };
        let request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(HEADER_WEBHOOK_ID, id)
            .header(HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
            .header(HEADER_WEBHOOK_SIGNATURE, signature)
            .body(payload.to_owned());
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Answer::Delivered(status.as_u16())
                } else if status == reqwest::StatusCode::GONE {
                    Answer::Gone
                } else {
                    Answer::Failed {
                        status: Some(status.as_u16()),
                        error: format!("the receiver answered {status}"),
                        kind: Failure::Status,
                    }
                }
            }
            Err(err) => {
                if let Some(private) = private_address(&err) {
                    failed(Failure::Private, private.to_string())
                } else if err.is_timeout() {
                    failed(
                        Failure::Timeout,
                        format!("no answer within {}s", self.timeout.as_secs_f64()),
                    )
                } else if err.is_connect() {
                    failed(Failure::Unreachable, "could not connect".into())
                } else {
                    failed(
                        Failure::Unreachable,
                        "the connection failed before an answer".into(),
                    )
                }
            }
        }
    }
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{payload}">`, keyed by the secret's key.
pub fn sign(secret: &str, id: &str, timestamp: i64, payload: &str) -> Result<String, String> {
    standardwebhooks::Webhook::new(secret)
        .and_then(|webhook| webhook.sign(id, timestamp, payload.as_bytes()))
        .map_err(|_| "the subscription's secret is not valid base64".to_owned())
}

fn private_address(err: &reqwest::Error) -> Option<&PrivateAddress> {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(private) = cause.downcast_ref::<PrivateAddress>() {
            return Some(private);
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the signature scheme that Standard Webhooks grew from (Svix's
    /// documentation on verifying webhooks by hand).
    #[test]
    fn signatures_match_the_published_example() {
        assert_eq!(
            sign(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                r#"{"test": 2432232314}"#,
            )
            .unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
