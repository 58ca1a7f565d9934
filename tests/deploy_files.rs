//! The deployment files (Dockerfile, docker-compose.yml, .env.example, .dockerignore) agree with
//! the binary: same port, a health check the binary answers, every configuration variable wired,
//! none misspelt. Plain line parsing: the crate has no YAML parser, and the files are ours.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// The configuration table of the product specification.
const SPEC_VARIABLES: [&str; 9] = [
    "DATABASE_URL",
    "CALLHOOK_BIND",
    "CALLHOOK_PUBLIC_URL",
    "CALLHOOK_API_TOKENS",
    "CALLHOOK_INGEST_SECRET",
    "VGAI_API_KEY",
    "VGAI_REGION",
    "VGAI_BASE_URL",
    "RUST_LOG",
];
/// Read by the log filter, not by clap, so `--help` does not list it.
const LOG_FILTER_VARIABLE: &str = "RUST_LOG";
/// Interpolated by docker compose itself; never passed to callhook under these names.
const COMPOSE_ONLY_VARIABLES: [&str; 2] = ["POSTGRES_PASSWORD", "CALLHOOK_PORT"];

fn read(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn callhook(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callhook"));
    command.args(args);
    for name in SPEC_VARIABLES {
        command.env_remove(name);
    }
    command.output().expect("the callhook binary runs")
}

fn help() -> String {
    let output = callhook(&["--help"]);
    assert!(output.status.success(), "callhook --help failed");
    String::from_utf8(output.stdout).unwrap()
}

/// Whether clap documents `name` as the environment variable of some flag.
fn help_names(help: &str, name: &str) -> bool {
    help.contains(&format!("[env: {name}]")) || help.contains(&format!("[env: {name}="))
}

/// Dockerfile instructions of the last stage (the runtime image), continuation lines joined.
fn runtime_stage() -> Vec<(String, String)> {
    let joined = read("Dockerfile").replace("\\\n", " ");
    let instructions: Vec<(String, String)> = joined
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            (keyword.to_ascii_uppercase(), rest.trim().to_owned())
        })
        .collect();
    let last_from = instructions
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("a FROM");
    instructions[last_from..].to_vec()
}

fn instruction<'a>(stage: &'a [(String, String)], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, rest)| rest.as_str())
        .collect()
}

/// `ENV A=1 B=2` pairs of the runtime stage.
fn image_env(stage: &[(String, String)]) -> Vec<(String, String)> {
    instruction(stage, "ENV")
        .iter()
        .flat_map(|rest| rest.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address:?}"))
}

/// The lines of one top-level service of docker-compose.yml (two-space indented services).
fn compose_service(name: &str) -> Vec<String> {
    let compose = read("docker-compose.yml");
    let header = format!("  {name}:");
    let mut lines = compose.lines().skip_while(|l| l.trim_end() != header);
    assert!(
        lines.next().is_some(),
        "docker-compose.yml has no service {name}"
    );
    lines
        .take_while(|l| l.trim().is_empty() || l.starts_with("    "))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Entries of a mapping such as `environment:` inside a service: `(key, value)`.
fn compose_mapping(service: &[String], key: &str) -> Vec<(String, String)> {
    let header = format!("    {key}:");
    let mut lines = service.iter().skip_while(|l| l.trim_end() != header);
    assert!(lines.next().is_some(), "no {key}: mapping in the service");
    lines
        .take_while(|l| l.starts_with("      "))
        .map(|l| {
            let entry = l.trim().trim_start_matches("- ");
            let (k, v) = entry
                .split_once(": ")
                .or_else(|| entry.split_once('='))
                .unwrap_or((entry, ""));
            (k.trim_end_matches(':').to_owned(), v.trim().to_owned())
        })
        .collect()
}

fn env_example_names() -> Vec<String> {
    read(".env.example")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split_once('=')
                .unwrap_or_else(|| panic!(".env.example: {l:?} is not NAME=value"))
                .0
                .to_owned()
        })
        .collect()
}

