//! Configuration from the environment (flags mirror it), validated once at start-up.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;

use crate::domain::webhook::RetrySchedule;
use crate::telemetry::LogFormat;
use crate::upstream::Region;

/// `sqlite://callhook.db`, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://callhook.db";
/// Loopback, so that a service started without secrets is not open to the network.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
const DEFAULT_SPOOL_DIR: &str = "callhook-spool";

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// `sqlite://FILE` (created if missing) or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub database_url: String,
    /// Listen address.
    #[arg(long, env = "CALLHOOK_BIND", default_value = DEFAULT_BIND)]
    pub bind: String,
    /// External base URL of this service; per-call status URLs are built from it.
    #[arg(long, env = "CALLHOOK_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Comma-separated bearer tokens accepted on the /v1 API.
    #[arg(long, env = "CALLHOOK_API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<String>,
    /// Secret path segment of the shared status URL /v1/status/{secret}.
    #[arg(long, env = "CALLHOOK_INGEST_SECRET", hide_env_values = true)]
    pub ingest_secret: Option<String>,
    /// The X-Vgai-Key used to place calls.
    #[arg(long, env = "VGAI_API_KEY", hide_env_values = true)]
    pub vgai_api_key: Option<String>,
    /// AI Studio region of the agents.
    #[arg(long, env = "VGAI_REGION", default_value = "eu", value_parser = parse_region)]
    pub vgai_region: Region,
    /// Full override of the upstream base URL (proxies, tests).
    #[arg(long, env = "VGAI_BASE_URL")]
    pub vgai_base_url: Option<String>,
    /// Seconds to wait for AI Studio to answer a make-call request.
    #[arg(long, env = "VGAI_TIMEOUT_SECS", default_value_t = 10.0)]
    pub vgai_timeout_secs: f64,
    /// Log format: json, or pretty (the default when stderr is a terminal).
    #[arg(long, env = "CALLHOOK_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Seconds after AI Studio initiates a call with no status callback for it before its
    /// result is inferred as `answered` (AI Studio reports only calls not picked up).
    #[arg(long, env = "CALLHOOK_ANSWER_GRACE_SECS", default_value_t = 180.0)]
    pub answer_grace_secs: f64,
    /// Seconds after which a request is abandoned with 408.
    #[arg(long, env = "CALLHOOK_REQUEST_TIMEOUT_SECS", default_value_t = 30.0)]
    pub request_timeout_secs: f64,
    /// Seconds a connection may take to send a request's headers, counted from when it opens
    /// or finishes its previous response; so also how long an idle keep-alive connection stays.
    #[arg(long, env = "CALLHOOK_HEADER_TIMEOUT_SECS", default_value_t = 10.0)]
    pub header_timeout_secs: f64,
    /// Most connections open at once; past it the longest-idle one is closed, and when none is
    /// idle new ones are answered 503.
    #[arg(long, env = "CALLHOOK_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a shutdown waits for requests in flight before closing the connections left.
    #[arg(long, env = "CALLHOOK_SHUTDOWN_GRACE_SECS", default_value_t = 10.0)]
    pub shutdown_grace_secs: f64,
    /// Most refused status callbacks kept for GET /v1/rejected; the oldest go first.
    #[arg(long, env = "CALLHOOK_REJECTED_MAX", default_value_t = 10_000)]
    pub rejected_max: u32,
    /// Most status callbacks waiting for a writer; one that finds no room within a second is
    /// answered 503 with Retry-After.
    #[arg(long, env = "CALLHOOK_INGEST_QUEUE_MAX", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub ingest_queue_max: u32,
    /// Most status callbacks committed in one transaction (group commit); 1 turns it off.
    #[arg(long, env = "CALLHOOK_INGEST_BATCH_MAX", default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub ingest_batch_max: u16,
    /// Directory where status callbacks are kept on disk while the database is unavailable,
    /// until they are replayed into it; created if missing. `off`: no spool (a callback the
    /// database cannot take is answered 500 and is lost).
    #[arg(long, env = "CALLHOOK_SPOOL_DIR", default_value = DEFAULT_SPOOL_DIR)]
    pub spool_dir: String,
    /// Seconds one outgoing webhook delivery may take.
    #[arg(long, env = "CALLHOOK_WEBHOOK_TIMEOUT_SECS", default_value_t = 15.0)]
    pub webhook_timeout_secs: f64,
    /// Seconds to wait before each retry of a failed outgoing webhook delivery, after the
    /// first try, comma-separated (empty: no retries).
    #[arg(long, env = "CALLHOOK_WEBHOOK_RETRY_SCHEDULE", default_value = RetrySchedule::DEFAULT)]
    pub webhook_retry_schedule: String,
    /// `true` lets webhook subscriptions target loopback and private addresses (tests,
    /// internal receivers).
    #[arg(long, env = "CALLHOOK_WEBHOOK_ALLOW_PRIVATE", default_value = "false", value_parser = parse_allow_private, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,
    /// Seconds delivered and failed webhook deliveries stay in the delivery log.
    #[arg(
        long,
        env = "CALLHOOK_WEBHOOK_RETENTION_SECS",
        default_value_t = 604_800.0
    )]
    pub webhook_retention_secs: f64,
    /// Place calls through a built-in AI Studio simulator on a free loopback port, wiring
    /// VGAI_BASE_URL, VGAI_API_KEY and CALLHOOK_PUBLIC_URL to it (`callhook simulator --help`
    /// tells which number gives which outcome).
    #[arg(long)]
    pub simulate: bool,
}

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time allowed for a request's headers, counted from when the connection starts waiting
    /// for one: a new connection, or a keep-alive one after its previous response.
    pub header_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight before closing what is still open.
    pub shutdown_grace: Duration,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub bind: SocketAddr,
    pub public_url: Option<String>,
    pub api_tokens: Vec<SecretString>,
    pub ingest_secret: Option<SecretString>,
    pub vgai_api_key: Option<SecretString>,
    pub vgai_region: Region,
    pub vgai_base_url: String,
    pub vgai_timeout: Duration,
    pub request_timeout: Duration,
    /// How long an initiated call waits for a callback before it counts as answered.
    pub answer_grace: Duration,
    pub connections: ConnectionLimits,
    /// Most refused callbacks kept; 0 keeps none.
    pub rejected_max: u32,
    pub ingest_batch_max: usize,
    pub ingest_queue_max: usize,
    /// `None`: spooling is off.
    pub spool_dir: Option<std::path::PathBuf>,
    /// Calls go to a built-in simulator that `main` starts and wires in.
    pub simulate: bool,
    pub webhooks: crate::webhooks::Settings,
}

