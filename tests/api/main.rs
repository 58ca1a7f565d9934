//! The HTTP suite: black-box tests over real sockets, each run once per storage backend.

mod helpers;
mod receiver;
mod studio;

mod calls;
mod campaigns;
mod console;
mod hardening;
mod openapi;
mod ops;
mod outage;
mod outcomes;
mod results;
mod status;
mod store;
mod webhooks;
