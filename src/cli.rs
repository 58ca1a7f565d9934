//! The command line: the service (the default), `migrate`, `healthcheck` and `simulator`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    ConfigError, DEFAULT_BIND as SERVICE_BIND, DEFAULT_DATABASE_URL, ServeArgs, invalid, non_empty,
};
use crate::simulator::config::{
    DEFAULT_BIND, DEFAULT_CALLBACK_DELAY_MS, DEFAULT_RATE_PER_SECOND, SimulatorConfig,
};
use crate::telemetry::LogFormat;

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
            default_value = DEFAULT_DATABASE_URL,
            hide_env_values = true
        )]
        database_url: String,
    },
    /// Exit 0 when the service on CALLHOOK_BIND answers /readyz (for container HEALTHCHECKs).
    Healthcheck {
        #[arg(long, env = "CALLHOOK_BIND", default_value = SERVICE_BIND)]
        bind: String,
    },
    /// Run a stand-in for AI Studio's make-call API that sends status callbacks.
    #[command(after_help = crate::simulator::plan::OUTCOME_TABLE)]
    Simulator(SimulatorArgs),
}

/// Flags of `callhook simulator`.
#[derive(Debug, Clone, Args)]
pub struct SimulatorArgs {
    /// Listen address; callhook's VGAI_BASE_URL is `http://` and this address.
    #[arg(
        long,
        env = "CALLHOOK_SIMULATOR_BIND",
        default_value = DEFAULT_BIND
    )]
    pub bind: String,
    /// The X-Vgai-Key it accepts (others get 401).
    #[arg(long, env = "VGAI_API_KEY", hide_env_values = true)]
    pub key: String,
    /// Calls accepted per second per agent, in bursts of up to a second's worth; above it,
    /// 429 with Retry-After. 0: no limit.
    #[arg(long, default_value_t = DEFAULT_RATE_PER_SECOND)]
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

impl SimulatorArgs {
    /// The validated simulator configuration.
    pub fn into_config(self) -> Result<SimulatorConfig, ConfigError> {
        let args = self;
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
        Ok(SimulatorConfig {
            bind,
            rate_per_second: args.rate_per_second,
            callback_delay: Duration::from_millis(args.callback_delay_ms),
            agents: (!agents.is_empty()).then_some(agents),
            duplicates: args.duplicates,
            out_of_order: args.out_of_order,
            ..SimulatorConfig::new(&key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

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
                Some(Command::Simulator(args)) => args.into_config(),
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
