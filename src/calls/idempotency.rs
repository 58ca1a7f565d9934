//! `Idempotency-Key`: claim the key, do the work once, keep its whole answer; a retry with
//! the same key and body gets that answer again, and nothing is done twice.

use std::future::Future;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::time::now;
use crate::store::{Claim, Store, StoreError, StoredAnswer};

/// What became of a request with an `Idempotency-Key`.
#[derive(Debug)]
pub enum Once {
    /// The work ran now; this is its answer, kept for the key.
    Done(StoredAnswer),
    /// The key already had this answer.
    Replayed(StoredAnswer),
    /// The key was used with another request body.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
}

/// Runs `work` unless `key` already has an answer. `work` fails only when it did nothing
/// that cannot be undone (AI Studio was not asked): then the key is freed. Once it answers,
/// the key keeps the answer, whatever it is, so that a retry never rings anybody twice.
pub async fn once<E: From<StoreError>>(
    store: &dyn Store,
    key: &str,
    request_hash: &str,
    work: impl Future<Output = Result<StoredAnswer, E>>,
) -> Result<Once, E> {
    match store
        .claim_idempotency_key(key, request_hash, now())
        .await?
    {
        Claim::Claimed => {}
        Claim::Completed(answer) => return Ok(Once::Replayed(answer)),
        Claim::Mismatch => return Ok(Once::Mismatch),
        Claim::InProgress => return Ok(Once::InProgress),
    }
    let answer = match work.await {
        Ok(answer) => answer,
        Err(err) => {
            store.release_idempotency_key(key).await?;
            return Err(err);
        }
    };
    // Should keeping the answer fail, the key stays "in progress" (409 until it expires),
    // and this client still gets the answer.
    if let Err(err) = store.complete_idempotency_key(key, &answer).await {
        tracing::error!(error = %err, "could not store the answer of an Idempotency-Key");
    }
    Ok(Once::Done(answer))
}

/// A digest of a JSON request body that ignores key order and whitespace: the same request
/// sent again hashes the same.
pub fn request_hash(body: &Value) -> String {
    fn canonical(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), canonical(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    hex::encode(Sha256::digest(canonical(body).to_string().as_bytes()))
}
