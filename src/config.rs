//! Configuration from the environment (flags mirror it), validated once at start-up.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

use crate::http::server::ConnectionLimits;

/// Status-callback receiver, outcome store and call placer for Vonage AI Studio agents.
#[derive(Debug, Parser)]
#[command(name = "callhook", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    /// Parses the command line; exits 2 with a message when it cannot be read, and when the
    /// service's flags come before a subcommand (where they would not apply).
    pub fn parse_args() -> Self {
        use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
        let matches = Self::command().get_matches();
        if let Some((subcommand, _)) = matches.subcommand() {
            let early: Vec<String> = Self::command()
                .get_arguments()
                .filter(|arg| {
                    matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine)
                })
                .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
                .collect();
            if !early.is_empty() {
                Self::command()
                    .error(
                        clap::error::ErrorKind::ArgumentConflict,
                        format!(
                            "{} given before the subcommand would not apply to it: write \
                             `callhook {subcommand} {} …` (see `callhook {subcommand} --help`)",
                            early.join(", "),
                            early[0]
                        ),
                    )
                    .exit();
            }
        }
        Self::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate {
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "sqlite://callhook.db",
            hide_env_values = true
        )]
        database_url: String,
    },
    /// Exit 0 when the service on CALLHOOK_BIND answers /readyz (for container HEALTHCHECKs).
    Healthcheck {
        #[arg(long, env = "CALLHOOK_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
    },
    /// Run a stand-in for AI Studio's make-call API that sends status callbacks.
    #[command(after_help = crate::simulator::plan::OUTCOME_TABLE)]
    Simulator(SimulatorArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Region {
    Eu,
    Us,
}

impl Region {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eu => "eu",
            Self::Us => "us",
        }
    }

    pub fn base_url(self) -> &'static str {
        match self {
            Self::Eu => "https://studio-api-eu.ai.vonage.com",
            Self::Us => "https://studio-api-us.ai.vonage.com",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// `sqlite://FILE` (created if missing) or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://callhook.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Listen address.
    #[arg(long, env = "CALLHOOK_BIND", default_value = "127.0.0.1:8080")]
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
    #[arg(
        long,
        env = "VGAI_REGION",
        value_enum,
        default_value = "eu",
        ignore_case = true
    )]
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
    /// Most status callbacks committed in one transaction (group commit); 1 turns it off.
    #[arg(long, env = "CALLHOOK_INGEST_BATCH_MAX", default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub ingest_batch_max: u16,
    /// Directory where status callbacks are kept on disk while the database is unavailable,
    /// until they are replayed into it; created if missing. `off`: no spool (a callback the
    /// database cannot take is answered 500 and is lost).
    #[arg(long, env = "CALLHOOK_SPOOL_DIR", default_value = DEFAULT_SPOOL_DIR)]
    pub spool_dir: String,
    /// Place calls through a built-in AI Studio simulator on a free loopback port, wiring
    /// VGAI_BASE_URL, VGAI_API_KEY and CALLHOOK_PUBLIC_URL to it (`callhook simulator --help`
    /// tells which number gives which outcome).
    #[arg(long)]
    pub simulate: bool,
}

/// Flags of `callhook simulator`.
#[derive(Debug, Clone, Args)]
pub struct SimulatorArgs {
    /// Listen address; callhook's VGAI_BASE_URL is `http://` and this address.
    #[arg(
        long,
        env = "CALLHOOK_SIMULATOR_BIND",
        default_value = "127.0.0.1:9090"
    )]
    pub bind: String,
    /// The X-Vgai-Key it accepts (others get 401).
    #[arg(long, env = "VGAI_API_KEY", hide_env_values = true)]
    pub key: String,
    /// Calls accepted per second per agent, in bursts of up to a second's worth; above it,
    /// 429 with Retry-After. 0: no limit.
    #[arg(long, default_value_t = 5.0)]
    pub rate_per_second: f64,
    /// Milliseconds between accepting a call and sending its status callbacks.
    #[arg(long, default_value_t = DEFAULT_CALLBACK_DELAY_MS)]
    pub callback_delay_ms: u64,
    /// Comma-separated agent ids that exist; others get 404. Unset: every agent id exists.
    #[arg(long, value_delimiter = ',')]
    pub agents: Vec<String>,
    /// Deliver every status callback twice.
    #[arg(long)]
    pub duplicates: bool,
    /// Also send, after each call's callback, an event timestamped a second earlier.
    #[arg(long)]
    pub out_of_order: bool,
    /// Log format: json, or pretty (the default when stderr is a terminal).
    #[arg(long, env = "CALLHOOK_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

