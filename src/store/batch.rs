//! What a batch of newly stored callbacks does to outcomes and to the hourly counts, worked
//! out before it is written, so that each is one set-based statement.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use uuid::Uuid;

use crate::domain::callback::Callback;
use crate::domain::time::{Timestamp, from_micros, to_micros};

const HOUR_MICROS: i64 = 3_600_000_000;

/// The order in which events compete for their outcome: the greatest wins. The same rule
/// holds across batches (see the outcome upsert), so any split into batches and any arrival
/// order give the same outcome.
pub(super) fn wins(a: &Callback, b: &Callback) -> Ordering {
    (a.occurred_at, a.received_at, a.status.as_str()).cmp(&(
        b.occurred_at,
        b.received_at,
        b.status.as_str(),
    ))
}

/// One conversation's share of a batch, folded as the outcome upsert folds it into the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Folded {
    pub conversation_uuid: String,
    pub status: String,
    /// `received_at` of the event that gave `status`.
    pub status_received_at: Timestamp,
    pub occurred_at: Timestamp,
    /// From the greatest event that has one.
    pub agent_id: Option<String>,
    pub destination: Option<String>,
    pub call_id: Option<Uuid>,
    pub event_count: i64,
    pub first_received_at: Timestamp,
    pub last_received_at: Timestamp,
}

/// Folds newly stored callbacks per conversation, in conversation order (the order the
/// upsert takes its row locks in).
pub(super) fn fold(stored: &[&Callback]) -> Vec<Folded> {
    let mut by_conversation: BTreeMap<&str, Vec<&Callback>> = BTreeMap::new();
    for callback in stored {
        by_conversation
            .entry(callback.conversation_uuid.as_str())
            .or_default()
            .push(callback);
    }
    by_conversation
        .into_iter()
        .map(|(conversation, mut events)| {
            events.sort_by(|a, b| wins(b, a));
            let winner = events[0];
            Folded {
                conversation_uuid: conversation.to_owned(),
                status: winner.status.clone(),
                status_received_at: winner.received_at,
                occurred_at: winner.occurred_at,
                agent_id: events.iter().find_map(|e| e.agent_id.clone()),
                destination: events.iter().find_map(|e| e.to.clone()),
                call_id: events.iter().find_map(|e| e.call_id),
                event_count: events.len() as i64,
                first_received_at: events.iter().map(|e| e.received_at).min().unwrap(),
                last_received_at: events.iter().map(|e| e.received_at).max().unwrap(),
            }
        })
        .collect()
}

/// Where an outcome is counted in the hourly counts: the hour its `occurred_at` falls in,
/// its status and its agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct CountKey {
    pub hour: Timestamp,
    pub status: String,
    pub agent: String,
}

impl CountKey {
    pub fn new(occurred_at: Timestamp, status: String, agent_id: Option<&str>) -> Self {
        Self {
            hour: hour_of(occurred_at),
            status,
            agent: agent_key(agent_id),
        }
    }
}

/// How the hourly counts key an agent: `=` and the id, or empty for an outcome without one,
/// so that the key is never null.
pub(super) fn agent_key(agent_id: Option<&str>) -> String {
    agent_id.map(|id| format!("={id}")).unwrap_or_default()
}

/// Changes to the hourly counts, by key, in key order (the order their row locks are
/// taken in); keys whose changes cancel out are left out.
#[derive(Debug, Default)]
pub(super) struct CountChanges(BTreeMap<CountKey, i64>);

impl CountChanges {
    /// An outcome now counted under `now`, and before under `before` if it existed.
    pub fn moved(&mut self, before: Option<CountKey>, now: CountKey) {
        if before.as_ref() == Some(&now) {
            return;
        }
        if let Some(before) = before {
            *self.0.entry(before).or_default() -= 1;
        }
        *self.0.entry(now).or_default() += 1;
    }

    pub fn into_changes(self) -> Vec<(CountKey, i64)> {
        self.0.into_iter().filter(|(_, n)| *n != 0).collect()
    }
}

/// The start of the UTC hour `at` falls in.
pub(super) fn hour_of(at: Timestamp) -> Timestamp {
    from_micros(to_micros(&at).div_euclid(HOUR_MICROS) * HOUR_MICROS)
}

