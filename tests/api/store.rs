//! The store on its own, where the HTTP layer cannot reach: many transactions at once.

use std::sync::Arc;

use callhook::domain::callback::Callback;
use callhook::domain::time::now;

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(overlapping_batches_of_one_conversation_all_commit);

fn event(conversation: &str, status: &str, second: u32) -> Callback {
    let body = callback(
        conversation,
        status,
        &format!("2022-05-31T06:40:{second:02}.000Z"),
    );
    Callback::parse(body.to_string().as_bytes(), None, now()).unwrap()
}

/// Batches that share events of the same conversations, written concurrently, each in a
/// different order: every batch commits (no deadlock, no unique violation surfaces) and each
/// event is stored once. A lock-order bug shows in some passes only, so there are several.
async fn overlapping_batches_of_one_conversation_all_commit(backend: Backend) {
    let (url, _dir) = fresh_database(backend).await;
    let store = callhook::store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let statuses = ["busy", "timeout", "failed", "rejected"];
    for pass in 0..10 {
        let conversations = [format!("CON-{pass}-a"), format!("CON-{pass}-b")];
        let mut tasks = Vec::new();
        for round in 0..48usize {
            let mut batch: Vec<Callback> = Vec::new();
            for n in 0..3 {
                let pick = (round + n * (1 + round % 3)) % statuses.len();
                for conversation in &conversations {
                    batch.push(event(conversation, statuses[pick], pick as u32));
                }
            }
            if round % 2 == 1 {
                batch.reverse();
            }
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(
                async move { store.record_callbacks(&batch).await },
            ));
        }
        for task in tasks {
            task.await.unwrap().expect("every batch commits");
        }
        for conversation in &conversations {
            let outcome = store.outcome(conversation).await.unwrap().unwrap();
            assert_eq!(outcome.event_count, 4, "{conversation}");
            assert_eq!(outcome.status, "rejected", "{conversation}");
        }
    }
}