/// A configuration refused at start-up, naming the variable and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

pub(crate) fn invalid(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        reason: reason.into(),
    }
}

/// Empty variables count as unset, as in most deployment tools.
pub(crate) fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Config {
    pub fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
        let bind: SocketAddr = args.bind.trim().parse().map_err(|_| {
            invalid(
                "CALLHOOK_BIND",
                format!("{:?} is not an address such as 127.0.0.1:8080", args.bind),
            )
        })?;
        let database_url = database_url(&args.database_url)?;
        let public_url = non_empty(args.public_url)
            .map(|url| validate_base_url("CALLHOOK_PUBLIC_URL", &url))
            .transpose()?;
        let vgai_base_url = match non_empty(args.vgai_base_url) {
            Some(url) => validate_base_url("VGAI_BASE_URL", &url)?,
            None => args.vgai_region.base_url().to_owned(),
        };
        let api_tokens: Vec<SecretString> = non_empty(args.api_tokens)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::from(t.to_owned()))
            .collect();
        let ingest_secret = non_empty(args.ingest_secret);
        // The secret is one path segment, compared after percent-decoding: only what cannot
        // stand in a segment as typed is refused.
        if let Some(secret) = &ingest_secret
            && secret
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "/?#".contains(c))
        {
            return Err(invalid(
                "CALLHOOK_INGEST_SECRET",
                "must be usable as one URL path segment: no spaces, control characters, / ? or #",
            ));
        }
        if !bind.ip().is_loopback() && (api_tokens.is_empty() || ingest_secret.is_none()) {
            return Err(invalid(
                if api_tokens.is_empty() {
                    "CALLHOOK_API_TOKENS"
                } else {
                    "CALLHOOK_INGEST_SECRET"
                },
                format!(
                    "required when CALLHOOK_BIND is not a loopback address ({bind}); set both \
                     CALLHOOK_API_TOKENS and CALLHOOK_INGEST_SECRET, or bind to 127.0.0.1"
                ),
            ));
        }
        Ok(Self {
            database_url,
            bind,
            public_url,
            api_tokens,
            ingest_secret: ingest_secret.map(SecretString::from),
            vgai_api_key: non_empty(args.vgai_api_key).map(SecretString::from),
            vgai_region: args.vgai_region,
            vgai_base_url,
            vgai_timeout: seconds("VGAI_TIMEOUT_SECS", args.vgai_timeout_secs)?,
            request_timeout: seconds("CALLHOOK_REQUEST_TIMEOUT_SECS", args.request_timeout_secs)?,
            answer_grace: answer_grace(args.answer_grace_secs)?,
            connections: ConnectionLimits {
                header_timeout: seconds("CALLHOOK_HEADER_TIMEOUT_SECS", args.header_timeout_secs)?,
                max_connections: args.max_connections as usize,
                shutdown_grace: seconds("CALLHOOK_SHUTDOWN_GRACE_SECS", args.shutdown_grace_secs)?,
            },
            rejected_max: args.rejected_max,
            ingest_batch_max: usize::from(args.ingest_batch_max),
            ingest_queue_max: args.ingest_queue_max as usize,
            spool_dir: match args.spool_dir.trim() {
                "off" => None,
                "" => Some(DEFAULT_SPOOL_DIR.into()),
                dir => Some(dir.into()),
            },
            simulate: args.simulate,
            webhooks: crate::webhooks::Settings {
                timeout: seconds("CALLHOOK_WEBHOOK_TIMEOUT_SECS", args.webhook_timeout_secs)?,
                schedule: RetrySchedule::parse(&args.webhook_retry_schedule)
                    .map_err(|reason| invalid("CALLHOOK_WEBHOOK_RETRY_SCHEDULE", reason))?,
                allow_private: args.webhook_allow_private,
                retention: seconds(
                    "CALLHOOK_WEBHOOK_RETENTION_SECS",
                    args.webhook_retention_secs,
                )?,
            },
        })
    }
}

