//! Delivering the status callbacks of an accepted call to its `status_url`, once each.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use uuid::Uuid;

use super::Simulator;
use super::make_call::AcceptedCall;

/// A simulated call whose callbacks have all been delivered (or that was answered).
#[derive(Debug, Clone)]
pub struct CallFinished {
    pub session_id: Uuid,
    pub conversation_uuid: String,
    pub agent_id: String,
    pub to: String,
    /// In delivery order; empty for an answered call or a call without `status_url`.
    pub callbacks: Vec<Delivered>,
}

/// One delivered callback and what the receiver answered.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub status: String,
    pub timestamp: String,
    /// The receiver's HTTP status, or why no answer came.
    pub response: Result<u16, String>,
}

/// Waits the configured delay, then POSTs each planned callback in order, never retrying.
pub(super) async fn deliver(simulator: Simulator, call: AcceptedCall) {
    tokio::time::sleep(simulator.callback_delay()).await;
    let plan = simulator.plan(&call.request.to);
    let mut callbacks = Vec::with_capacity(plan.len());
    match &call.request.status_url {
        None if !plan.is_empty() => tracing::info!(
            session_id = %call.session_id,
            "no status_url given: {} callback(s) not sent",
            plan.len()
        ),
        None => {}
        Some(url) => {
            let now = Utc::now();
            for event in plan {
                let timestamp =
                    format_timestamp(now - TimeDelta::milliseconds(event.earlier_by_ms));
                let body = json!({
                    "agent_id": call.request.agent_id,
                    "to": call.request.to,
                    "conversation_uuid": call.conversation_uuid,
                    "status": event.status,
                    "timestamp": timestamp,
                });
                let response = match simulator.http().post(url).json(&body).send().await {
                    Ok(response) => Ok(response.status().as_u16()),
                    // The URL may carry a secret: it stays out of the message.
                    Err(err) => Err(err.without_url().to_string()),
                };
                match &response {
                    Ok(code) => tracing::info!(
                        conversation_uuid = %call.conversation_uuid,
                        status = event.status,
                        %timestamp,
                        answered = code,
                        "status callback delivered"
                    ),
                    Err(err) => tracing::warn!(
                        conversation_uuid = %call.conversation_uuid,
                        status = event.status,
                        error = %err,
                        "status callback not delivered (not retried)"
                    ),
                }
                callbacks.push(Delivered {
                    status: event.status.to_owned(),
                    timestamp,
                    response,
                });
            }
        }
    }
    simulator.finished(CallFinished {
        session_id: call.session_id,
        conversation_uuid: call.conversation_uuid,
        agent_id: call.request.agent_id,
        to: call.request.to,
        callbacks,
    });
}

/// The platform's callback timestamp: UTC with milliseconds and a `Z`.
fn format_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
