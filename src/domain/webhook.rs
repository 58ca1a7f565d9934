//! Outgoing webhooks: subscriptions, the events they receive, and each delivery's state.

use std::time::Duration;

use base64::Engine;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::FieldError;
use super::time::{self, Timestamp};

const MAX_URL_LEN: usize = 2048;
const MAX_DESCRIPTION_LEN: usize = 500;
/// Bytes of a generated signing key.
const SECRET_BYTES: usize = 24;
pub const SECRET_PREFIX: &str = "whsec_";
/// Most subscriptions kept at once.
pub const MAX_SUBSCRIPTIONS: i64 = 50;

/// What a subscription can be told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
pub enum EventType {
    /// A stored callback changed a conversation's outcome; data: the outcome, without events.
    #[serde(rename = "outcome.updated")]
    OutcomeUpdated,
    /// A call's result was set or changed; data: the call with its outcome.
    #[serde(rename = "call.result")]
    CallResult,
    /// A campaign completed; data: the campaign.
    #[serde(rename = "campaign.completed")]
    CampaignCompleted,
}

impl EventType {
    pub const ALL: [Self; 3] = [
        Self::OutcomeUpdated,
        Self::CallResult,
        Self::CampaignCompleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutcomeUpdated => "outcome.updated",
            Self::CallResult => "call.result",
            Self::CampaignCompleted => "campaign.completed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

/// A subscription as the API shows it: never with its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscription {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    /// False once the receiver answered `410 Gone`, or when stopped by `PATCH`: no events
    /// are written for it and nothing is sent.
    pub enabled: bool,
    /// Why it is disabled: `gone` (the receiver answered 410; its pending deliveries
    /// failed) or `disabled` (stopped by `PATCH`; its pending deliveries wait).
    pub disabled_reason: Option<String>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// The answer to creating a subscription: the only one that shows its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedSubscription {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// `whsec_` and the base64 of the signing key: keep it, it is not shown again.
    pub secret: String,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet delivered: due at `next_attempt_at`.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Every attempt failed, or the receiver answered 410.
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [Self; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// One event sent, or to be sent, to one subscription.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    /// The `webhook-id` header of every attempt.
    pub id: Uuid,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// The HTTP status of the last attempt, absent when none came.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When a pending delivery is next attempted.
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<Timestamp>,
}

/// A valid body of `POST /v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub url: reqwest::Url,
    pub events: Vec<EventType>,
    pub description: Option<String>,
}

/// The body of `POST /v1/webhooks`, as documented.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CreateSubscription {
    /// An `http(s)` URL; loopback and private addresses are refused unless
    /// `CALLHOOK_WEBHOOK_ALLOW_PRIVATE` is set.
    url: String,
    /// The event types to receive; all of them when absent.
    events: Option<Vec<EventType>>,
    description: Option<String>,
}

impl NewSubscription {
    /// Validates every field, reporting all that are wrong at once.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let Value::Object(fields) = body else {
            return Err(vec![FieldError::new("body", "must be a JSON object")]);
        };
        let mut errors = Vec::new();
        let url = url(fields, &mut errors);
        let events = events(fields, &mut errors);
        let description = description(fields, &mut errors);
        unknown_fields(fields, &["url", "events", "description"], &mut errors);
        match (url, errors.is_empty()) {
            (Some(url), true) => Ok(Self {
                url,
                events,
                description,
            }),
            _ => Err(errors),
        }
    }
}

/// A valid body of `PATCH /v1/webhooks/{id}`: only the fields it names change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionUpdate {
    pub url: Option<reqwest::Url>,
    pub events: Option<Vec<EventType>>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// `true` enables a subscription again (one disabled by a 410 too); `false` stops its
    /// events and deliveries until then.
    pub enabled: Option<bool>,
}

