//! The simulator's own configuration.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

/// Milliseconds between accepting a call and sending its callbacks.
pub const DEFAULT_CALLBACK_DELAY_MS: u64 = 2_000;
/// Calls accepted per second per agent.
pub const DEFAULT_RATE_PER_SECOND: f64 = 5.0;
/// Where `callhook simulator` listens.
pub const DEFAULT_BIND: &str = "127.0.0.1:9090";

/// A validated simulator configuration.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub bind: SocketAddr,
    pub key: SecretString,
    pub rate_per_second: f64,
    pub callback_delay: Duration,
    /// The agents that exist; `None`: every agent id does.
    pub agents: Option<Vec<String>>,
    pub duplicates: bool,
    pub out_of_order: bool,
}

impl SimulatorConfig {
    /// The defaults of `callhook simulator`, accepting `key`.
    pub fn new(key: &str) -> Self {
        Self {
            bind: DEFAULT_BIND.parse().expect("the default address parses"),
            key: SecretString::from(key.to_owned()),
            rate_per_second: DEFAULT_RATE_PER_SECOND,
            callback_delay: Duration::from_millis(DEFAULT_CALLBACK_DELAY_MS),
            agents: None,
            duplicates: false,
            out_of_order: false,
        }
    }
}