/// The start of the first UTC hour that begins at or after `at`.
pub(super) fn hour_from(at: Timestamp) -> Timestamp {
    let hour = hour_of(at);
    if hour == at {
        hour
    } else {
        from_micros(to_micros(&hour) + HOUR_MICROS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::callback::Callback;
    use crate::domain::time::parse_timestamp;

    fn callback(conversation: &str, status: &str, occurred: &str, received: &str) -> Callback {
        let body = format!(
            r#"{{"conversation_uuid":"{conversation}","status":"{status}","timestamp":"{occurred}"}}"#
        );
        Callback::parse(body.as_bytes(), None, parse_timestamp(received).unwrap()).unwrap()
    }

    #[test]
    fn the_greatest_event_wins_and_known_fields_come_from_the_greatest_that_has_them() {
        let mut early = callback(
            "CON-1",
            "busy",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:05Z",
        );
        early.agent_id = Some("agent-early".into());
        early.to = Some("111".into());
        let mut late = callback(
            "CON-1",
            "timeout",
            "2026-01-01T10:00:01Z",
            "2026-01-01T10:00:02Z",
        );
        late.to = Some("222".into());
        let other = callback(
            "CON-0",
            "failed",
            "2026-01-01T09:00:00Z",
            "2026-01-01T09:00:00Z",
        );

        let folded = fold(&[&early, &late, &other]);

        assert_eq!(folded.len(), 2);
        assert_eq!(folded[0].conversation_uuid, "CON-0");
        let one = &folded[1];
        assert_eq!(one.status, "timeout");
        assert_eq!(one.occurred_at, late.occurred_at);
        assert_eq!(one.status_received_at, late.received_at);
        assert_eq!(one.agent_id.as_deref(), Some("agent-early"));
        assert_eq!(one.destination.as_deref(), Some("222"));
        assert_eq!(one.event_count, 2);
        assert_eq!(one.first_received_at, late.received_at);
        assert_eq!(one.last_received_at, early.received_at);
    }

    #[test]
    fn ties_on_both_instants_go_to_the_bytewise_greatest_status() {
        let a = callback(
            "CON-1",
            "busy",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:00Z",
        );
        let b = callback(
            "CON-1",
            "Timeout",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:00Z",
        );
        assert_eq!(fold(&[&a, &b])[0].status, "busy");
        assert_eq!(fold(&[&b, &a])[0].status, "busy");
    }

    #[test]
    fn a_move_within_one_key_changes_nothing_and_a_move_across_keys_moves_one() {
        let at = parse_timestamp("2026-01-01T10:59:59.999999Z").unwrap();
        let next = parse_timestamp("2026-01-01T11:00:00Z").unwrap();
        let mut changes = CountChanges::default();
        changes.moved(None, CountKey::new(at, "busy".into(), Some("a")));
        changes.moved(
            Some(CountKey::new(at, "busy".into(), Some("a"))),
            CountKey::new(at, "busy".into(), Some("a")),
        );
        changes.moved(
            Some(CountKey::new(at, "busy".into(), None)),
            CountKey::new(next, "busy".into(), None),
        );
        let changes = changes.into_changes();
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[0].0.agent, "");
        assert_eq!(changes[0].1, -1);
        assert_eq!(changes[1].0.agent, "=a");
        assert_eq!(changes[1].1, 1);
        assert_eq!(changes[2].0.hour, next);
        assert_eq!(changes[2].1, 1);
    }

    #[test]
    fn hours_are_utc_hours_before_and_after_the_epoch() {
        let at = parse_timestamp("1969-12-31T23:30:00Z").unwrap();
        assert_eq!(
            hour_of(at),
            parse_timestamp("1969-12-31T23:00:00Z").unwrap()
        );
        assert_eq!(
            hour_from(at),
            parse_timestamp("1970-01-01T00:00:00Z").unwrap()
        );
        let whole = parse_timestamp("2026-01-01T10:00:00Z").unwrap();
        assert_eq!(hour_of(whole), whole);
        assert_eq!(hour_from(whole), whole);
    }
}
