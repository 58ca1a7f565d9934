//! What a batch of newly stored callbacks does to outcomes and to the hourly counts, worked
//! out before it is written, so that each is one set-based statement.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use uuid::Uuid;

use crate::domain::callback::Callback;
use crate::domain::stats::BucketWidth;
use crate::domain::time::Timestamp;

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

/// The callback of a batch that decides its call's result: per call, the greatest by the
/// outcome rule.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallResultOf<'a> {
    pub call_id: Uuid,
    pub callback: &'a Callback,
}

/// The deciding callback of each call the batch has callbacks for, in call id order (the
/// order the update takes its row locks in).
pub(super) fn call_results<'a>(stored: &[&'a Callback]) -> Vec<CallResultOf<'a>> {
    let mut by_call: BTreeMap<Uuid, &'a Callback> = BTreeMap::new();
    for &callback in stored {
        let Some(call_id) = callback.call_id else {
            continue;
        };
        by_call
            .entry(call_id)
            .and_modify(|best| {
                if wins(callback, best).is_gt() {
                    *best = callback;
                }
            })
            .or_insert(callback);
    }
    by_call
        .into_iter()
        .map(|(call_id, callback)| CallResultOf { call_id, callback })
        .collect()
}

/// The widths of the buckets outcomes are counted in: hours for the bulk of a window, minutes
/// for its partial hours, so that only its partial minutes are counted row by row.
pub(super) const WIDTHS: [Width; 2] = [Width::Hour, Width::Minute];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Width {
    Hour,
    Minute,
}

impl Width {
    /// The same width as the API names it, which does the arithmetic.
    fn bucket(self) -> BucketWidth {
        match self {
            Self::Hour => BucketWidth::Hour,
            Self::Minute => BucketWidth::Minute,
        }
    }

    /// How the counts table keys the width: its length in minutes.
    pub fn minutes(self) -> i64 {
        self.bucket().seconds() / 60
    }

    /// The start of the bucket `at` falls in.
    pub fn floor(self, at: Timestamp) -> Timestamp {
        self.bucket().floor(at)
    }

    /// The start of the first bucket that begins at or after `at`.
    pub fn ceil(self, at: Timestamp) -> Timestamp {
        self.bucket().ceil(at)
    }
}

impl From<BucketWidth> for Width {
    fn from(width: BucketWidth) -> Self {
        match width {
            BucketWidth::Hour => Self::Hour,
            BucketWidth::Minute => Self::Minute,
        }
    }
}

/// Where an outcome is counted: a bucket of its `occurred_at`, its status and its agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct CountKey {
    pub width: Width,
    pub bucket: Timestamp,
    pub status: String,
    pub agent: String,
}

/// How the counts key an agent: `=` and the id, or empty for an outcome without one, so that
/// the key is never null.
pub(super) fn agent_key(agent_id: Option<&str>) -> String {
    agent_id.map(|id| format!("={id}")).unwrap_or_default()
}

/// Where an outcome is counted: its `occurred_at`, status and agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Counted {
    pub occurred_at: Timestamp,
    pub status: String,
    pub agent_id: Option<String>,
}

impl Counted {
    fn keys(&self) -> impl Iterator<Item = CountKey> + '_ {
        WIDTHS.into_iter().map(|width| CountKey {
            width,
            bucket: width.floor(self.occurred_at),
            status: self.status.clone(),
            agent: agent_key(self.agent_id.as_deref()),
        })
    }
}

/// Changes to the counts, by key, in key order (the order their row locks are taken in);
/// keys whose changes cancel out are left out.
#[derive(Debug, Default)]
pub(super) struct CountChanges(BTreeMap<CountKey, i64>);

impl CountChanges {
    /// An outcome now counted as `now`, and before as `before` if it existed.
    pub fn moved(&mut self, before: Option<Counted>, now: Counted) {
        if let Some(before) = before {
            for key in before.keys() {
                *self.0.entry(key).or_default() -= 1;
            }
        }
        for key in now.keys() {
            *self.0.entry(key).or_default() += 1;
        }
    }

    pub fn into_changes(self) -> Vec<(CountKey, i64)> {
        self.0.into_iter().filter(|(_, n)| *n != 0).collect()
    }
}

/// A part of a stats window `[since, until)`: whole buckets of one width, or what lies
/// between bucket edges and is counted from the outcomes themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WindowPart {
    Buckets(Width, Timestamp, Timestamp),
    Rows(Timestamp, Timestamp),
}

