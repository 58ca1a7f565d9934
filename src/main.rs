use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;

use callhook::cli::{Cli, Command, SimulatorArgs};
use callhook::config::{Config, ServeArgs};
use callhook::simulator::{self, Simulator};

/// mimalloc rather than the system allocator: a callback's path allocates many small,
/// short-lived values on several threads, where glibc's malloc spent a tenth of the service's
/// CPU (see the ingest benchmark in the README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse_args();
    match cli.command {
        None => run(cli.serve).await,
        Some(Command::Serve(args)) => run(args).await,
        Some(Command::Migrate { database_url }) => migrate(&database_url).await,
        Some(Command::Healthcheck { bind }) => healthcheck(&bind).await,
        Some(Command::Simulator(args)) => run_simulator(args).await,
    }
}

async fn run(args: ServeArgs) -> ExitCode {
    callhook::telemetry::init_logging(args.log_format);
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(variable = err.variable, "invalid configuration: {err}");
            eprintln!("callhook: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    warn_if_open(&config);
    let store = match callhook::open_store(&config).await {
        Ok(store) => store,
        Err(err) => {
            tracing::error!(error = %err, "cannot open the database named by DATABASE_URL");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(config.bind).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(error = %err, bind = %config.bind, "cannot listen on CALLHOOK_BIND");
            return ExitCode::FAILURE;
        }
    };
    let config = if config.simulate {
        match start_simulator(&listener).await {
            Ok((upstream, key, callhook)) => config.simulated(upstream, key, callhook),
            Err(err) => {
                tracing::error!(error = %err, "cannot start the AI Studio simulator");
                return ExitCode::FAILURE;
            }
        }
    } else {
        config
    };
    let backend = store.backend();
    let state = match callhook::state(&config, store) {
        Ok(state) => state,
        Err(err) => {
            tracing::error!(error = %err, "cannot open the callback spool");
            return ExitCode::FAILURE;
        }
    };
    // The bound address, not the configured one: with port 0 it tells which port was chosen.
    let address = listener
        .local_addr()
        .map_or_else(|_| config.bind.to_string(), |a| a.to_string());
    tracing::info!(
        address,
        database = backend.as_str(),
        public_url = config
            .public_url
            .as_deref()
            .unwrap_or("(unset: status URLs follow the Host of each POST /v1/calls)"),
        "callhook listening"
    );
    let app = callhook::app(state);
    match callhook::serve(listener, app, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("callhook stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// `--simulate`: a simulator on a free loopback port, for the service listening on `listener`.
async fn start_simulator(
    listener: &TcpListener,
) -> std::io::Result<(
    std::net::SocketAddr,
    secrecy::SecretString,
    std::net::SocketAddr,
)> {
    let callhook = simulator::reachable(listener.local_addr()?);
    let beside = simulator::start_beside().await?;
    tracing::warn!(
        simulator = %beside.address,
        "SIMULATING AI Studio: calls go to the built-in simulator, no phone rings; \
         the destination's last digit picks the outcome (0, 1, 9 answered; 2 busy; \
         3 timeout; 4 rejected; 5 cancelled; 6 failed; 7 duplicate busy; \
         8 out-of-order cancelled)"
    );
    Ok((beside.address, beside.key, callhook))
}

fn warn_if_open(config: &Config) {
    if config.spool_dir.is_none() {
        tracing::warn!(
            "CALLHOOK_SPOOL_DIR=off: status callbacks that arrive while the database is \
             unavailable are answered 500, and AI Studio does not send them again"
        );
    }
    if config.public_url.is_none() && config.vgai_api_key.is_some() {
        tracing::warn!(
            "CALLHOOK_PUBLIC_URL is not set: the status URL of each placed call is built from the \
             Host (or X-Forwarded-Host/-Proto) its POST /v1/calls arrived with; AI Studio must \
             be able to reach that address"
        );
    }
    if config.vgai_api_key.is_none() && !config.simulate {
        tracing::warn!(
            "VGAI_API_KEY is not set: POST /v1/calls answers 503 until it is; status callbacks \
             and queries work as usual"
        );
    }
    if config.api_tokens.is_empty() {
        tracing::warn!(
            "CALLHOOK_API_TOKENS is not set: the /v1 API is OPEN to anyone who can reach {} \
             (allowed only on loopback)",
            config.bind
        );
    }
    if config.ingest_secret.is_none() {
        tracing::warn!(
            "CALLHOOK_INGEST_SECRET is not set: any /v1/status/{{anything}} URL accepts callbacks \
             and per-call status URLs are signed with a well-known key (allowed only on loopback)"
        );
    }
}

/// `callhook simulator`: a stand-in for AI Studio until SIGTERM.
async fn run_simulator(args: SimulatorArgs) -> ExitCode {
    callhook::telemetry::init_logging(args.log_format);
    let config = match args.into_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("callhook simulator: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(config.bind).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(error = %err, bind = %config.bind, "cannot listen on CALLHOOK_SIMULATOR_BIND");
            return ExitCode::FAILURE;
        }
    };
    tracing::warn!(
        bind = %config.bind,
        rate_per_second = config.rate_per_second,
        callback_delay_ms = config.callback_delay.as_millis() as u64,
        agents = config.agents.as_ref().map_or_else(|| "any".to_owned(), |a| a.join(",")),
        duplicates = config.duplicates,
        out_of_order = config.out_of_order,
        "AI Studio simulator listening: set VGAI_BASE_URL=http://{} for callhook; \
         `callhook simulator --help` lists the outcome of each last digit",
        config.bind
    );
    match simulator::serve(listener, Simulator::new(config), shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "simulator failed");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(database_url: &str) -> ExitCode {
    callhook::telemetry::init_logging(None);
    let database_url = match callhook::config::database_url(database_url) {
        Ok(url) => url,
        Err(err) => {
            eprintln!("callhook migrate: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    match callhook::store::connect(&database_url).await {
        Ok(store) => match store.migrate().await {
            Ok(()) => {
                tracing::info!(database = store.backend().as_str(), "migrations applied");
                ExitCode::SUCCESS
            }
            Err(err) => {
                tracing::error!(error = %err, "migrations failed");
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            tracing::error!(error = %err, "cannot open the database named by DATABASE_URL");
            ExitCode::FAILURE
        }
    }
}

/// Asks the local service's /readyz; used by the container HEALTHCHECK (no curl needed).
async fn healthcheck(bind: &str) -> ExitCode {
    let Ok(mut addr) = bind.parse::<std::net::SocketAddr>() else {
        eprintln!("CALLHOOK_BIND: {bind:?} is not an address");
        return ExitCode::FAILURE;
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("the HTTP client builds");
    match client.get(format!("http://{addr}/readyz")).send().await {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("not ready: /readyz answered {}", response.status());
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("not ready: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
