//! Statements as both backends take them: SQL text with the dialect's placeholders, the values
//! bound to them, and reading a result row by column name.

use uuid::Uuid;

use super::StoreError;
use crate::domain::page::PageRequest;
use crate::domain::time::Timestamp;

/// A value bound to a placeholder. Each backend encodes instants and uuids its own way.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Int32(Option<i32>),
    Float(f64),
    Bool(bool),
    Time(Option<Timestamp>),
    Uuid(Option<Uuid>),
    Bytes(Vec<u8>),
    /// A whole column of rows, as PostgreSQL binds them to `unnest`.
    Texts(Vec<Option<String>>),
    Ints(Vec<Option<i64>>),
    Times(Vec<Option<Timestamp>>),
    Uuids(Vec<Option<Uuid>>),
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::Text(Some(value.to_owned()))
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Text(Some(value))
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Self::Text(Some(value.clone()))
    }
}

impl From<Option<&str>> for Value {
    fn from(value: Option<&str>) -> Self {
        Self::Text(value.map(str::to_owned))
    }
}

impl From<&Option<String>> for Value {
    fn from(value: &Option<String>) -> Self {
        Self::Text(value.clone())
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Int(Some(value))
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Self {
        Self::Int32(Some(value))
    }
}

impl From<Option<i32>> for Value {
    fn from(value: Option<i32>) -> Self {
        Self::Int32(value)
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Self::Float(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<Timestamp> for Value {
    fn from(value: Timestamp) -> Self {
        Self::Time(Some(value))
    }
}

impl From<Option<Timestamp>> for Value {
    fn from(value: Option<Timestamp>) -> Self {
        Self::Time(value)
    }
}

impl From<Uuid> for Value {
    fn from(value: Uuid) -> Self {
        Self::Uuid(Some(value))
    }
}

impl From<Option<Uuid>> for Value {
    fn from(value: Option<Uuid>) -> Self {
        Self::Uuid(value)
    }
}

/// The type of the tie-breaking key of a page.
#[derive(Debug, Clone, Copy)]
pub(super) enum PageKey {
    Text,
    Uuid,
}

/// How a backend writes what differs between the two SQL dialects.
pub(super) struct Syntax {
    /// The placeholder of the `n`-th bound value, counting from 1.
    pub placeholder: fn(usize) -> String,
    /// Writes a `FROM` item named `t` holding rows given as named columns (each a
    /// [`Value::Texts`], [`Value::Ints`], [`Value::Times`] or [`Value::Uuids`], all of one
    /// length), plus `n`, the row's position; bound as a whole, not a placeholder per value.
    pub rows: fn(&mut Sql, Vec<(&str, Value)>),
    /// The name of the two-argument maximum (`GREATEST`, `max`) and minimum.
    pub greatest: &'static str,
    pub least: &'static str,
    /// What makes a text comparison bytewise, as Rust compares strings.
    pub bytewise: &'static str,
    /// What ends a `SELECT` that locks its rows (nothing where one writer at a time holds the
    /// whole database).
    pub lock_rows: &'static str,
    /// Whether `FOR UPDATE OF t` / `FOR SHARE` exist: rows are locked one by one, not the
    /// whole database by one writer.
    pub row_locks: bool,
    /// What ends a `SELECT` that locks its rows, skipping those another transaction holds
    /// (nothing where one writer at a time holds the whole database).
    pub skip_locked: &'static str,
    /// The database's own clock, where replicas on several hosts share it (empty where one
    /// host holds the database, whose clock is the service's).
    pub db_now: &'static str,
}

/// SQL text and the values bound to its placeholders, in order.
pub(super) struct Sql {
    pub text: String,
    pub values: Vec<Value>,
    syntax: &'static Syntax,
}

impl Sql {
    pub fn new(syntax: &'static Syntax, text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            values: Vec::new(),
            syntax,
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        let placeholder = (self.syntax.placeholder)(self.values.len());
        self.text.push_str(&placeholder);
        self
    }

    /// Appends ` AND column IN (…)` for a non-empty list; nothing for an empty one.
    pub fn and_in<V: Into<Value>>(
        &mut self,
        column: &str,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        let mut values = values.into_iter().peekable();
        if values.peek().is_none() {
            return self;
        }
        self.push(" AND ").push(column).push(" IN (");
        for (i, value) in values.enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self.push(")")
    }

    /// Appends ` AND column = value` when there is a value.
    pub fn and_eq<V: Into<Value>>(&mut self, column: &str, value: Option<V>) -> &mut Self {
        if let Some(value) = value {
            self.push(" AND ").push(column).push(" = ").bind(value);
        }
        self
    }

    /// Appends the bounds of a half-open window `[since, until)` on `column`.
    pub fn and_window(
        &mut self,
        column: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> &mut Self {
        if let Some(since) = since {
            self.push(" AND ").push(column).push(" >= ").bind(since);
        }
        if let Some(until) = until {
            self.push(" AND ").push(column).push(" < ").bind(until);
        }
        self
    }

    /// Appends a keyset page, newest first by `(instant, key)`: the rows after the page's
    /// cursor, in that order, one more than the limit (which tells whether more follow).
    pub fn newest_first(
        &mut self,
        instant: &str,
        key: &str,
        kind: PageKey,
        page: &PageRequest,
    ) -> &mut Self {
        if let Some(after) = &page.after {
            let after_key = match kind {
                PageKey::Text => Value::from(after.key.as_str()),
                // A key that is no uuid (a cursor not made here) counts as the nil uuid.
                PageKey::Uuid => Value::from(Uuid::parse_str(&after.key).unwrap_or_default()),
            };
            self.push(&format!(" AND ({instant}, {key}) < ("))
                .bind(after.at())
                .push(", ")
                .bind(after_key)
                .push(")");
        }
        self.push(&format!(" ORDER BY {instant} DESC, {key} DESC LIMIT "))
            .bind(i64::from(page.limit) + 1)
    }

    /// Appends the current time: the database's clock where it has one for every replica
    /// (see [`Syntax::db_now`]), else `now` bound.
    pub fn now(&mut self, now: Timestamp) -> &mut Self {
        let db_now = self.syntax.db_now;
        if db_now.is_empty() {
            self.bind(now)
        } else {
            self.push(db_now)
        }
    }

    /// Appends the current time plus `span`, as [`Sql::now`] reads it.
    pub fn now_plus(&mut self, now: Timestamp, span: std::time::Duration) -> &mut Self {
        let db_now = self.syntax.db_now;
        if db_now.is_empty() {
            self.bind(now + crate::domain::time::span(span))
        } else {
            self.push("(")
                .push(db_now)
                .push(" + make_interval(secs => ")
                .bind(span.as_secs_f64())
                .push("))")
        }
    }

    /// Appends a `FROM` item named `t` holding rows given as columns (see [`Syntax::rows`]).
    pub fn rows(&mut self, columns: Vec<(&str, Value)>) -> &mut Self {
        (self.syntax.rows)(self, columns);
        self
    }
}

/// A result row read by column name, whatever the backend's encoding.
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn float(&self, column: &str) -> Result<f64, StoreError>;
    fn opt_int32(&self, column: &str) -> Result<Option<i32>, StoreError>;
    fn boolean(&self, column: &str) -> Result<bool, StoreError>;
    fn time(&self, column: &str) -> Result<Timestamp, StoreError>;
    fn opt_time(&self, column: &str) -> Result<Option<Timestamp>, StoreError>;
    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, StoreError>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError>;

    fn int32(&self, column: &str) -> Result<i32, StoreError> {
        self.opt_int32(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is null")))
    }

    fn uuid(&self, column: &str) -> Result<Uuid, StoreError> {
        self.opt_uuid(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is null")))
    }
}
