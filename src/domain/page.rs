//! Keyset paging: an opaque cursor that names the last item a page returned.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::time::Timestamp;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1000;

/// The sort key of the last item of a page: `(instant, tie-breaking key)`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "t")]
    pub at_micros: i64,
    #[serde(rename = "k")]
    pub key: String,
}

impl Cursor {
    pub fn new(at: &Timestamp, key: impl Into<String>) -> Self {
        Self {
            at_micros: at.timestamp_micros(),
            key: key.into(),
        }
    }

    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a cursor always serializes");
        URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let json = URL_SAFE_NO_PAD.decode(raw.trim()).ok()?;
        let cursor: Self = serde_json::from_slice(&json).ok()?;
        if cursor.key.contains('\0') {
            return None;
        }
        let at = chrono::DateTime::from_timestamp_micros(cursor.at_micros)?;
        super::time::in_range(at).map(|_| cursor)
    }

    pub fn at(&self) -> Timestamp {
        super::time::from_micros(self.at_micros)
    }
}

/// Which page to read.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Cursor>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

/// A page of a list, and the cursor of the next one when there is more.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows read in order: the extra row only says that
    /// another page exists.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> Cursor) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = more
            .then(|| rows.last().map(|last| cursor_of(last).encode()))
            .flatten();
        Self {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            at_micros: 1_653_979_245_475_000,
            key: "CON-1".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("not a cursor"), None);
        assert_eq!(Cursor::decode("e30"), None); // "{}"
        let far = Cursor {
            at_micros: i64::MAX,
            key: "k".into(),
        };
        assert_eq!(Cursor::decode(&far.encode()), None);
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_rows_exist() {
        let cursor_of = |n: &i64| Cursor {
            at_micros: *n,
            key: n.to_string(),
        };
        let page = Page::from_rows(vec![3, 2, 1], 2, cursor_of);
        assert_eq!(page.items, [3, 2]);
        assert_eq!(
            Cursor::decode(page.next_cursor.as_deref().unwrap())
                .unwrap()
                .at_micros,
            2
        );
        let page = Page::from_rows(vec![3, 2], 2, cursor_of);
        assert!(page.next_cursor.is_none());
    }
}
