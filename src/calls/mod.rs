//! Placing calls: the placer records each attempt, asks AI Studio and records its answer;
//! `idempotency` makes a client's retry replay the first answer; `status_url` signs the
//! status URL each placed call gets; `results` infers the answered calls AI Studio never
//! reports.

pub mod idempotency;
mod placer;
pub mod results;
pub mod status_url;

pub(crate) use placer::outcome_of;
pub use placer::{CallPlacer, PlaceError, Placement, UNREADABLE_ANSWER};
