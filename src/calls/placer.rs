//! Placing a call: record the attempt, ask AI Studio, record what it answered.

use std::sync::Arc;

use secrecy::SecretString;
use uuid::Uuid;

use super::status_url::StatusUrlSigner;
use crate::domain::call::{Call, CallState, UpstreamError};
use crate::domain::call_request::CallRequest;
use crate::domain::time::{now, parse_timestamp};
use crate::store::{CallResult, NewCall, Store, StoreError};
use crate::upstream::{AiStudioClient, Failure, MakeCall, Region};

#[derive(Debug)]
pub enum PlaceError {
    /// The service cannot place calls as configured (no key, no public URL).
    NotConfigured(&'static str),
    /// The attempt could not be recorded, so AI Studio was not asked: nothing was placed.
    Store(StoreError),
    /// AI Studio was asked, but its answer could not be recorded: the call may have been
    /// placed, and a retry could ring the person twice.
    Unrecorded { call_id: Uuid, error: StoreError },
}

impl From<StoreError> for PlaceError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

/// The recorded call, and the failure when it was not initiated.
#[derive(Debug)]
pub struct Placement {
    pub call: Call,
    pub failure: Option<Failure>,
}

pub struct CallPlacer {
    client: Option<AiStudioClient>,
    public_url: Option<String>,
    region: Region,
    signer: StatusUrlSigner,
    store: Arc<dyn Store>,
}

impl CallPlacer {
    pub fn new(
        store: Arc<dyn Store>,
        signer: StatusUrlSigner,
        key: Option<SecretString>,
        base_url: &str,
        region: Region,
        public_url: Option<String>,
        timeout: std::time::Duration,
    ) -> Self {
        Self {
            client: key.map(|key| AiStudioClient::new(base_url, key, timeout)),
            public_url,
            region,
            signer,
            store,
        }
    }

    /// The configured external base URL, when there is one.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// Signs and verifies the status URL of each placed call.
    pub fn signer(&self) -> &StatusUrlSigner {
        &self.signer
    }

    /// The AI Studio client, when a key is configured.
    pub fn upstream(&self) -> Option<&AiStudioClient> {
        self.client.as_ref()
    }

    /// The region calls are placed in.
    pub fn region(&self) -> Region {
        self.region
    }

    /// Fails when calls cannot be placed at all, before any record is made.
    pub fn check_configured(&self) -> Result<(), PlaceError> {
        self.client().map(|_| ())
    }

    fn client(&self) -> Result<&AiStudioClient, PlaceError> {
        self.client.as_ref().ok_or(PlaceError::NotConfigured(
            "VGAI_API_KEY is not set: callhook cannot place calls",
        ))
    }

    /// Records the attempt (as `unknown` until upstream answers), places the call with a
    /// status URL under `status_base`, and records the answer. A call whose fate is unknown is
    /// never retried here.
    pub async fn place(
        &self,
        request: CallRequest,
        status_base: &str,
    ) -> Result<Placement, PlaceError> {
        let client = self.client()?;
        let id = Uuid::now_v7();
        let status_url = format!("{status_base}{}", self.signer.path(id));
        self.store
            .insert_call(&NewCall {
                id,
                agent_id: request.agent_id.clone(),
                to: request.to.to_string(),
                region: self.region,
                hangup_on_answer_machine: request.hangup_on_answer_machine,
                session_parameters: request.session_parameters.clone(),
                metadata: request.metadata.clone(),
                status_url: status_url.clone(),
                campaign_id: None,
                destination_index: None,
                attempt: 1,
                created_at: now(),
            })
            .await?;
        let answer = client
            .make_call(&MakeCall {
                agent_id: &request.agent_id,
                to: request.to.as_str(),
                status_url: &status_url,
                hangup_on_answer_machine: request.hangup_on_answer_machine.then_some(true),
                session_parameters: &request.session_parameters,
            })
            .await;
        let result = outcome_of(&answer);
        let failure = answer.err();
        if let Some(failure) = &failure {
            log_failure(id, &request.agent_id, failure);
        }
        metrics::counter!("callhook_calls_total", "state" => result.state.as_str()).increment(1);
        let recorded = async {
            self.store.finish_call(id, &result).await?;
            self.store
                .call(id)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("call {id} vanished after insert")))
        };
        match recorded.await {
            Ok(call) => Ok(Placement { call, failure }),
            Err(error) => Err(PlaceError::Unrecorded { call_id: id, error }),
        }
    }
}

/// One line per call that AI Studio did not initiate, with what it said (already redacted).
fn log_failure(call_id: Uuid, agent_id: &str, failure: &Failure) {
    match failure {
        Failure::Refused {
            status, message, ..
        } => tracing::warn!(%call_id, agent_id, upstream_status = status, reason = %message,
            "AI Studio refused the call"),
        Failure::Unreachable(reason) => tracing::warn!(%call_id, agent_id, %reason,
            "AI Studio could not be reached; the call was not placed"),
        Failure::Timeout => tracing::warn!(%call_id, agent_id, reason = "timeout",
            "AI Studio did not answer in time; the call may have been placed and is not retried"),
        Failure::Interrupted(reason) => tracing::warn!(%call_id, agent_id, %reason,
            "the exchange with AI Studio broke off; the call may have been placed and is not retried"),
        Failure::UnreadableAnswer(status) => {
            tracing::warn!(%call_id, agent_id, upstream_status = status,
            reason = UNREADABLE_ANSWER, "the call may have been placed and is not retried")
        }
    }
}

/// What to record of AI Studio's answer.
pub(crate) fn outcome_of(answer: &Result<crate::upstream::Accepted, Failure>) -> CallResult {
    let at = now();
    let failed = |state, status: Option<u16>, message: &str| CallResult {
        state,
        session_id: None,
        session_start_time: None,
        error: Some(UpstreamError {
            status,
            message: message.to_owned(),
        }),
        at,
    };
    match answer {
        Ok(accepted) => CallResult {
            state: CallState::Initiated,
            session_start_time: accepted
                .session_start_time
                .as_deref()
                .and_then(parse_timestamp),
            session_id: Some(accepted.session_id.clone()),
            error: None,
            at,
        },
        Err(Failure::Refused {
            status, message, ..
        }) => {
            let state = if *status >= 500 {
                CallState::Failed
            } else {
                CallState::Rejected
            };
            failed(state, Some(*status), message)
        }
        Err(Failure::Unreachable(message)) => failed(CallState::Failed, None, message),
        Err(Failure::Timeout) => {
            failed(CallState::Unknown, None, "AI Studio did not answer in time")
        }
        Err(Failure::Interrupted(message)) => failed(CallState::Unknown, None, message),
        Err(Failure::UnreadableAnswer(status)) => {
            failed(CallState::Unknown, Some(*status), UNREADABLE_ANSWER)
        }
    }
}

/// What is recorded, and said, when AI Studio's yes cannot be read.
pub const UNREADABLE_ANSWER: &str = "AI Studio accepted the request but its answer was unreadable";