const DEFAULT_CALLBACK_DELAY_MS: u64 = 2_000;
const DEFAULT_SPOOL_DIR: &str = "callhook-spool";
const DEFAULT_RATE_PER_SECOND: f64 = 5.0;

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
            bind: SocketAddr::from(([127, 0, 0, 1], 9090)),
            key: SecretString::from(key.to_owned()),
            rate_per_second: DEFAULT_RATE_PER_SECOND,
            callback_delay: Duration::from_millis(DEFAULT_CALLBACK_DELAY_MS),
            agents: None,
            duplicates: false,
            out_of_order: false,
        }
    }

    pub fn from_args(args: SimulatorArgs) -> Result<Self, ConfigError> {
        let bind: SocketAddr = args.bind.trim().parse().map_err(|_| {
            invalid(
                "CALLHOOK_SIMULATOR_BIND",
                format!("{:?} is not an address such as 127.0.0.1:9090", args.bind),
            )
        })?;
        let key = non_empty(Some(args.key)).ok_or_else(|| invalid("VGAI_API_KEY", "is empty"))?;
        if !args.rate_per_second.is_finite() || args.rate_per_second < 0.0 {
            return Err(invalid(
                "--rate-per-second",
                "must be a number of calls per second, 0 for no limit",
            ));
        }
        let agents: Vec<String> = args
            .agents
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        Ok(Self {
            bind,
            rate_per_second: args.rate_per_second,
            callback_delay: Duration::from_millis(args.callback_delay_ms),
            agents: (!agents.is_empty()).then_some(agents),
            duplicates: args.duplicates,
            out_of_order: args.out_of_order,
            ..Self::new(&key)
        })
    }
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
    pub connections: ConnectionLimits,
    /// Most refused callbacks kept; 0 keeps none.
    pub rejected_max: u32,
    pub ingest_batch_max: usize,
    /// `None`: spooling is off.
    pub spool_dir: Option<std::path::PathBuf>,
    /// Calls go to a built-in simulator that `main` starts and wires in.
    pub simulate: bool,
}

/// A configuration refused at start-up, naming the variable and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

fn invalid(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        reason: reason.into(),
    }
}

/// Empty variables count as unset, as in most deployment tools.
fn non_empty(value: Option<String>) -> Option<String> {
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
            connections: ConnectionLimits {
                header_timeout: seconds("CALLHOOK_HEADER_TIMEOUT_SECS", args.header_timeout_secs)?,
                max_connections: args.max_connections as usize,
                shutdown_grace: seconds("CALLHOOK_SHUTDOWN_GRACE_SECS", args.shutdown_grace_secs)?,
            },
            rejected_max: args.rejected_max,
            ingest_batch_max: usize::from(args.ingest_batch_max),
            spool_dir: match args.spool_dir.trim() {
                "off" => None,
                "" => Some(DEFAULT_SPOOL_DIR.into()),
                dir => Some(dir.into()),
            },
            simulate: args.simulate,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> ServeArgs {
        let mut argv = vec!["callhook".to_owned()];
        for (flag, value) in pairs {
            argv.push(format!("--{flag}={value}"));
        }
        Cli::try_parse_from(argv).unwrap().serve
    }

    #[test]
    fn loopback_may_run_open() {
        let config = Config::from_args(args(&[])).unwrap();
        assert!(config.api_tokens.is_empty());
        assert_eq!(config.vgai_base_url, "https://studio-api-eu.ai.vonage.com");
    }

    #[test]
    fn public_bind_requires_tokens_and_secret() {
        let err = Config::from_args(args(&[("bind", "0.0.0.0:8080")])).unwrap_err();
        assert_eq!(err.variable, "CALLHOOK_API_TOKENS");
        let err =
            Config::from_args(args(&[("bind", "0.0.0.0:8080"), ("api-tokens", "t1")])).unwrap_err();
        assert_eq!(err.variable, "CALLHOOK_INGEST_SECRET");
        let config = Config::from_args(args(&[
            ("bind", "0.0.0.0:8080"),
            ("api-tokens", "t1, t2"),
            ("ingest-secret", "s3cret"),
        ]))
        .unwrap();
        assert_eq!(config.api_tokens.len(), 2);
    }

    #[test]
    fn simulate_follows_the_loopback_rule() {
        let config = |argv: &[&str]| {
            let mut full = vec!["callhook", "--simulate"];
            full.extend_from_slice(argv);
            Config::from_args(Cli::try_parse_from(full).unwrap().serve)
        };
        assert!(config(&[]).unwrap().simulate);
        let err = config(&["--bind", "0.0.0.0:8080"]).unwrap_err();
        assert_eq!(err.variable, "CALLHOOK_API_TOKENS");
        let open = ["--api-tokens", "t1", "--ingest-secret", "s3cret"];
        assert!(
            config(&[&["--bind", "0.0.0.0:8080"], &open[..]].concat())
                .unwrap()
                .simulate
        );
        let argv = ["callhook", "serve", "--simulate"];
        let Some(Command::Serve(serve)) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("serve subcommand");
        };
        assert!(serve.simulate);
    }

    #[test]
    fn simulator_flags_are_validated() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["callhook", "simulator", "--key", "k"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Some(Command::Simulator(args)) => SimulatorConfig::from_args(args),
                other => panic!("simulator subcommand, got {other:?}"),
            }
        };
        let config = parse(&["--agents", "a1, a2", "--callback-delay-ms", "10"]).unwrap();
        assert_eq!(config.agents, Some(vec!["a1".to_owned(), "a2".to_owned()]));
        assert_eq!(config.callback_delay, Duration::from_millis(10));
        assert_eq!(parse(&[]).unwrap().agents, None);
        assert_eq!(
            parse(&["--rate-per-second=-1"]).unwrap_err().variable,
            "--rate-per-second"
        );
        assert_eq!(
            parse(&["--bind", "nowhere"]).unwrap_err().variable,
            "CALLHOOK_SIMULATOR_BIND"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (flag, value, variable) in [
            ("bind", "localhost", "CALLHOOK_BIND"),
            ("database-url", "mysql://x", "DATABASE_URL"),
            ("public-url", "ftp://example.com", "CALLHOOK_PUBLIC_URL"),
            ("vgai-base-url", "not a url", "VGAI_BASE_URL"),
            ("ingest-secret", "a/b", "CALLHOOK_INGEST_SECRET"),
        ] {
            let err = Config::from_args(args(&[(flag, value)])).unwrap_err();
            assert_eq!(err.variable, variable);
        }
    }
}
