//! The store on its own, where the HTTP layer cannot reach: many transactions at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use callhook::domain::callback::Callback;
use callhook::domain::outcome::Recorded;
use callhook::domain::page::PageRequest;
use callhook::domain::stats::StatsWindow;
use callhook::domain::time::{Timestamp, now, parse_timestamp};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    overlapping_batches_of_one_conversation_all_commit,
    a_batch_folds_like_its_events_one_by_one,
    stats_count_any_window_as_the_outcomes_stand,
    replicas_inferring_at_once_infer_each_call_once,
);

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

/// One batch holding several events of a conversation (and a repeat of one) gives the same
/// outcome as the same events written one at a time, and says which copy was stored.
async fn a_batch_folds_like_its_events_one_by_one(backend: Backend) {
    let (url, _dir) = fresh_database(backend).await;
    let store = callhook::store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let events = |conversation: &str| -> Vec<Callback> {
        [("busy", 10, "agent-1", "972500000001"), ("failed", 30, "agent-3", "972500000003"),
         ("timeout", 20, "agent-2", "972500000002"), ("busy", 10, "agent-x", "972500000009")]
            .into_iter()
            .map(|(status, second, agent, to)| {
                let body = serde_json::json!({"conversation_uuid": conversation, "status": status,
                    "timestamp": format!("2022-05-31T06:40:{second:02}Z"), "agent_id": agent, "to": to});
                Callback::parse(body.to_string().as_bytes(), None, now()).unwrap()
            })
            .collect()
    };
    let recorded = store.record_callbacks(&events("CON-batch")).await.unwrap();
    assert_eq!(
        recorded,
        [
            Recorded::Stored,
            Recorded::Stored,
            Recorded::Stored,
            Recorded::Duplicate
        ],
        "the first copy of a repeated key is the one stored"
    );
    for event in events("CON-single") {
        store.record_callbacks(&[event]).await.unwrap();
    }
    let batch = store.outcome("CON-batch").await.unwrap().unwrap();
    let single = store.outcome("CON-single").await.unwrap().unwrap();
    assert_eq!(batch.event_count, 3);
    for outcome in [&batch, &single] {
        assert_eq!(outcome.event_count, 3);
        assert_eq!(outcome.status, "failed");
        assert_eq!(
            outcome.agent_id.as_deref(),
            Some("agent-3"),
            "the winner's fields"
        );
        assert_eq!(outcome.to.as_deref(), Some("972500000003"));
        assert_eq!(outcome.occurred_at, single.occurred_at);
        assert!(outcome.first_received_at <= outcome.last_received_at);
    }
    let statuses = |o: &callhook::domain::outcome::Outcome| -> Vec<String> {
        o.events
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.status.clone())
            .collect()
    };
    assert_eq!(statuses(&batch), statuses(&single));
}

/// The hourly counts behind `/v1/stats` agree with the outcomes themselves for windows that
/// cut hours anywhere, with and without an agent, after concurrent batches have moved
/// outcomes across statuses, agents and hours (a later event can win from the next hour).
async fn stats_count_any_window_as_the_outcomes_stand(backend: Backend) {
    let (url, _dir) = fresh_database(backend).await;
    let store = callhook::store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let start = parse_timestamp("2026-03-01T10:00:00Z").unwrap();
    let statuses = ["busy", "timeout", "failed", "rejected", "cancelled"];
    let mut seed: u64 = 7;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut batches: Vec<Vec<Callback>> = vec![Vec::new(); 24];
    for n in 0..600u64 {
        let conversation = format!("CON-{}", next(120));
        let minute = next(4 * 60) as i64;
        let mut body = serde_json::json!({
            "conversation_uuid": conversation,
            "status": statuses[next(5) as usize],
            "timestamp": callhook::domain::time::format_timestamp(
                &(start + chrono::Duration::minutes(minute) + chrono::Duration::milliseconds(n as i64))),
        });
        if next(4) > 0 {
            body["agent_id"] = format!("agent-{}", next(3)).into();
        }
        let callback = Callback::parse(body.to_string().as_bytes(), None, now()).unwrap();
        batches[next(24) as usize].push(callback);
    }
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.record_callbacks(&batch).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect("every batch commits");
    }
    let outcomes = store
        .outcomes(
            &Default::default(),
            &PageRequest {
                limit: 1000,
                after: None,
            },
        )
        .await
        .unwrap()
        .items;
    assert!(outcomes.len() > 100);
    let at = |minutes: i64| {
        start + chrono::Duration::minutes(minutes) + chrono::Duration::seconds(minutes % 7)
    };
    let windows: Vec<(Timestamp, Timestamp)> = vec![
        (at(0), at(240)),
        (at(-60), at(300)),
        (at(13), at(197)),
        (at(60), at(120)),
        (at(61), at(119)),
        (at(5), at(50)),
        (at(59), at(61)),
        (at(100), at(100)),
    ];
    for (since, until) in windows {
        for agent_id in [None, Some("agent-1".to_owned())] {
            let mut expected: BTreeMap<String, i64> = BTreeMap::new();
            for o in &outcomes {
                if o.occurred_at >= since
                    && o.occurred_at < until
                    && (agent_id.is_none() || o.agent_id == agent_id)
                {
                    *expected.entry(o.status.clone()).or_default() += 1;
                }
            }
            let window = StatsWindow {
                since,
                until,
                agent_id: agent_id.clone(),
            };
            let stats = store.stats(&window).await.unwrap();
            assert_eq!(
                stats.outcomes, expected,
                "{since} .. {until}, agent {agent_id:?}"
            );
        }
    }
}

