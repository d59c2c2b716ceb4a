//! The state document: what the secret's AWSCURRENT version holds.
//!
//! ```json
//! {"current": "<value>", "pending": "<value>", "previous": "<value>"}
//! ```
//!
//! `current` is what CloudFront sends (Terraform starts the distribution with it); `pending` is
//! the value a rotation is about to send, `previous` the one it sent until the new one has
//! deployed. The load balancer accepts every value present. A missing key means no such value.
//!
//! Neither [`State`]'s `Debug` nor any [`StateError`] shows a value, and [`State::redact`] takes
//! them out of a message from elsewhere.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::secret::{self, SecretError};

/// The values a rotation moves between.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct State {
    pub current: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// Which values are present, never what they are, should a `State` end up in a log line.
impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("pending", &self.pending.is_some())
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

/// What is wrong with a document, said without quoting any of it: a key could be a misplaced value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    NotJson { line: usize, column: usize },
    NotAnObject,
    UnknownKey,
    NotAString(&'static str),
    NoCurrent,
    Value(&'static str, SecretError),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::NotJson { line, column } => {
                write!(f, "it is not JSON (line {line}, column {column})")
            }
            StateError::NotAnObject => f.write_str("it is not a JSON object"),
            StateError::UnknownKey => {
                f.write_str("it has keys other than \"current\", \"pending\" and \"previous\"")
            }
            StateError::NotAString(key) => write!(f, "{key:?} is not a string"),
            StateError::NoCurrent => f.write_str("it has no \"current\" value"),
            StateError::Value(key, err) => write!(f, "{key:?} {err}"),
        }
    }
}

impl std::error::Error for StateError {}

const KEYS: [&str; 3] = ["current", "pending", "previous"];

impl State {
    /// A document with only a current value.
    pub fn new(current: String) -> Self {
        Self {
            current,
            pending: None,
            previous: None,
        }
    }

    /// Reads a document; every value must pass [`secret::check`]. A null counts as absent.
    pub fn parse(text: &str) -> Result<Self, StateError> {
        let value: Value = serde_json::from_str(text).map_err(|err| StateError::NotJson {
            line: err.line(),
            column: err.column(),
        })?;
        let Value::Object(mut fields) = value else {
            return Err(StateError::NotAnObject);
        };
        if fields.keys().any(|key| !KEYS.contains(&key.as_str())) {
            return Err(StateError::UnknownKey);
        }
        let mut take = |key: &'static str| match fields.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) => secret::check(&value)
                .map(|()| Some(value))
                .map_err(|err| StateError::Value(key, err)),
            Some(_) => Err(StateError::NotAString(key)),
        };
        Ok(Self {
            current: take("current")?.ok_or(StateError::NoCurrent)?,
            pending: take("pending")?,
            previous: take("previous")?,
        })
    }

    /// The document as stored: absent values have no key.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a struct of strings serializes")
    }

    /// Every value present, current first.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        [
            Some(&self.current),
            self.pending.as_ref(),
            self.previous.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
    }

    /// `message` with every value of this document cut out, for errors of requests that carried
    /// one (an AWS error message may quote what it was sent).
    pub fn redact(&self, message: &str) -> String {
        self.values().fold(message.to_owned(), |message, value| {
            message.replace(value, "[redacted]")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(c: char) -> String {
        c.to_string().repeat(secret::LENGTH)
    }

    #[test]
    fn reads_and_writes_the_document_with_absent_keys_left_out() {
        let text = format!(r#"{{"current": "{}", "previous": null}}"#, value('a'));
        let state = State::parse(&text).unwrap();
        assert_eq!(state, State::new(value('a')));
        assert_eq!(
            state.to_json(),
            format!(r#"{{"current":"{}"}}"#, value('a'))
        );

        let full = State {
            current: value('a'),
            pending: Some(value('b')),
            previous: Some(value('c')),
        };
        assert_eq!(State::parse(&full.to_json()).unwrap(), full);
        assert_eq!(
            full.values().collect::<Vec<_>>(),
            [value('a'), value('b'), value('c')]
        );
    }

    #[test]
    fn every_problem_is_named_without_quoting_the_document() {
        let a = value('a');
        let cases = [
            (format!("{a} not json"), "it is not JSON (line 1, column 1)"),
            (format!(r#"["{a}"]"#), "it is not a JSON object"),
            (
                format!(r#"{{"current": "{a}", "{a}": 1}}"#),
                r#"it has keys other than "current", "pending" and "previous""#,
            ),
            (
                format!(r#"{{"pending": "{a}"}}"#),
                r#"it has no "current" value"#,
            ),
            (
                r#"{"current": 12345678}"#.to_owned(),
                r#""current" is not a string"#,
            ),
            (
                r#"{"current": "abc123"}"#.to_owned(),
                r#""current" has 6 characters; a value has 64"#,
            ),
            (
                format!(
                    r#"{{"current": "{a}", "pending": "{}"}}"#,
                    "A".repeat(secret::LENGTH)
                ),
                r#""pending" may contain only lowercase hex digits 0-9 and a-f"#,
            ),
        ];
        for (text, expected) in cases {
            let err = State::parse(&text).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err:?} should say {expected:?}");
            for secret in [
                a.as_str(),
                "abc123",
                "12345678",
                &"A".repeat(secret::LENGTH),
            ] {
                assert!(!err.contains(secret), "{err:?} quotes the document");
            }
        }
    }

    #[test]
    fn neither_debug_nor_redact_shows_a_value() {
        let state = State {
            current: value('a'),
            pending: Some(value('b')),
            previous: None,
        };
        let debug = format!("{state:?}");
        assert!(
            !debug.contains(&value('a')) && !debug.contains(&value('b')),
            "{debug}"
        );
        assert_eq!(
            state.redact(&format!("sent {} and {}", value('b'), value('a'))),
            "sent [redacted] and [redacted]"
        );
    }
}