#[test]
fn exposed_port_is_the_port_of_the_image_bind_address() {
    let stage = runtime_stage();
    let env = image_env(&stage);
    let bind = env
        .iter()
        .find(|(k, _)| k == "CALLHOOK_BIND")
        .map(|(_, v)| v.as_str());
    let bind = bind.expect("the runtime image sets CALLHOOK_BIND");
    assert!(
        bind.starts_with("0.0.0.0:"),
        "the image must listen beyond loopback, not {bind}"
    );
    let exposed: Vec<&str> = instruction(&stage, "EXPOSE")
        .iter()
        .flat_map(|r| r.split_whitespace())
        .collect();
    assert_eq!(
        exposed,
        [port_of(bind).to_string()],
        "EXPOSE vs CALLHOOK_BIND={bind}"
    );
    assert!(
        env.contains(&("CALLHOOK_LOG_FORMAT".into(), "json".into())),
        "the image logs json"
    );
}

#[test]
fn healthcheck_runs_the_binarys_healthcheck_subcommand() {
    let stage = runtime_stage();
    let checks = instruction(&stage, "HEALTHCHECK");
    assert_eq!(checks.len(), 1, "one HEALTHCHECK in the runtime stage");
    let exec = checks[0]
        .split_once("CMD ")
        .expect("HEALTHCHECK ... CMD [..]")
        .1;
    let argv: Vec<String> =
        serde_json::from_str(exec).expect("HEALTHCHECK CMD in exec (JSON) form");
    assert!(
        argv[0] == "callhook" || argv[0].ends_with("/callhook"),
        "{argv:?}"
    );
    assert_eq!(argv[1..], ["healthcheck"]);
    let sub = callhook(&["healthcheck", "--help"]);
    assert!(
        sub.status.success(),
        "callhook has a healthcheck subcommand"
    );
    assert!(
        help_names(&String::from_utf8_lossy(&sub.stdout), "CALLHOOK_BIND"),
        "it reads CALLHOOK_BIND"
    );
}

#[test]
fn healthcheck_subcommand_asks_readyz_on_loopback_for_an_unspecified_bind() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut request_line = String::new();
        BufReader::new(&stream)
            .read_line(&mut request_line)
            .unwrap();
        (&stream)
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        request_line
    });
    let mut command = Command::new(env!("CARGO_BIN_EXE_callhook"));
    let output = command
        .arg("healthcheck")
        .env("CALLHOOK_BIND", format!("0.0.0.0:{port}"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(server.join().unwrap().starts_with("GET /readyz "));

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_callhook"))
        .arg("healthcheck")
        .env("CALLHOOK_BIND", closed.to_string())
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "nothing listens on {closed}: unhealthy"
    );
}

#[test]
fn runtime_image_runs_as_a_non_root_user() {
    let stage = runtime_stage();
    let users = instruction(&stage, "USER");
    let user = users.last().expect("a USER in the runtime stage");
    let name = user.split(':').next().unwrap();
    assert!(!["root", "0", ""].contains(&name), "USER {user}");
}

#[test]
fn dockerfile_builds_with_the_classic_builder_on_matching_debian() {
    let dockerfile = read("Dockerfile");
    for buildkit_only in [
        "--mount",
        "<<",
        "# syntax=",
        "--link",
        "--parents",
        "--exclude",
    ] {
        assert!(
            !dockerfile.contains(buildkit_only),
            "BuildKit-only syntax {buildkit_only:?}"
        );
    }
    let froms: Vec<String> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .map(str::to_owned)
        .collect();
    assert!(
        froms
            .iter()
            .any(|f| f.contains("rust:") && f.contains("-bookworm")),
        "{froms:?}"
    );
    assert!(
        froms.last().unwrap().contains("debian:bookworm"),
        "run on the builder's Debian release"
    );
    let ignore = read(".dockerignore");
    assert!(
        ignore
            .lines()
            .any(|l| l.trim().trim_end_matches('/') == "target"),
        "target/ kept out"
    );
    assert!(
        !ignore.lines().any(|l| l.trim().starts_with("migrations")),
        "sqlx::migrate! needs migrations/"
    );
}