/// Several replicas (two stores, two tasks each) inferring at once on one database infer each
/// call exactly once, and never a call a callback has decided.
async fn replicas_inferring_at_once_infer_each_call_once(backend: Backend) {
    use callhook::domain::call::CallState;
    use callhook::store::{CallResult, NewCall};
    let (url, _dir) = fresh_database(backend).await;
    let first = callhook::store::connect(&url).await.unwrap();
    first.migrate().await.unwrap();
    let second = callhook::store::connect(&url).await.unwrap();
    let long_ago = now() - std::time::Duration::from_secs(60);
    let mut ids = Vec::new();
    for n in 0..300 {
        let id = uuid::Uuid::now_v7();
        first
            .insert_call(&NewCall {
                id,
                agent_id: "agent".into(),
                to: format!("97254{n:07}"),
                region: "eu".parse().unwrap(),
                hangup_on_answer_machine: false,
                session_parameters: Vec::new(),
                metadata: None,
                status_url: format!("https://callhook.example.com/v1/status/calls/{id}/sig"),
                campaign_id: None,
                destination_index: None,
                attempt: 1,
                created_at: long_ago,
            })
            .await
            .unwrap();
        let initiated = CallResult {
            state: CallState::Initiated,
            session_id: Some("session".into()),
            session_start_time: None,
            error: None,
            at: long_ago,
        };
        first.finish_call(id, &initiated).await.unwrap();
        ids.push(id);
    }
    let decided = ids[7];
    let body = callback("CON-decided", "busy", "2026-12-01T10:00:00Z");
    let busy = Callback::parse(body.to_string().as_bytes(), Some(decided), now()).unwrap();
    first.record_callbacks(&[busy]).await.unwrap();

    let tasks: Vec<_> = [&first, &first, &second, &second]
        .into_iter()
        .map(|store| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let mut inferred = Vec::new();
                loop {
                    let at = now();
                    let round = store
                        .infer_answered(at - std::time::Duration::from_secs(10), at, 7)
                        .await
                        .unwrap();
                    if round.is_empty() {
                        return inferred;
                    }
                    inferred.extend(round);
                }
            })
        })
        .collect();
    let mut inferred = Vec::new();
    for task in tasks {
        inferred.extend(task.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = inferred.iter().collect();
    assert_eq!(unique.len(), inferred.len(), "a call was inferred twice");
    assert_eq!(inferred.len(), ids.len() - 1);
    assert!(!unique.contains(&decided), "a decided call was inferred");
    assert_eq!(first.calls_awaiting_result().await.unwrap(), 0);
    let call = first.call(decided).await.unwrap().unwrap();
    assert_eq!(call.result.as_deref(), Some("busy"));
}

/// On PostgreSQL, replicas on several hosts read webhook leases on the database's clock: one
/// whose own clock runs an hour behind still claims what is due, and one an hour ahead
/// neither takes over the lease nor sees the delivery as idle for a manual retry. (SQLite's
/// database is on the service's one host, whose clock is the service's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_leases_run_on_the_database_clock() {
    use callhook::domain::webhook::NewSubscription;
    use callhook::store::webhooks::{Retried, SubscriptionRecord};
    use std::time::Duration;

    let (url, _dir) = fresh_database(Backend::Postgres).await;
    let store = callhook::store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let subscription =
        NewSubscription::parse(&serde_json::json!({"url": "https://crm.example.com/hooks"}))
            .unwrap();
    let record = SubscriptionRecord {
        id: uuid::Uuid::now_v7(),
        subscription: &subscription,
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        now: now(),
    };
    store.webhooks().create_subscription(&record).await.unwrap();
    store
        .record_callbacks(&[event("CON-lease", "busy", 1)])
        .await
        .unwrap();

    let lease = Duration::from_secs(60);
    let behind = now() - chrono::Duration::hours(1);
    let claimed = store
        .webhooks()
        .claim_deliveries(record.id, 10, behind, lease)
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        1,
        "a replica whose clock is behind claims what is due"
    );
    let ahead = now() + chrono::Duration::hours(1);
    let again = store
        .webhooks()
        .claim_deliveries(record.id, 10, ahead, lease)
        .await
        .unwrap();
    assert!(
        again.is_empty(),
        "a replica whose clock is ahead took over a running lease"
    );
    assert_eq!(
        store
            .webhooks()
            .retry_delivery(record.id, claimed[0].id, ahead)
            .await
            .unwrap(),
        Retried::InFlight
    );
}
