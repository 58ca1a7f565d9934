//! The binary as an operator starts it: configuration refusals and --help.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn callhook(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callhook"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the binary runs")
}

#[test]
fn help_documents_every_variable() {
    let output = callhook(&["--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "DATABASE_URL",
        "CALLHOOK_BIND",
        "CALLHOOK_PUBLIC_URL",
        "CALLHOOK_API_TOKENS",
        "CALLHOOK_INGEST_SECRET",
        "VGAI_API_KEY",
        "VGAI_REGION",
        "VGAI_BASE_URL",
        "CALLHOOK_ANSWER_GRACE_SECS",
        "CALLHOOK_REJECTED_MAX",
        "CALLHOOK_WEBHOOK_TIMEOUT_SECS",
        "CALLHOOK_WEBHOOK_RETRY_SCHEDULE",
        "CALLHOOK_WEBHOOK_ALLOW_PRIVATE",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "{variable} missing from --help"
        );
    }
}

#[test]
fn help_never_shows_secret_values() {
    let output = callhook(
        &["--help"],
        &[
            ("CALLHOOK_API_TOKENS", "token-shown-nowhere"),
            ("CALLHOOK_INGEST_SECRET", "secret-shown-nowhere"),
            ("VGAI_API_KEY", "key-shown-nowhere"),
            (
                "DATABASE_URL",
                "postgres://user:password-shown-nowhere@db/x",
            ),
        ],
    );
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(!help.contains("shown-nowhere"), "{help}");
}

#[test]
fn public_bind_without_tokens_and_secret_is_refused() {
    let output = callhook(&[], &[("CALLHOOK_BIND", "0.0.0.0:0")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CALLHOOK_API_TOKENS"), "{stderr}");

    let output = callhook(
        &[],
        &[("CALLHOOK_BIND", "0.0.0.0:0"), ("CALLHOOK_API_TOKENS", "t")],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("CALLHOOK_INGEST_SECRET"));
}

#[test]
fn invalid_values_name_their_variable() {
    for (variable, value) in [
        ("CALLHOOK_BIND", "localhost:http"),
        ("DATABASE_URL", "mysql://db/x"),
        ("CALLHOOK_PUBLIC_URL", "callhook.example.com"),
        ("VGAI_BASE_URL", "ftp://example.com"),
        ("CALLHOOK_ANSWER_GRACE_SECS", "0"),
        ("CALLHOOK_ANSWER_GRACE_SECS", "1e13"),
        ("CALLHOOK_WEBHOOK_TIMEOUT_SECS", "0"),
        ("CALLHOOK_WEBHOOK_RETRY_SCHEDULE", "5,soon"),
        ("CALLHOOK_WEBHOOK_RETENTION_SECS", "-1"),
    ] {
        let output = callhook(&[], &[(variable, value)]);
        assert_eq!(output.status.code(), Some(2), "{variable}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(variable), "{variable}: {stderr}");
    }
    for (variable, value) in [
        ("VGAI_REGION", "asia"),
        ("CALLHOOK_WEBHOOK_ALLOW_PRIVATE", "maybe"),
    ] {
        let output = callhook(&[], &[(variable, value)]);
        assert!(!output.status.success(), "{variable}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(variable), "{variable}: {stderr}");
    }
}

#[test]
fn an_unusable_spool_directory_stops_start_up_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("spool.db").display());
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let spool = not_a_dir.join("spool");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callhook"))
        .env_clear()
        .envs([
            ("DATABASE_URL", url.as_str()),
            ("CALLHOOK_BIND", "127.0.0.1:0"),
            ("CALLHOOK_SPOOL_DIR", spool.to_str().unwrap()),
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Should start-up not stop, the server would run for ever: give up after a deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("callhook started with an unusable CALLHOOK_SPOOL_DIR");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("CALLHOOK_SPOOL_DIR"), "{stderr}");
}

#[test]
fn migrate_creates_the_schema_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    for _ in 0..2 {
        let output = callhook(&["migrate"], &[("DATABASE_URL", &url)]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(dir.path().join("fresh.db").exists());
}

#[test]
fn service_flags_before_a_subcommand_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("early.db").display());
    let output = callhook(&["--database-url", &url, "migrate"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--database-url") && stderr.contains("callhook migrate --database-url"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("early.db").exists(),
        "nothing was migrated"
    );
    let output = callhook(&["--bind", "127.0.0.1:1", "healthcheck"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("callhook healthcheck --bind"));
    // After the subcommand they apply.
    let output = callhook(&["migrate", "--database-url", &url], &[]);
    assert!(output.status.success());
    assert!(dir.path().join("early.db").exists());
}

#[test]
fn migrate_refuses_an_unsupported_database_url_as_configuration() {
    let output = callhook(&["migrate"], &[("DATABASE_URL", "mysql://db/x")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL"));
}