#[test]
fn compose_wires_every_specified_variable_with_the_images_port() {
    let service = compose_service("callhook");
    let env = compose_mapping(&service, "environment");
    let names: BTreeSet<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    for name in SPEC_VARIABLES {
        assert!(
            names.contains(name),
            "docker-compose.yml does not set {name} for callhook"
        );
    }
    let value = |name: &str| env.iter().find(|(k, _)| k == name).unwrap().1.clone();
    assert!(
        value("DATABASE_URL").starts_with("postgres://"),
        "compose runs on Postgres"
    );
    assert!(
        value("DATABASE_URL").contains("@postgres:5432/"),
        "DATABASE_URL names the postgres service"
    );
    let bind_port = port_of(&value("CALLHOOK_BIND"));
    let stage = runtime_stage();
    assert!(instruction(&stage, "EXPOSE").contains(&bind_port.to_string().as_str()));
    let ports = compose_mapping(&service, "ports");
    let published = ports
        .iter()
        .map(|(k, _)| k.trim_matches('"'))
        .collect::<Vec<_>>();
    assert!(
        published
            .iter()
            .any(|p| p.ends_with(&format!(":{bind_port}"))),
        "ports {published:?}"
    );
    // Secrets come from .env; without them callhook refuses its non-loopback bind itself.
    for secret in ["CALLHOOK_API_TOKENS", "CALLHOOK_INGEST_SECRET"] {
        assert!(
            value(secret).starts_with(&format!("${{{secret}")),
            "{secret} comes from .env"
        );
    }
}

#[test]
fn compose_starts_callhook_only_once_postgres_is_healthy() {
    let service = compose_service("callhook");
    let depends = compose_mapping(&service, "depends_on");
    let at = depends
        .iter()
        .position(|(k, _)| k == "postgres")
        .expect("depends_on postgres");
    assert_eq!(
        depends.get(at + 1),
        Some(&("condition".into(), "service_healthy".into()))
    );
    let postgres = compose_service("postgres");
    assert!(
        postgres.iter().any(|l| l.trim() == "image: postgres:15"),
        "official postgres:15"
    );
    assert!(
        postgres.iter().any(|l| l.trim() == "healthcheck:"),
        "postgres has a healthcheck"
    );
    assert!(
        postgres.iter().any(|l| l.contains("pg_isready")),
        "the healthcheck asks pg_isready"
    );
}

#[test]
fn env_example_names_only_variables_the_binary_reads() {
    let help = help();
    let compose = read("docker-compose.yml");
    for name in env_example_names() {
        if COMPOSE_ONLY_VARIABLES.contains(&name.as_str()) {
            assert!(
                compose.contains(&format!("${{{name}")),
                "{name} is unused by docker-compose.yml"
            );
        } else {
            assert!(
                name == LOG_FILTER_VARIABLE || help_names(&help, &name),
                "callhook does not read {name}"
            );
            assert!(
                compose.contains(&format!("${{{name}")),
                "{name} is not passed through by compose"
            );
        }
    }
}

#[test]
fn compose_variables_are_known_and_documented() {
    let help = help();
    let documented = env_example_names();
    for (name, _) in compose_mapping(&compose_service("callhook"), "environment") {
        assert!(
            name == LOG_FILTER_VARIABLE || help_names(&help, &name),
            "callhook does not read {name}"
        );
    }
    let compose = read("docker-compose.yml");
    for interpolated in compose.split("${").skip(1) {
        let name: String = interpolated
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            documented.contains(&name),
            "${{{name}}} is not documented in .env.example"
        );
    }
}