/// Splits a window into whole hours, the whole minutes around them and the partial minutes
/// at either end, leaving out empty parts.
pub(super) fn window_parts(since: Timestamp, until: Timestamp) -> Vec<WindowPart> {
    let (first_minute, last_minute) = (Width::Minute.ceil(since), Width::Minute.floor(until));
    if first_minute >= last_minute {
        return vec![WindowPart::Rows(since, until)];
    }
    let (first_hour, last_hour) = (Width::Hour.ceil(since), Width::Hour.floor(until));
    let mut parts = vec![WindowPart::Rows(since, first_minute)];
    if first_hour < last_hour {
        parts.push(WindowPart::Buckets(Width::Minute, first_minute, first_hour));
        parts.push(WindowPart::Buckets(Width::Hour, first_hour, last_hour));
        parts.push(WindowPart::Buckets(Width::Minute, last_hour, last_minute));
    } else {
        parts.push(WindowPart::Buckets(
            Width::Minute,
            first_minute,
            last_minute,
        ));
    }
    parts.push(WindowPart::Rows(last_minute, until));
    parts.retain(|part| match part {
        WindowPart::Buckets(_, a, b) | WindowPart::Rows(a, b) => a < b,
    });
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::callback::Callback;
    use crate::domain::time::{format_timestamp, parse_timestamp};

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

    fn counted(at: &str, status: &str, agent: Option<&str>) -> Counted {
        Counted {
            occurred_at: parse_timestamp(at).unwrap(),
            status: status.into(),
            agent_id: agent.map(str::to_owned),
        }
    }

    #[test]
    fn a_move_within_one_bucket_changes_nothing_and_across_buckets_moves_one_in_each_width() {
        let mut changes = CountChanges::default();
        changes.moved(None, counted("2026-01-01T10:59:59.9Z", "busy", Some("a")));
        changes.moved(
            Some(counted("2026-01-01T10:59:59.9Z", "busy", Some("a"))),
            counted("2026-01-01T10:59:59.95Z", "busy", Some("a")),
        );
        changes.moved(
            Some(counted("2026-01-01T10:59:00Z", "busy", None)),
            counted("2026-01-01T11:00:00Z", "busy", None),
        );
        let changes: Vec<(Width, String, String, i64)> = changes
            .into_changes()
            .into_iter()
            .map(|(k, n)| (k.width, format_timestamp(&k.bucket), k.agent, n))
            .collect();
        let expected = [
            (Width::Hour, "2026-01-01T10:00:00.000Z", "", -1),
            (Width::Hour, "2026-01-01T10:00:00.000Z", "=a", 1),
            (Width::Hour, "2026-01-01T11:00:00.000Z", "", 1),
            (Width::Minute, "2026-01-01T10:59:00.000Z", "", -1),
            (Width::Minute, "2026-01-01T10:59:00.000Z", "=a", 1),
            (Width::Minute, "2026-01-01T11:00:00.000Z", "", 1),
        ];
        let expected: Vec<(Width, String, String, i64)> = expected
            .into_iter()
            .map(|(w, b, a, n)| (w, b.to_owned(), a.to_owned(), n))
            .collect();
        assert_eq!(changes, expected);
    }

    #[test]
    fn buckets_are_utc_before_and_after_the_epoch() {
        let at = parse_timestamp("1969-12-31T23:30:30Z").unwrap();
        assert_eq!(
            Width::Hour.floor(at),
            parse_timestamp("1969-12-31T23:00:00Z").unwrap()
        );
        assert_eq!(
            Width::Hour.ceil(at),
            parse_timestamp("1970-01-01T00:00:00Z").unwrap()
        );
        assert_eq!(
            Width::Minute.ceil(at),
            parse_timestamp("1969-12-31T23:31:00Z").unwrap()
        );
        let whole = parse_timestamp("2026-01-01T10:00:00Z").unwrap();
        assert_eq!(Width::Hour.floor(whole), whole);
        assert_eq!(Width::Hour.ceil(whole), whole);
    }

    #[test]
    fn a_window_splits_into_rows_minutes_hours_minutes_rows_that_tile_it() {
        let t = |s: &str| parse_timestamp(s).unwrap();
        let parts = window_parts(t("2026-01-01T09:58:30Z"), t("2026-01-01T12:01:15Z"));
        assert_eq!(
            parts,
            [
                WindowPart::Rows(t("2026-01-01T09:58:30Z"), t("2026-01-01T09:59:00Z")),
                WindowPart::Buckets(
                    Width::Minute,
                    t("2026-01-01T09:59:00Z"),
                    t("2026-01-01T10:00:00Z")
                ),
                WindowPart::Buckets(
                    Width::Hour,
                    t("2026-01-01T10:00:00Z"),
                    t("2026-01-01T12:00:00Z")
                ),
                WindowPart::Buckets(
                    Width::Minute,
                    t("2026-01-01T12:00:00Z"),
                    t("2026-01-01T12:01:00Z")
                ),
                WindowPart::Rows(t("2026-01-01T12:01:00Z"), t("2026-01-01T12:01:15Z")),
            ]
        );
        assert_eq!(
            window_parts(t("2026-01-01T10:00:00Z"), t("2026-01-01T11:00:00Z")),
            [WindowPart::Buckets(
                Width::Hour,
                t("2026-01-01T10:00:00Z"),
                t("2026-01-01T11:00:00Z")
            )]
        );
        assert_eq!(
            window_parts(t("2026-01-01T10:00:10Z"), t("2026-01-01T10:00:50Z")),
            [WindowPart::Rows(
                t("2026-01-01T10:00:10Z"),
                t("2026-01-01T10:00:50Z")
            )]
        );
        assert_eq!(
            window_parts(t("2026-01-01T10:05:10Z"), t("2026-01-01T10:30:00Z")),
            [
                WindowPart::Rows(t("2026-01-01T10:05:10Z"), t("2026-01-01T10:06:00Z")),
                WindowPart::Buckets(
                    Width::Minute,
                    t("2026-01-01T10:06:00Z"),
                    t("2026-01-01T10:30:00Z")
                ),
            ]
        );
    }
}
