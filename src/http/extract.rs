//! Extractors that answer in problem+json when a request cannot be read.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use crate::domain::FieldError;
use crate::domain::destination::Destination;
use crate::domain::page::{Cursor, DEFAULT_LIMIT, MAX_LIMIT, PageRequest};
use crate::domain::time::{Timestamp, parse_timestamp};

/// `axum::Json` whose rejections are problem documents.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// A JSON body read whatever its `Content-Type` says (`curl -d` sends form encoding).
#[derive(Debug)]
pub struct AnyJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AnyJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(request, state).await?;
        serde_json::from_slice(&body)
            .map(Self)
            .map_err(|err| ApiError::BadRequest(format!("the body is not valid JSON: {err}")))
    }
}

/// Query parameters read one by one, collecting every invalid one before answering 422.
pub struct QueryParams {
    params: HashMap<String, String>,
    errors: Vec<FieldError>,
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(params) =
            Query::<HashMap<String, String>>::from_request_parts(parts, state).await?;
        Ok(Self {
            params,
            errors: Vec::new(),
        })
    }
}

impl QueryParams {
    pub fn string(&mut self, name: &str) -> Option<String> {
        let value = self.params.get(name)?.trim();
        if value.is_empty() {
            self.errors.push(FieldError::new(name, "must not be empty"));
            return None;
        }
        // No stored text holds NUL, and PostgreSQL refuses it in a parameter.
        if value.contains('\0') {
            self.errors
                .push(FieldError::new(name, "must not contain NUL characters"));
            return None;
        }
        Some(value.to_owned())
    }

    /// A comma-separated list; empty items are ignored.
    pub fn list(&mut self, name: &str) -> Vec<String> {
        self.string(name)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A comma-separated list of known values (`parse` reads one); an unknown one is
    /// refused, naming the values allowed (`allowed`, e.g. "a, b or c").
    pub fn list_of<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
        allowed: &str,
    ) -> Vec<T> {
        let mut values = Vec::new();
        for raw in self.list(name) {
            match parse(&raw) {
                Some(value) => values.push(value),
                None => self.reject(name, format!("unknown {name} {raw:?}: use {allowed}")),
            }
        }
        values
    }

    /// A destination as typed by people (`+972 54-111-6037`), matched in the digits-only
    /// form that upstream uses; anything else is matched as given.
    pub fn destination(&mut self, name: &str) -> Option<String> {
        self.string(name).map(|raw| match Destination::parse(&raw) {
            Ok(destination) => destination.to_string(),
            Err(_) => raw,
        })
    }

    pub fn timestamp(&mut self, name: &str) -> Option<Timestamp> {
        let raw = self.string(name)?;
        let parsed = parse_timestamp(&raw);
        if parsed.is_none() {
            self.errors.push(FieldError::new(
                name,
                "must be an RFC 3339 date-time, e.g. 2026-11-24T10:00:00Z",
            ));
        }
        parsed
    }

    pub fn uuid(&mut self, name: &str) -> Option<Uuid> {
        let raw = self.string(name)?;
        let parsed = Uuid::parse_str(&raw).ok();
        if parsed.is_none() {
            self.errors.push(FieldError::new(name, "must be a UUID"));
        }
        parsed
    }

    pub fn reject(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(name, message));
    }

    /// `limit` (1–1000, default 50) and the opaque `cursor`.
    pub fn page(&mut self) -> PageRequest {
        let limit = match self.string("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.parse::<u32>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
                _ => {
                    self.reject("limit", format!("must be an integer from 1 to {MAX_LIMIT}"));
                    DEFAULT_LIMIT
                }
            },
        };
        let after = self.string("cursor").and_then(|raw| {
            let cursor = Cursor::decode(&raw);
            if cursor.is_none() {
                self.reject("cursor", "is not a cursor returned by this endpoint");
            }
            cursor
        });
        PageRequest { limit, after }
    }

    /// [`Self::page`] of a list whose tie-breaking key is a UUID.
    pub fn page_keyed_by_uuid(&mut self) -> PageRequest {
        let page = self.page();
        if page
            .after
            .as_ref()
            .is_some_and(|c| Uuid::parse_str(&c.key).is_err())
        {
            self.reject("cursor", "is not a cursor returned by this endpoint");
        }
        page
    }

    /// Answers 422 listing every invalid parameter, if any.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}
