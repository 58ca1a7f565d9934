//! Property tests for the parsers that read untrusted input: callback bodies as AI Studio
//! posts them, call destinations as people type them, and the opaque page cursor.
//!
//! Every property asserts concrete results (round trips, invariants of what a parser
//! accepts, the shape of what it refuses), not only the absence of a panic. The case count is
//! kept modest so the file runs in seconds; raise it with `PROPTEST_CASES=10000`.

use callhook::domain::callback::{
    Callback, CallbackError, MAX_CONVERSATION_UUID_LEN, MAX_STATUS_LEN,
};
use callhook::domain::destination::Destination;
use callhook::domain::page::Cursor;
use callhook::domain::time::{Timestamp, now};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use serde_json::Value;
use uuid::Uuid;

/// The members `Callback::parse` reads; random extra members never use these names.
const READ_MEMBERS: [&str; 6] = [
    "conversation_uuid",
    "status",
    "timestamp",
    "agent_id",
    "from",
    "to",
];
/// The fields a refusal may name, in the order it names them.
const REQUIRED: [&str; 3] = ["conversation_uuid", "status", "timestamp"];
/// Longest optional descriptive field (`agent_id`, `to`) kept.
const MAX_SHORT_FIELD_LEN: usize = 200;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

// ---------------------------------------------------------------------------------------
// Generic helpers
// ---------------------------------------------------------------------------------------

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate_to(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A JSON string literal for `s`; characters whose bit in `seed` is set are written as
/// `\uXXXX` escapes (surrogate pairs beyond the BMP), so decoding is exercised as well.
fn json_string(s: &str, seed: u64) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for (i, c) in s.chars().enumerate() {
        let force = (seed >> (i % 64)) & 1 == 1;
        match c {
            '"' if !force => out.push_str("\\\""),
            '\\' if !force => out.push_str("\\\\"),
            c if force || (c as u32) < 0x20 => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A permutation of `items` driven by `seed` (xorshift Fisher-Yates).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    seed |= 1;
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

fn call_id() -> impl Strategy<Value = Option<Uuid>> {
    option::of(any::<u128>().prop_map(Uuid::from_u128))
}

// ---------------------------------------------------------------------------------------
// JSON strategies
// ---------------------------------------------------------------------------------------

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        any::<String>().prop_map(Value::String),
        "[a-z_]{0,12}".prop_map(Value::String),
    ]
}

/// Any JSON value `serde_json::Value` can hold, nested up to 8 levels.
fn json_value() -> impl Strategy<Value = Value> {
    json_value_sized(8, 128, 8)
}

/// A JSON value nested up to `depth` levels, of about `size` nodes, `width` per container.
fn json_value_sized(depth: u32, size: u32, width: u32) -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(depth, size, width, move |inner| {
        let width = width as usize;
        prop_oneof![
            vec(inner.clone(), 0..width).prop_map(Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..width)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A JSON number no `f64`/`i64`/`u64` holds: thousands of digits, or an exponent far out of
/// range (`1e999999`), as text.
fn huge_number() -> impl Strategy<Value = String> {
    // Digits from a seed rather than one strategy per digit: thousands of them per case.
    let digits = |len: std::ops::Range<usize>| {
        (len, any::<u64>()).prop_map(|(len, mut seed)| {
            seed |= 1;
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(b'0' + (seed % 10) as u8)
                })
                .collect::<String>()
        })
    };
    prop_oneof![
        Just("1e999999".to_owned()),
        Just("-1e999999".to_owned()),
        Just("1E-999999".to_owned()),
        Just("-0.0e+0".to_owned()),
        Just("5e-324".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("-9223372036854775809".to_owned()),
        (
            any::<bool>(),
            1u8..10,
            digits(0..5001),
            option::of(digits(1..64)),
            option::of((
                prop::sample::select(vec!["e", "E", "e+", "e-", "E+", "E-"]),
                1u64..u64::MAX
            )),
        )
            .prop_map(|(negative, lead, rest, fraction, exponent)| {
                let mut n = String::new();
                if negative {
                    n.push('-');
                }
                n.push(char::from(b'0' + lead));
                n.push_str(&rest);
                if let Some(fraction) = fraction {
                    n.push('.');
                    n.push_str(&fraction);
                }
                if let Some((e, exponent)) = exponent {
                    n.push_str(e);
                    n.push_str(&exponent.to_string());
                }
                n
            }),
    ]
}

/// Nesting far past serde_json's recursion limit (128): arrays, objects, or a mixture chosen
/// by `pattern`, around a leaf.
fn deep_nesting() -> impl Strategy<Value = String> {
    (
        1usize..20_001,
        any::<u64>(),
        prop_oneof![
            Just("1"),
            Just("null"),
            Just("\"x\""),
            Just("[]"),
            Just("{}")
        ],
    )
        .prop_map(|(depth, pattern, leaf)| {
            let mut open = String::with_capacity(depth * 5);
            let mut close = String::with_capacity(depth);
            for level in 0..depth {
                if (pattern >> (level % 64)) & 1 == 1 {
                    open.push_str("{\"a\":");
                    close.push('}');
                } else {
                    open.push('[');
                    close.push(']');
                }
            }
            let close: String = close.chars().rev().collect();
            format!("{open}{leaf}{close}")
        })
}

/// Valid JSON text, including what `Value` cannot hold: huge numbers and deep nesting,
/// spliced in at any position.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => json_value_sized(3, 16, 4).prop_map(|v| v.to_string()),
        1 => huge_number(),
        1 => deep_nesting(),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(","))),
            vec((any::<String>(), inner, any::<u64>()), 0..6).prop_map(|members| {
                let members: Vec<String> = members
                    .iter()
                    .map(|(key, value, seed)| format!("{}:{value}", json_string(key, *seed)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

// ---------------------------------------------------------------------------------------
// Callback checks
// ---------------------------------------------------------------------------------------

/// What every accepted callback satisfies, whatever the body.
fn check_accepted(
    cb: &Callback,
    body: &[u8],
    call_id: Option<Uuid>,
    received_at: Timestamp,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        cb.payload.as_str(),
        String::from_utf8_lossy(body),
        "payload is the body"
    );
    prop_assert_eq!(
        cb.payload.as_bytes(),
        body,
        "an accepted body is UTF-8 and kept exactly"
    );
    prop_assert!(!cb.status.is_empty(), "empty status accepted");
    prop_assert!(cb.status.len() <= MAX_STATUS_LEN, "status too long");
    prop_assert!(!cb.status.contains('\0'), "NUL in status: {:?}", cb.status);
    prop_assert!(!cb.conversation_uuid.is_empty(), "empty conversation_uuid");
    prop_assert!(cb.conversation_uuid.len() <= MAX_CONVERSATION_UUID_LEN);
    prop_assert_eq!(cb.conversation_uuid.trim(), cb.conversation_uuid.as_str());
    prop_assert!(
        !cb.conversation_uuid.chars().any(char::is_control),
        "control character in conversation_uuid: {:?}",
        cb.conversation_uuid
    );
    prop_assert!(
        (0..=9999).contains(&cb.occurred_at.year()),
        "occurred_at {} not writable as RFC 3339",
        cb.occurred_at
    );
    prop_assert_eq!(
        cb.occurred_at.timestamp_subsec_nanos() % 1000,
        0,
        "occurred_at kept beyond microseconds"
    );
    for value in [&cb.agent_id, &cb.to].into_iter().flatten() {
        prop_assert!(!value.is_empty() && value.len() <= MAX_SHORT_FIELD_LEN);
        prop_assert_eq!(value.trim(), value.as_str());
        prop_assert!(!value.chars().any(char::is_control), "{:?}", value);
    }
    prop_assert_eq!(cb.call_id, call_id);
    prop_assert_eq!(cb.received_at, received_at);
    Ok(())
}

/// What every refusal satisfies: an invalid callback names at least one required field,
/// each at most once, in a fixed order.
fn check_refused(error: &CallbackError) -> Result<(), TestCaseError> {
    if let CallbackError::Invalid(errors) = error {
        prop_assert!(!errors.is_empty(), "Invalid without a reason");
        let mut last = None;
        for error in errors {
            let position = REQUIRED.iter().position(|f| *f == error.field);
            prop_assert!(position.is_some(), "unexpected field {:?}", error.field);
            prop_assert!(
                position > last,
                "fields out of order or repeated: {:?}",
                errors
            );
            prop_assert!(!error.message.is_empty());
            last = position;
        }
    }
    Ok(())
}

fn check_parse(
    body: &[u8],
    call_id: Option<Uuid>,
) -> Result<Result<Callback, CallbackError>, TestCaseError> {
    let received_at = now();
    let result = Callback::parse(body, call_id, received_at);
    match &result {
        Ok(cb) => check_accepted(cb, body, call_id, received_at)?,
        Err(error) => check_refused(error)?,
    }
    Ok(result)
}

// ---------------------------------------------------------------------------------------
// Valid callbacks
// ---------------------------------------------------------------------------------------

/// `conversation_uuid`: no control characters, non-blank, at most
/// `MAX_CONVERSATION_UUID_LEN` bytes (the rule is in bytes, not characters), sometimes padded
/// with whitespace that is not a control character.
fn conversation_uuid() -> impl Strategy<Value = String> {
    let pad = "[ \u{a0}\u{2003}\u{3000}]{0,3}";
    let core = prop_oneof![
        "CON-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[!-~]{1,200}",
        "[^\\p{Cc}]{1,200}",
    ];
    (pad, core, pad)
        .prop_map(|(before, core, after)| {
            truncate_to(format!("{before}{core}{after}"), MAX_CONVERSATION_UUID_LEN)
        })
        .prop_filter("blank", |s| !s.trim().is_empty())
}

/// `status`: anything without NUL, 1 to `MAX_STATUS_LEN` bytes.
fn status() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,30}",
        "[ -~]{1,1024}",
        "[^\\x00]{1,1024}".prop_map(|s| truncate_to(s, MAX_STATUS_LEN)),
    ]
}

/// An RFC 3339 date-time built from valid components, or (`offset: None`) the offsetless
/// form AI Studio sends, which is read as UTC.
#[derive(Debug, Clone)]
struct DateTimeText {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    /// 60 is a leap second, which RFC 3339 allows.
    second: u32,
    fraction: Option<String>,
    /// `T`, `t` or a space.
    separator: char,
    offset: Option<Offset>,
}

#[derive(Debug, Clone)]
enum Offset {
    /// `Z` or `z`.
    Utc(char),
    Numeric {
        negative: bool,
        hours: u32,
        minutes: u32,
    },
}

impl DateTimeText {
    fn text(&self) -> String {
        let mut text = format!(
            "{:04}-{:02}-{:02}{}{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.separator, self.hour, self.minute, self.second
        );
        if let Some(fraction) = &self.fraction {
            text.push('.');
            text.push_str(fraction);
        }
        match &self.offset {
            None => {}
            Some(Offset::Utc(z)) => text.push(*z),
            Some(Offset::Numeric {
                negative,
                hours,
                minutes,
            }) => {
                let sign = if *negative { '-' } else { '+' };
                text.push_str(&format!("{sign}{hours:02}:{minutes:02}"));
            }
        }
        text
    }

    /// The instant at microsecond precision (digits past the sixth are cut, not rounded),
    /// or `None` when its UTC year is outside 0000–9999.
    fn expected(&self) -> Option<Timestamp> {
        let digits = self.fraction.as_deref().unwrap_or("");
        let nanos: String = digits
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        let micros_as_nanos = nanos.parse::<u32>().unwrap() / 1000 * 1000;
        let (second, leap) = match self.second {
            60 => (59, 1_000_000_000),
            second => (second, 0),
        };
        let date = NaiveDate::from_ymd_opt(self.year, self.month, self.day).unwrap();
        let time =
            NaiveTime::from_hms_nano_opt(self.hour, self.minute, second, leap + micros_as_nanos)
                .unwrap();
        let local = date.and_time(time);
        let at: DateTime<Utc> = match &self.offset {
            None | Some(Offset::Utc(_)) => local.and_utc(),
            Some(Offset::Numeric {
                negative,
                hours,
                minutes,
            }) => {
                let seconds = (hours * 3600 + minutes * 60) as i32;
                let offset =
                    FixedOffset::east_opt(if *negative { -seconds } else { seconds }).unwrap();
                offset
                    .from_local_datetime(&local)
                    .single()
                    .unwrap()
                    .with_timezone(&Utc)
            }
        };
        (0..=9999).contains(&at.year()).then_some(at)
    }
}

fn date_time_text() -> impl Strategy<Value = DateTimeText> {
    let offset = prop_oneof![
        2 => prop_oneof![Just('Z'), Just('z')].prop_map(Offset::Utc).prop_map(Some),
        3 => (any::<bool>(), 0u32..24, 0u32..60).prop_map(|(negative, hours, minutes)| {
            Some(Offset::Numeric { negative, hours, minutes })
        }),
        1 => Just(None),
    ];
    let year = prop_oneof![4 => 1900..2100i32, 2 => 0..=9999i32, 1 => Just(0), 1 => Just(9999)];
    (
        year,
        1u32..=12,
        1u32..=31,
        0u32..24,
        0u32..60,
        prop_oneof![19 => 0u32..60, 1 => Just(60)],
        option::of("[0-9]{1,20}"),
        prop_oneof![Just('T'), Just('t'), Just(' ')],
        offset,
    )
        .prop_map(
            |(year, month, day, hour, minute, second, fraction, separator, offset)| {
                let day = (1..=day)
                    .rev()
                    .find(|day| NaiveDate::from_ymd_opt(year, month, *day).is_some())
                    .unwrap();
                // The offsetless formats are written with `T` or a space only.
                let separator = if offset.is_none() && separator == 't' {
                    'T'
                } else {
                    separator
                };
                DateTimeText {
                    year,
                    month,
                    day,
                    hour,
                    minute,
                    second,
                    fraction,
                    separator,
                    offset,
                }
            },
        )
}

/// A date-time that is valid RFC 3339 but whose UTC year is -1 or 10000: early on
/// 0000-01-01 with a positive offset, or late on 9999-12-31 with a negative one.
fn out_of_range_date_time() -> impl Strategy<Value = DateTimeText> {
    (any::<bool>(), 1u32..24, 0u32..60)
        .prop_flat_map(|(late, hours, minutes)| {
            let hour = if late { (24 - hours)..24 } else { 0..hours };
            (
                Just(late),
                Just(hours),
                Just(minutes),
                hour,
                0u32..60,
                0u32..60,
                option::of("[0-9]{1,9}"),
            )
        })
        .prop_map(
            |(late, hours, minutes, hour, minute, second, fraction)| DateTimeText {
                year: if late { 9999 } else { 0 },
                month: if late { 12 } else { 1 },
                day: if late { 31 } else { 1 },
                hour,
                minute,
                second,
                fraction,
                separator: 'T',
                offset: Some(Offset::Numeric {
                    negative: late,
                    hours,
                    minutes,
                }),
            },
        )
}

#[derive(Debug, Clone)]
struct ValidCallback {
    conversation_uuid: String,
    status: String,
    timestamp: DateTimeText,
    agent_id: Option<String>,
    to: Option<String>,
    /// Extra members: name, JSON text.
    extras: Vec<(String, String)>,
    escape_seed: u64,
    order_seed: u64,
    whitespace: String,
}

impl ValidCallback {
    fn body(&self) -> String {
        let ws = self.whitespace.as_str();
        let string = |s: &str| json_string(s, self.escape_seed);
        let mut members = vec![
            (string("conversation_uuid"), string(&self.conversation_uuid)),
            (string("status"), string(&self.status)),
            (string("timestamp"), string(&self.timestamp.text())),
        ];
        if let Some(agent_id) = &self.agent_id {
            members.push((string("agent_id"), string(agent_id)));
        }
        if let Some(to) = &self.to {
            members.push((string("to"), string(to)));
        }
        for (name, value) in &self.extras {
            members.push((json_string(name, 0), value.clone()));
        }
        shuffle(&mut members, self.order_seed);
        let members: Vec<String> = members
            .into_iter()
            .map(|(name, value)| format!("{ws}{name}{ws}:{ws}{value}{ws}"))
            .collect();
        format!("{ws}{{{}}}{ws}", members.join(","))
    }
}

fn extra_name() -> impl Strategy<Value = String> {
    prop_oneof![Just("extra".to_owned()), "[a-z_]{1,16}", any::<String>(),]
        .prop_filter("read by the parser", |name| {
            !READ_MEMBERS.contains(&name.as_str())
        })
}

fn valid_callback() -> impl Strategy<Value = ValidCallback> {
    (
        conversation_uuid(),
        status(),
        date_time_text().prop_filter("UTC year outside 0000-9999", |t| t.expected().is_some()),
        option::of("[a-zA-Z0-9-]{1,40}"),
        option::of(" ?\\+?[1-9][0-9]{6,14} ?"),
        vec((extra_name(), json_text()), 0..4),
        prop_oneof![Just(0u64), any::<u64>()],
        any::<u64>(),
        "[ \t\r\n]{0,2}",
    )
        .prop_map(
            |(
                conversation_uuid,
                status,
                timestamp,
                agent_id,
                to,
                extras,
                escape_seed,
                order_seed,
                whitespace,
            )| {
                ValidCallback {
                    conversation_uuid,
                    status,
                    timestamp,
                    agent_id,
                    to,
                    extras,
                    escape_seed,
                    order_seed,
                    whitespace,
                }
            },
        )
}

/// A valid body with a few random byte edits: close to valid, so parsing gets past the
/// grammar more often than random bytes do.
fn mutated_body() -> impl Strategy<Value = Vec<u8>> {
    (
        valid_callback(),
        vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
    )
        .prop_map(|(callback, edits)| {
            let mut body = callback.body().into_bytes();
            for (at, byte, kind) in edits {
                if body.is_empty() {
                    break;
                }
                let at = at.index(body.len());
                match kind {
                    0 => body[at] = byte,
                    1 => body.insert(at, byte),
                    2 => {
                        body.remove(at);
                    }
                    _ => body.truncate(at),
                }
            }
            body
        })
}

/// An object with the fields the parser reads holding any JSON value (or a plausible one).
fn callback_like_value() -> impl Strategy<Value = Value> {
    let field =
        |plausible: BoxedStrategy<Value>| option::of(prop_oneof![plausible, json_value().boxed()]);
    (
        field(conversation_uuid().prop_map(Value::String).boxed()),
        field(status().prop_map(Value::String).boxed()),
        field(
            date_time_text()
                .prop_map(|t| Value::String(t.text()))
                .boxed(),
        ),
        field(any::<u64>().prop_map(Value::from).boxed()),
        proptest::collection::btree_map(extra_name(), json_value(), 0..4),
    )
        .prop_map(|(conversation_uuid, status, timestamp, to, extras)| {
            let mut object: serde_json::Map<String, Value> = extras.into_iter().collect();
            for (name, value) in [
                ("conversation_uuid", conversation_uuid),
                ("status", status),
                ("timestamp", timestamp),
                ("to", to),
            ] {
                if let Some(value) = value {
                    object.insert(name.to_owned(), value);
                }
            }
            Value::Object(object)
        })
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes, and near-valid bodies, never panic; whatever is accepted or refused
    /// satisfies the invariants.
    #[test]
    fn callback_arbitrary_bytes(
        body in prop_oneof![
            vec(any::<u8>(), 0..2048),
            "\\{.{0,200}\\}".prop_map(String::into_bytes),
            mutated_body(),
        ],
        call_id in call_id(),
    ) {
        let _ = check_parse(&body, call_id)?;
    }

    /// Any JSON value as the body: only an object gets past `NotAnObject`, and an accepted
    /// one carries the values it was given.
    #[test]
    fn callback_arbitrary_json_value(
        value in prop_oneof![json_value(), callback_like_value()],
        call_id in call_id(),
    ) {
        let body = serde_json::to_vec(&value).unwrap();
        let result = check_parse(&body, call_id)?;
        prop_assert_eq!(
            matches!(result, Err(CallbackError::NotAnObject)),
            !value.is_object(),
            "{:?}", result
        );
        if let Ok(cb) = result {
            prop_assert_eq!(
                Some(cb.conversation_uuid.as_str()),
                value["conversation_uuid"].as_str().map(str::trim)
            );
            prop_assert_eq!(Some(cb.status.as_str()), value["status"].as_str());
        }
    }

    /// Any JSON text, with numbers of any size and nesting of any depth, never panics: it is
    /// an object exactly when it starts with `{`.
    #[test]
    fn callback_arbitrary_json_text(body in json_text(), call_id in call_id()) {
        let result = check_parse(body.as_bytes(), call_id)?;
        prop_assert_eq!(
            matches!(result, Err(CallbackError::NotAnObject)),
            !body.starts_with('{'),
            "{:?}", result
        );
    }

    /// A valid callback, with any extra members (huge numbers, deep nesting), any member
    /// order, escapes and whitespace, is accepted and carries exactly what was sent.
    #[test]
    fn callback_valid_round_trips(callback in valid_callback(), call_id in call_id()) {
        let body = callback.body();
        let received_at = now();
        let cb = Callback::parse(body.as_bytes(), call_id, received_at);
        let cb = match cb {
            Ok(cb) => cb,
            Err(error) => {
                return Err(TestCaseError::fail(format!("refused {error:?}: {body:.300}")));
            }
        };
        check_accepted(&cb, body.as_bytes(), call_id, received_at)?;
        prop_assert_eq!(&cb.conversation_uuid, callback.conversation_uuid.trim());
        prop_assert_eq!(&cb.status, &callback.status);
        prop_assert_eq!(
            Some(cb.occurred_at),
            callback.timestamp.expected(),
            "{}",
            callback.timestamp.text()
        );
        prop_assert_eq!(&cb.payload, &body);
        prop_assert_eq!(cb.agent_id.as_deref(), callback.agent_id.as_deref());
        prop_assert_eq!(cb.to.as_deref(), callback.to.as_deref().map(str::trim));
    }

    /// A timestamp whose UTC year RFC 3339 cannot write (e.g. `0000-01-01T00:00:00+01:00`)
    /// is refused, naming `timestamp` alone.
    #[test]
    fn callback_timestamp_out_of_range_is_refused(
        timestamp in out_of_range_date_time(),
    ) {
        prop_assert_eq!(timestamp.expected(), None, "generator: {}", timestamp.text());
        let body = serde_json::json!({
            "conversation_uuid": "CON-1", "status": "busy", "timestamp": timestamp.text(),
        });
        let result = Callback::parse(body.to_string().as_bytes(), None, now());
        let Err(CallbackError::Invalid(errors)) = result else {
            return Err(TestCaseError::fail(format!("accepted {}: {result:?}", timestamp.text())));
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        prop_assert_eq!(fields, ["timestamp"]);
    }

    /// A NUL anywhere in `status`, or a control character anywhere in `conversation_uuid`,
    /// is refused, naming that field alone.
    #[test]
    fn callback_forbidden_characters_are_refused(
        conversation_uuid in conversation_uuid(),
        status in status(),
        at in any::<prop::sample::Index>(),
        control in "\\p{Cc}",
        in_status in any::<bool>(),
    ) {
        let insert = |s: &str, c: &str| {
            let boundaries: Vec<usize> = (0..=s.len()).filter(|i| s.is_char_boundary(*i)).collect();
            let at = boundaries[at.index(boundaries.len())];
            format!("{}{c}{}", &s[..at], &s[at..])
        };
        let (conversation_uuid, status, field) = if in_status {
            (conversation_uuid, truncate_to(insert(&status, "\0"), MAX_STATUS_LEN), "status")
        } else {
            let conversation_uuid = insert(&conversation_uuid, &control);
            (
                truncate_to(conversation_uuid, MAX_CONVERSATION_UUID_LEN),
                status,
                "conversation_uuid",
            )
        };
        // Truncation may have cut the character off again; then the case proves nothing.
        prop_assume!(status.contains('\0') || conversation_uuid.chars().any(char::is_control));
        let body = serde_json::json!({
            "conversation_uuid": conversation_uuid, "status": status,
            "timestamp": "2022-05-31T06:40:45.475Z",
        });
        let result = Callback::parse(body.to_string().as_bytes(), None, now());
        let Err(CallbackError::Invalid(errors)) = result else {
            return Err(TestCaseError::fail(format!("accepted: {result:?}")));
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        prop_assert_eq!(fields, [field]);
    }

    /// The `conversation_uuid` bound is in bytes: one over `MAX_CONVERSATION_UUID_LEN` bytes
    /// is refused even when it has far fewer characters.
    #[test]
    fn callback_conversation_uuid_over_the_byte_bound_is_refused(
        conversation_uuid in "[^\\p{Cc}\\p{White_Space}]{1,200}"
            .prop_filter("within the bound", |s| s.len() > MAX_CONVERSATION_UUID_LEN),
    ) {
        let body = serde_json::json!({
            "conversation_uuid": conversation_uuid, "status": "busy",
            "timestamp": "2022-05-31T06:40:45.475Z",
        });
        let result = Callback::parse(body.to_string().as_bytes(), None, now());
        let Err(CallbackError::Invalid(errors)) = result else {
            return Err(TestCaseError::fail(format!("accepted: {result:?}")));
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        prop_assert_eq!(fields, ["conversation_uuid"]);
    }
}

// ---------------------------------------------------------------------------------------
// Destination
// ---------------------------------------------------------------------------------------

/// E.164: at most 15 digits; the parser also refuses fewer than 7 (src/domain/destination.rs).
const MIN_PHONE_DIGITS: usize = 7;
const MAX_PHONE_DIGITS: usize = 15;
const MAX_SIP_LEN: usize = 256;

/// A number as a person might type it: optional leading `+`, separators anywhere between
/// digits, whitespace around.
fn typed_number(digits: &str, plus: bool, separators: &[String], pad: (&str, &str)) -> String {
    let mut typed = String::from(pad.0);
    if plus {
        typed.push('+');
    }
    for (i, digit) in digits.chars().enumerate() {
        typed.push_str(&separators[i % separators.len()]);
        typed.push(digit);
    }
    typed.push_str(&separators[digits.len() % separators.len()]);
    typed.push_str(pad.1);
    typed
}

fn separators() -> impl Strategy<Value = Vec<String>> {
    vec("[ \\-().\u{a0}]{0,2}", 1..16)
}

fn sip_address() -> impl Strategy<Value = String> {
    let label = "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?";
    (
        prop_oneof![
            Just("sip"),
            Just("SIP"),
            Just("Sip"),
            Just("sips"),
            Just("SIPS")
        ],
        "[A-Za-z0-9._~+!$&'*=;,%-]{1,64}",
        vec(label, 1..5),
        option::of(1u16..),
    )
        .prop_map(|(scheme, user, labels, port)| {
            let mut address = format!("{scheme}:{user}@{}", labels.join("."));
            if let Some(port) = port {
                address.push_str(&format!(":{port}"));
            }
            address
        })
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary text never panics, and what is accepted is well formed: a phone number is
    /// the input's digits, 7 to 15 of them, without a leading 0; a SIP address is the input.
    #[test]
    fn destination_arbitrary_strings(
        raw in prop_oneof![
            any::<String>(),
            "[0-9 +().\\-\u{a0}a-z]{0,24}",
            "\\s*(?i:sips?):.{0,300}",
            "\\s*(?i:sips?):[ -~]{0,80}",
        ],
    ) {
        match Destination::parse(&raw) {
            Ok(Destination::Phone(digits)) => {
                let typed: String = raw.chars().filter(char::is_ascii_digit).collect();
                prop_assert_eq!(&digits, &typed);
                prop_assert!((MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&digits.len()));
                prop_assert!(!digits.starts_with('0'));
            }
            Ok(Destination::Sip(address)) => {
                prop_assert_eq!(address.as_str(), raw.trim());
                let lower = address.to_ascii_lowercase();
                prop_assert!(lower.starts_with("sip:") || lower.starts_with("sips:"));
                prop_assert!(address.len() <= MAX_SIP_LEN);
                prop_assert!(!address.chars().any(|c| c.is_whitespace() || c.is_control()));
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    /// A valid E.164 number, however it is typed, becomes its digits.
    #[test]
    fn destination_typed_numbers_become_digits(
        digits in "[1-9][0-9]{6,14}",
        plus in any::<bool>(),
        separators in separators(),
        pad in ("[ \t\u{a0}]{0,2}", "[ \t\u{a0}]{0,2}"),
    ) {
        let typed = typed_number(&digits, plus, &separators, (&pad.0, &pad.1));
        let parsed = Destination::parse(&typed);
        prop_assert_eq!(&parsed, &Ok(Destination::Phone(digits.clone())), "typed {:?}", typed);
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.as_str(), digits.as_str());
        prop_assert_eq!(parsed.to_string(), digits);
    }

    /// National numbers (leading 0) and impossible lengths are refused however typed.
    #[test]
    fn destination_bad_numbers_are_refused(
        digits in prop_oneof![
            "0[0-9]{6,14}",
            "[1-9][0-9]{0,5}",
            "[1-9][0-9]{15,30}",
        ],
        plus in any::<bool>(),
        separators in separators(),
    ) {
        let typed = typed_number(&digits, plus, &separators, ("", ""));
        prop_assert!(Destination::parse(&typed).is_err(), "accepted {:?}", typed);
    }

    /// A SIP address with whitespace or a control character inside is refused.
    #[test]
    fn destination_sip_with_space_inside_is_refused(
        address in sip_address(),
        at in any::<prop::sample::Index>(),
        bad in prop::sample::select(vec![' ', '\t', '\n', '\u{a0}', '\u{3000}', '\0', '\u{7f}']),
    ) {
        let mut chars: Vec<char> = address.chars().collect();
        // Inside: after the scheme's first letter, before the last character.
        chars.insert(1 + at.index(chars.len() - 1), bad);
        let raw: String = chars.into_iter().collect();
        prop_assert!(Destination::parse(&raw).is_err(), "accepted {:?}", raw);
    }

    /// A SIP address passes exactly as given (less surrounding whitespace).
    #[test]
    fn destination_sip_round_trips(address in sip_address(), pad in "[ \t]{0,2}") {
        let parsed = Destination::parse(&format!("{pad}{address}{pad}"));
        prop_assert_eq!(&parsed, &Ok(Destination::Sip(address.clone())));
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.as_str(), address.as_str());
        prop_assert_eq!(parsed.to_string(), address);
    }
}

// ---------------------------------------------------------------------------------------
// Cursor
// ---------------------------------------------------------------------------------------

/// Microseconds since the epoch of the first and last instants RFC 3339 can write in UTC.
fn accepted_micros() -> (i64, i64) {
    let first = NaiveDate::from_ymd_opt(0, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let last = NaiveDate::from_ymd_opt(9999, 12, 31)
        .unwrap()
        .and_hms_micro_opt(23, 59, 59, 999_999)
        .unwrap()
        .and_utc();
    (first.timestamp_micros(), last.timestamp_micros())
}

fn accepted_instant() -> impl Strategy<Value = Timestamp> {
    let (first, last) = accepted_micros();
    prop_oneof![
        4 => first..=last,
        1 => Just(first),
        1 => Just(last),
        1 => first..first + 10_000_000,
        1 => last - 10_000_000..=last,
        2 => 1_500_000_000_000_000i64..2_000_000_000_000_000,
    ]
    .prop_map(|micros| DateTime::from_timestamp_micros(micros).unwrap())
}

/// Text that looks more and more like a cursor: random text, base64 of random bytes, base64
/// of JSON objects with `t` and `k` members of any type and size.
fn cursor_like() -> impl Strategy<Value = String> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let t = prop_oneof![
        any::<i64>().prop_map(|t| t.to_string()),
        huge_number(),
        json_value().prop_map(|v| v.to_string()),
    ];
    let k = prop_oneof![
        any::<String>().prop_map(|k| Value::String(k).to_string()),
        json_text(),
    ];
    let object = (
        t,
        k,
        proptest::collection::btree_map("[a-z]{1,3}", json_value(), 0..3),
    )
        .prop_map(|(t, k, extras)| {
            let mut members = vec![format!("\"t\":{t}"), format!("\"k\":{k}")];
            members.extend(
                extras
                    .iter()
                    .map(|(name, value)| format!("{}:{value}", json_string(name, 0))),
            );
            format!("{{{}}}", members.join(","))
        })
        .boxed();
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_=+/-]{0,64}",
        vec(any::<u8>(), 0..256).prop_map(|bytes| URL_SAFE_NO_PAD.encode(bytes)),
        object.clone().prop_map(|json| URL_SAFE_NO_PAD.encode(json)),
        object.prop_map(|json| STANDARD.encode(json)),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Decoding arbitrary text never panics, and what decodes is a cursor in range that
    /// re-encodes to itself.
    #[test]
    fn cursor_decode_arbitrary_strings(raw in cursor_like()) {
        if let Some(cursor) = Cursor::decode(&raw) {
            let (first, last) = accepted_micros();
            prop_assert!((first..=last).contains(&cursor.at_micros), "{:?}", cursor);
            prop_assert!(!cursor.key.contains('\0'), "NUL in key: {:?}", cursor);
            prop_assert_eq!(cursor.at().timestamp_micros(), cursor.at_micros);
            prop_assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }
    }

    /// A cursor made from an accepted instant and any key without NUL (which no stored key
    /// holds) decodes to itself and names the same instant, with or without whitespace
    /// around it.
    #[test]
    fn cursor_round_trips(
        at in accepted_instant(),
        key in prop_oneof![any::<String>(), "[^\\x00]{0,64}"].prop_map(|k| k.replace('\0', "")),
        pad in "[ \t\n]{0,2}",
    ) {
        let cursor = Cursor::new(&at, key.clone());
        let encoded = cursor.encode();
        prop_assert!(
            encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "not URL-safe: {}",
            encoded
        );
        let decoded = Cursor::decode(&format!("{pad}{encoded}{pad}"));
        prop_assert_eq!(decoded.as_ref(), Some(&cursor));
        let decoded = decoded.unwrap();
        prop_assert_eq!(decoded.at(), at);
        prop_assert_eq!(decoded.key, key);
    }

    /// A key with a NUL character is refused, whatever the instant.
    #[test]
    fn cursor_with_nul_in_key_is_refused(
        at in accepted_instant(),
        (before, after) in (any::<String>(), any::<String>()),
    ) {
        let cursor = Cursor::new(&at, format!("{before}\0{after}"));
        prop_assert_eq!(Cursor::decode(&cursor.encode()), None);
    }

    /// Any `i64` instant encodes, and decodes exactly when it is in the accepted range.
    #[test]
    fn cursor_decodes_only_in_range(
        at_micros in prop_oneof![
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(accepted_micros().0 - 1),
            Just(accepted_micros().1 + 1),
            Just(accepted_micros().0),
            Just(accepted_micros().1),
        ],
        key in "\\PC{0,16}",
    ) {
        let (first, last) = accepted_micros();
        let cursor = Cursor { at_micros, key };
        let decoded = Cursor::decode(&cursor.encode());
        let in_range = (first..=last).contains(&at_micros);
        prop_assert_eq!(decoded.is_some(), in_range, "{}", at_micros);
        if in_range {
            prop_assert_eq!(decoded, Some(cursor));
        }
    }
}