/// A `DATABASE_URL` of a backend callhook has: `sqlite:` or `postgres(ql):`.
pub fn database_url(raw: &str) -> Result<String, ConfigError> {
    let url = raw.trim();
    if ["sqlite:", "postgres:", "postgresql:"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        Ok(url.to_owned())
    } else {
        Err(invalid(
            "DATABASE_URL",
            "must start with sqlite:// or postgres://",
        ))
    }
}

impl Config {
    /// This configuration with calls placed through a simulator at `upstream` (accepting
    /// `key`), and status URLs pointing back at `callhook`, the address it listens on.
    pub fn simulated(self, upstream: SocketAddr, key: SecretString, callhook: SocketAddr) -> Self {
        if self.vgai_api_key.is_some() || self.public_url.is_some() {
            tracing::warn!(
                "--simulate replaces VGAI_API_KEY, VGAI_BASE_URL and CALLHOOK_PUBLIC_URL: \
                 no call reaches AI Studio"
            );
        }
        Self {
            vgai_base_url: format!("http://{upstream}"),
            public_url: Some(format!("http://{callhook}")),
            vgai_api_key: Some(key),
            ..self
        }
    }
}

/// The grace window: positive, and at most 30 days (a call is long over by then).
fn answer_grace(value: f64) -> Result<Duration, ConfigError> {
    let variable = "CALLHOOK_ANSWER_GRACE_SECS";
    let grace = seconds(variable, value)?;
    if grace > Duration::from_secs(30 * 24 * 60 * 60) {
        return Err(invalid(
            variable,
            "must be at most 2592000 seconds (30 days)",
        ));
    }
    Ok(grace)
}

fn seconds(variable: &'static str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| invalid(variable, "must be a positive number of seconds"))
}

/// An http(s) URL without query or fragment, returned without its trailing slash.
fn validate_base_url(variable: &'static str, url: &str) -> Result<String, ConfigError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| invalid(variable, format!("is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(variable, "must be an http:// or https:// URL"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(variable, "must not have a query or fragment"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`), as deployment tools write them.
fn parse_allow_private(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        other => Err(format!(
            "CALLHOOK_WEBHOOK_ALLOW_PRIVATE must be true or false, not {other:?}"
        )),
    }
}

fn parse_region(raw: &str) -> Result<Region, String> {
    raw.parse()
}