/// The body of `PATCH /v1/webhooks/{id}`, as documented.
#[derive(ToSchema)]
#[allow(dead_code)] // read by the OpenAPI document only; `SubscriptionUpdate::parse` reads the body
pub struct UpdateSubscription {
    url: Option<String>,
    events: Option<Vec<EventType>>,
    description: Option<String>,
    enabled: Option<bool>,
}

impl SubscriptionUpdate {
    /// Validates every field given, reporting all that are wrong at once.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let Value::Object(fields) = body else {
            return Err(vec![FieldError::new("body", "must be a JSON object")]);
        };
        let mut errors = Vec::new();
        let mut update = Self::default();
        if fields.contains_key("url") {
            update.url = url(fields, &mut errors);
        }
        if fields.contains_key("events") {
            update.events = Some(events(fields, &mut errors));
        }
        if fields.contains_key("description") {
            update.description = Some(description(fields, &mut errors));
        }
        match fields.get("enabled") {
            None => {}
            Some(Value::Bool(enabled)) => update.enabled = Some(*enabled),
            Some(_) => errors.push(FieldError::new("enabled", "must be true or false")),
        }
        unknown_fields(
            fields,
            &["url", "events", "description", "enabled"],
            &mut errors,
        );
        if errors.is_empty() {
            Ok(update)
        } else {
            Err(errors)
        }
    }
}

fn description(fields: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<String> {
    match fields.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.chars().count() <= MAX_DESCRIPTION_LEN => {
            Some(text.clone())
        }
        Some(Value::String(_)) => {
            errors.push(FieldError::new(
                "description",
                format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
            ));
            None
        }
        Some(_) => {
            errors.push(FieldError::new("description", "must be a string"));
            None
        }
    }
}

fn unknown_fields(fields: &Map<String, Value>, known: &[&str], errors: &mut Vec<FieldError>) {
    for name in fields.keys() {
        if !known.contains(&name.as_str()) {
            errors.push(FieldError::new(name.as_str(), "is not a known field"));
        }
    }
}

