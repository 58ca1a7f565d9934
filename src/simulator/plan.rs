//! What happens to a simulated call, decided by the last digit of its destination, so that a
//! demo or a test can ask for any outcome by choosing the number it dials.

/// The table shown by `callhook simulator --help`; `plan` is its implementation.
pub const OUTCOME_TABLE: &str = "\
Outcome of an accepted call, by the last digit of `to` (of the user part for a SIP address):
  0, 1, 9  answered: no status callback (AI Studio sends none for an answered call)
  2        busy
  3        timeout
  4        rejected
  5        cancelled
  6        failed
  7        busy, delivered twice (a duplicate)
  8        cancelled, then an earlier-timestamped busy delivered after it (out of order)
  none     answered (a SIP address without digits)
Reserved agent ids: fail-404 answers 404, fail-500 answers 500 (failed to fetch preconfigured
session information), fail-hang never answers. With --agents, unlisted agents answer 404.
Each callback is POSTed once to the request's status_url after --callback-delay-ms; a failed
delivery is not retried, as AI Studio documents no retry policy.";

/// How long before the newest event an out-of-order event is timestamped.
pub const OUT_OF_ORDER_BY_MS: i64 = 1_000;

/// One status callback to deliver, in delivery order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedCallback {
    pub status: &'static str,
    /// Milliseconds before the delivery time that the event is said to have occurred.
    pub earlier_by_ms: i64,
}

/// The callbacks for a call to `to`, in delivery order. `duplicates` delivers each callback
/// twice; `out_of_order` adds an earlier-timestamped event delivered after the latest one.
pub fn plan(to: &str, duplicates: bool, out_of_order: bool) -> Vec<PlannedCallback> {
    let (status, mut duplicated, mut reordered) = match last_digit(to) {
        Some(2 | 7) => ("busy", false, false),
        Some(3) => ("timeout", false, false),
        Some(4) => ("rejected", false, false),
        Some(5 | 8) => ("cancelled", false, false),
        Some(6) => ("failed", false, false),
        _ => return Vec::new(),
    };
    duplicated |= duplicates || last_digit(to) == Some(7);
    reordered |= out_of_order || last_digit(to) == Some(8);
    let mut events = vec![PlannedCallback {
        status,
        earlier_by_ms: 0,
    }];
    if reordered {
        events.push(PlannedCallback {
            status: if status == "busy" { "timeout" } else { "busy" },
            earlier_by_ms: OUT_OF_ORDER_BY_MS,
        });
    }
    if duplicated {
        events = events.into_iter().flat_map(|e| [e, e]).collect();
    }
    events
}

/// The last digit of a phone number, or of a SIP address's user part.
fn last_digit(to: &str) -> Option<u32> {
    let dialled = match to.split_once(':') {
        Some((_, rest)) => rest.rsplit_once('@').map_or(rest, |(user, _)| user),
        None => to,
    };
    dialled.chars().rev().find_map(|c| c.to_digit(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(to: &str, duplicates: bool, out_of_order: bool) -> Vec<(&'static str, i64)> {
        plan(to, duplicates, out_of_order)
            .into_iter()
            .map(|e| (e.status, e.earlier_by_ms))
            .collect()
    }

    #[test]
    fn each_digit_has_its_outcome() {
        for (to, expected) in [
            ("972541116030", vec![]),
            ("972541116031", vec![]),
            ("972541116039", vec![]),
            ("972541116032", vec![("busy", 0)]),
            ("972541116033", vec![("timeout", 0)]),
            ("972541116034", vec![("rejected", 0)]),
            ("972541116035", vec![("cancelled", 0)]),
            ("972541116036", vec![("failed", 0)]),
            ("972541116037", vec![("busy", 0), ("busy", 0)]),
            ("972541116038", vec![("cancelled", 0), ("busy", 1_000)]),
        ] {
            assert_eq!(statuses(to, false, false), expected, "{to}");
        }
    }

    #[test]
    fn sip_addresses_use_the_user_part() {
        assert_eq!(
            statuses("sip:1232@sip.example.com", false, false),
            [("busy", 0)]
        );
        assert_eq!(statuses("sip:alice@sip2.example.com", false, false), []);
    }

    #[test]
    fn flags_add_duplicates_and_reordering() {
        assert_eq!(
            statuses("972541116032", true, true),
            [
                ("busy", 0),
                ("busy", 0),
                ("timeout", 1_000),
                ("timeout", 1_000)
            ]
        );
        assert_eq!(
            statuses("972541116036", false, true),
            [("failed", 0), ("busy", 1_000)]
        );
        assert_eq!(statuses("972541116030", true, true), []);
    }
}
