//! Logs (json or pretty), request spans, and the Prometheus recorder.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Installs the log subscriber; `RUST_LOG` filters (default `info`).
pub fn init_logging(format: Option<LogFormat>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 30.0,
                    ],
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding, tests): keep ours readable.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Counts a call's result as it changes (`callhook_call_results_total{result,source}`).
pub fn count_result(result: &str, source: crate::domain::call::ResultSource) {
    metrics::counter!(
        "callhook_call_results_total",
        "result" => crate::domain::call::result_label(result),
        "source" => source.as_str()
    )
    .increment(1);
}

/// Counts a callback that replaced an inferred `answered`: a sign that
/// `CALLHOOK_ANSWER_GRACE_SECS` is too short for the callbacks' delay.
pub fn count_correction() {
    metrics::counter!("callhook_results_corrected_total").increment(1);
}

/// Registers, at zero, the counters that alerts watch, so that they exist before their first
/// event (a rate over a series that appears late misses its first increase).
pub fn register_counters() {
    // Into the Prometheus recorder: before it is installed they would go nowhere.
    metrics_handle();
    for result in ["stored", "duplicate", "spooled", "busy"] {
        metrics::counter!("callhook_callbacks_total", "result" => result).increment(0);
    }
    for reason in ["secret", "signature"]
        .into_iter()
        .chain(crate::ingest::rejections::REASONS)
    {
        metrics::counter!("callhook_callbacks_rejected_total", "reason" => reason).increment(0);
    }
    for reason in crate::ingest::rejections::REASONS {
        for result in ["kept", "not_kept"] {
            metrics::counter!("callhook_rejected_callbacks_total", "reason" => reason, "result" => result)
                .increment(0);
        }
    }
    for state in crate::domain::call::CallState::ALL {
        metrics::counter!("callhook_calls_total", "state" => state.as_str()).increment(0);
    }
    use crate::domain::call::ResultSource;
    for (result, source) in [
        ("answered", ResultSource::Inferred),
        ("answered", ResultSource::Callback),
        ("not_placed", ResultSource::Upstream),
        ("unknown", ResultSource::Upstream),
    ] {
        metrics::counter!("callhook_call_results_total", "result" => result, "source" => source.as_str())
            .increment(0);
    }
    for result in crate::domain::campaign::COUNTED_RESULTS {
        metrics::counter!("callhook_campaign_attempts_total", "result" => result).increment(0);
    }
    for result in crate::webhooks::send::ATTEMPT_RESULTS {
        metrics::counter!("callhook_webhook_attempts_total", "result" => result).increment(0);
    }
    for status in ["delivered", "failed"] {
        metrics::counter!("callhook_webhook_deliveries_total", "status" => status).increment(0);
    }
    for name in [
        "callhook_spool_replayed_total",
        "callhook_spool_refused_total",
        "callhook_spool_damaged_files_total",
        "callhook_connections_refused_total",
        "callhook_results_corrected_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}