fn url(fields: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<reqwest::Url> {
    let raw = match fields.get("url") {
        Some(Value::String(raw)) => raw.trim(),
        None | Some(Value::Null) => {
            errors.push(FieldError::new("url", "is required"));
            return None;
        }
        Some(_) => {
            errors.push(FieldError::new("url", "must be a string"));
            return None;
        }
    };
    let refuse = |errors: &mut Vec<FieldError>, message: &str| {
        errors.push(FieldError::new("url", message));
        None
    };
    if raw.len() > MAX_URL_LEN {
        return refuse(errors, "must be at most 2048 characters");
    }
    let Ok(url) = reqwest::Url::parse(raw) else {
        return refuse(errors, "must be an absolute http:// or https:// URL");
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return refuse(errors, "must be an absolute http:// or https:// URL");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse(
            errors,
            "must not carry credentials: deliveries are signed instead",
        );
    }
    if url.fragment().is_some() {
        return refuse(errors, "must not have a fragment");
    }
    Some(url)
}

fn events(fields: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Vec<EventType> {
    let list = match fields.get("events") {
        None | Some(Value::Null) => return EventType::ALL.to_vec(),
        Some(Value::Array(list)) if list.is_empty() => {
            errors.push(FieldError::new(
                "events",
                "must name at least one event type, or be left out for all",
            ));
            return Vec::new();
        }
        Some(Value::Array(list)) => list,
        Some(_) => {
            errors.push(FieldError::new("events", "must be an array of event types"));
            return Vec::new();
        }
    };
    let mut events = Vec::new();
    for (i, item) in list.iter().enumerate() {
        match item.as_str().and_then(EventType::parse) {
            Some(event) => events.push(event),
            None => errors.push(FieldError::new(
                format!("events[{i}]"),
                "must be outcome.updated, call.result or campaign.completed",
            )),
        }
    }
    events.sort();
    events.dedup();
    events
}

/// A new signing secret: `whsec_` and the base64 of random bytes.
pub fn new_secret() -> String {
    let key: [u8; SECRET_BYTES] = rand::rng().random();
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// The body of a delivery: `{"type", "timestamp", "data"}`.
pub fn envelope(event_type: EventType, at: Timestamp, data: &impl Serialize) -> String {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        timestamp: String,
        data: &'a T,
    }
    serde_json::to_string(&Envelope {
        kind: event_type.as_str(),
        timestamp: time::format_timestamp(&at),
        data,
    })
    .expect("event data serializes")
}

/// The waits between a failed delivery's attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl RetrySchedule {
    pub const DEFAULT: &'static str = "5,300,1800,7200,18000,36000,36000";

    /// Comma-separated seconds; empty for no retries.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(Self(Vec::new()));
        }
        raw.split(',')
            .map(|part| {
                let part = part.trim();
                part.parse::<f64>()
                    .ok()
                    .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
                    .filter(|d| *d <= Duration::from_secs(7 * 24 * 60 * 60))
                    .ok_or_else(|| {
                        format!(
                            "{part:?} is not a number of seconds from 0 to 604800; \
                             expected e.g. {}",
                            Self::DEFAULT
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// How long to wait after the `attempts`-th failed attempt (counting from 1), with up to
    /// a tenth either way of jitter so that failures spread out; `None`: no attempt is left.
    pub fn after(&self, attempts: u32) -> Option<Duration> {
        let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
        let wait = *self.0.get(index)?;
        Some(wait.mul_f64(rand::rng().random_range(0.9..=1.1)))
    }

    pub fn retries(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn events_default_to_all_and_are_kept_once_in_order() {
        let all = NewSubscription::parse(&json!({"url": "https://crm.example.com/hooks"})).unwrap();
        assert_eq!(all.events, EventType::ALL);
        let some = NewSubscription::parse(&json!({
            "url": "https://crm.example.com/hooks",
            "events": ["campaign.completed", "call.result", "call.result"],
        }))
        .unwrap();
        assert_eq!(
            some.events,
            [EventType::CallResult, EventType::CampaignCompleted]
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let errors = NewSubscription::parse(&json!({
            "url": "ftp://example.com/x",
            "events": ["call.result", "call.answered"],
            "description": 3,
            "secret": "mine",
        }))
        .unwrap_err();
        assert_eq!(
            fields(errors),
            ["url", "events[1]", "description", "secret"]
        );
        for url in [
            "not a url",
            "/relative",
            "https://user:pw@example.com/",
            "https://example.com/#x",
        ] {
            assert_eq!(
                fields(NewSubscription::parse(&json!({"url": url})).unwrap_err()),
                ["url"],
                "{url}"
            );
        }
        assert_eq!(
            fields(
                NewSubscription::parse(&json!({"url": "https://a.example", "events": []}))
                    .unwrap_err()
            ),
            ["events"]
        );
    }

    #[test]
    fn the_schedule_is_parsed_and_each_wait_jittered_within_a_tenth() {
        let schedule = RetrySchedule::parse(RetrySchedule::DEFAULT).unwrap();
        assert_eq!(schedule.retries(), 7);
        for _ in 0..100 {
            let wait = schedule.after(2).unwrap().as_secs_f64();
            assert!((270.0..=330.0).contains(&wait), "{wait}");
        }
        assert_eq!(schedule.after(8), None);
        assert_eq!(schedule.after(0), None);
        assert_eq!(RetrySchedule::parse("").unwrap().retries(), 0);
        assert!(RetrySchedule::parse("5,x").is_err());
        assert!(RetrySchedule::parse("-1").is_err());
    }

    #[test]
    fn a_secret_is_prefixed_base64_of_24_bytes() {
        let secret = new_secret();
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix(SECRET_PREFIX).unwrap())
            .unwrap();
        assert_eq!(key.len(), SECRET_BYTES);
        assert_ne!(new_secret(), secret);
    }
}
