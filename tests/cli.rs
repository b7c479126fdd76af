//! The real binary: `--help`, exit codes for configuration and bind errors, and clean exits on
//! SIGTERM and SIGINT.

use std::process::{Command, Stdio};
use std::time::Duration;

use sts_sidecar::testing::fake_sts::{Gate, StsReply};

use crate::support::{AUTH_TOKEN, Options, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_sts-sidecar");

fn command() -> Command {
    program(BIN)
}

/// `program` with an empty environment but `PATH`.
fn program(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

#[test]
fn help_teaches_the_flags_and_exits_zero() {
    let out = command().args(["serve", "--help"]).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--admin-listen",
        "--token-service-url",
        "--token-service-ca",
        "--role-arn",
        "--role-session-name",
        "--duration",
        "--auth-token-file",
        "--config",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        assert!(text.contains(flag), "{flag} missing from serve --help");
    }
    let out = command().arg("--version").output().expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_reads_as_a_new_user_needs_it() {
    // See: issue #10 (summaries broke mid-sentence; exec showed fixed ports it never uses;
    // credential-process listed flags that do nothing there).
    let help = |args: &[&str]| {
        let out = command().args(args).output().expect("run");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = help(&["--help"]);
    for line in [
        "  serve               Fetch credentials for the configured roles, keep them fresh, and serve them\n",
        "  exec                Run a command with credentials from a private server on ephemeral ports\n",
        "  credential-process  Print credentials as credential_process JSON, for ~/.aws/config\n",
        "  check               Diagnose the setup and print the trust policy each role needs\n",
    ] {
        assert!(top.contains(line), "{line:?} not one line in\n{top}");
    }
    let exec = help(&["exec", "--help"]);
    assert!(!exec.contains("61679") && !exec.contains("61680"), "{exec}");
    assert!(
        exec.contains("[default: 127.0.0.1:0, an ephemeral port]"),
        "{exec}"
    );
    assert!(
        !exec.contains("--auth-token-file"),
        "exec always generates its token"
    );
    let process = help(&["credential-process", "--help"]);
    for flag in ["--listen", "--admin-listen", "--imds", "--auth-token-file"] {
        assert!(
            !process.contains(flag),
            "{flag} in credential-process --help"
        );
    }
    for flag in ["--role-arn", "--token-file", "--oidc-token-url", "--source"] {
        assert!(
            process.contains(flag),
            "{flag} missing from credential-process --help"
        );
    }
    let check = help(&["check", "--help"]);
    assert!(
        check.contains("--trust-policy") && check.contains("--wait"),
        "{check}"
    );
}

#[test]
fn configuration_errors_exit_64_listing_every_problem() {
    let out = command()
        .args(["serve", "--duration", "60"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "--duration: must be a whole number from 900 to 43200",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "CF_INSTANCE_CERT",
        "token_service.url",
        "no role ARN",
    ] {
        assert!(err.contains(needle), "{needle} missing:\n{err}");
    }
    let out = command().args(["serve", "--bogus"]).output().expect("run");
    assert_eq!(out.status.code(), Some(64));

    // A source that cannot be set up is a configuration error naming the file, after binding.
    let out = command()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--token-service-url", "https://cits.example.com"])
        .args(["--token-service-ca", "/nonexistent/ca.pem"])
        .args(["--role-arn", "arn:aws:iam::123456789012:role/x"])
        .env("CF_INSTANCE_CERT", "/c")
        .env("CF_INSTANCE_KEY", "/k")
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "0123456789abcdef0123")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn a_certificate_or_key_that_is_not_there_stops_serve_at_start_naming_it() {
    // See: issue #24 (a typo in the certificate path looked like a healthy start: "serving",
    // one WARN line, then 503s forever).
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("instance.key");
    std::fs::write(&key, "a key the refresher would read").expect("write");
    let serve = |cert: &str| {
        command()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--token-service-url", "https://cits.example.com"])
            .args(["--role-arn", "arn:aws:iam::123456789012:role/x"])
            .args(["--cert-file", cert])
            .arg("--key-file")
            .arg(&key)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "0123456789abcdef0123")
            .output()
            .expect("run")
    };
    let out = serve("/nonexistent/instance.crt");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cert-file: /nonexistent/instance.crt does not exist")
            && err.contains("CF_INSTANCE_CERT"),
        "{err}"
    );
    assert!(!err.contains("serving"), "{err}");
    // A directory is no better.
    let out = serve(&dir.path().display().to_string());
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a directory, not a file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `check --config-only` says the same; at staging, the stand-ins for Diego's paths are
    // not there and that is fine (commands::check_config_only_judges_the_configuration_as_at_staging).
    let out = command()
        .args(["check", "--config-only"])
        .args(["--token-service-url", "https://cits.example.com"])
        .args(["--role-arn", "arn:aws:iam::123456789012:role/x"])
        .args(["--cert-file", "/nonexistent/instance.crt"])
        .arg("--key-file")
        .arg(&key)
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "0123456789abcdef0123")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/instance.crt does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn spawn_serve(
    stack: &Stack,
    listen: &str,
    extra_env: &[(&str, &str)],
) -> std::process::Child {
    spawn_serve_via(stack, listen, &stack.sts.endpoint(), extra_env).await
}

async fn spawn_serve_via(
    stack: &Stack,
    listen: &str,
    sts_endpoint: &str,
    extra_env: &[(&str, &str)],
) -> std::process::Child {
    let mut cmd = serve_command(stack, listen, sts_endpoint);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn")
}

/// `sts-sidecar serve` against `stack` (not started), its stderr piped.
fn serve_command(stack: &Stack, listen: &str, sts_endpoint: &str) -> Command {
    let config = stack.config();
    let mut cmd = command();
    cmd.args(["serve", "--listen", listen, "--admin-listen", "127.0.0.1:0"])
        .args([
            "--token-service-url",
            &crate::support::token_service(&config).url,
        ])
        .args([
            "--token-service-ca",
            &stack.pki.server_ca_path().display().to_string(),
        ])
        .args(["--role-arn", "arn:aws:iam::123456789012:role/cli"])
        .args(["--sts-endpoint", sts_endpoint])
        .env("CF_INSTANCE_CERT", stack.pki.cert_path())
        .env("CF_INSTANCE_KEY", stack.pki.key_path())
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH_TOKEN)
        .env("STS_SIDECAR_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn a_full_disk_for_the_auth_token_file_exits_1_naming_it_and_leaves_nothing_behind() {
    // A real ENOSPC: a 4 KiB tmpfs, filled, in a private mount namespace (unshare), so
    // nothing outside this test sees it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let stack = rt.block_on(Stack::with(Options {
        start: false,
        ..Options::default()
    }));
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("auth-token");
    let serve = serve_command(&stack, "127.0.0.1:0", &stack.sts.endpoint());
    let mut cmd = program("unshare");
    cmd.args(["--mount", "--map-root-user", "sh", "-c"])
        .arg(
            r#"d=$1; shift
            mount -t tmpfs -o size=4k tmpfs "$d" || exit 99
            head -c 8192 /dev/zero > "$d/fill" 2>/dev/null
            "$@"; code=$?
            echo "left in $d: $(ls -A "$d" | tr '\n' ' ')" >&2
            exit $code"#,
        )
        .arg("sh")
        .arg(dir.path())
        .arg(BIN)
        .args(serve.get_args())
        .args(["--auth-token-file", &token_file.display().to_string()])
        .stdout(Stdio::null());
    for (k, v) in serve.get_envs() {
        if let Some(v) = v
            && k != "AWS_CONTAINER_AUTHORIZATION_TOKEN"
        {
            cmd.env(k, v);
        }
    }
    let out = cmd.output().expect("run unshare");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(99), "cannot mount a tmpfs: {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot write the authorization token file {}",
            token_file.display()
        )) && err.contains("No space left on device"),
        "{err}"
    );
    // Neither the token file nor the temporary file it is written through.
    assert!(
        err.contains("left in ") && err.trim_end().ends_with(": fill"),
        "{err}"
    );
    assert!(!err.contains("sts-sidecar serving"), "{err}");
}

/// A loopback address with a port that was free a moment ago.
fn free_listen_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    format!("127.0.0.1:{port}")
}

/// Sends `signal` (`-TERM`, `-INT`) to `child`.
fn kill(child: &std::process::Child, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill {signal} failed");
}

/// Polls `listen` until connecting succeeds (`accepting`) or is refused (`!accepting`);
/// fails with `why` after `within`.
async fn wait_accepting(listen: &str, accepting: bool, within: Duration, why: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::net::TcpStream::connect(listen).await.is_ok() != accepting {
        assert!(tokio::time::Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_exit(child: std::process::Child) -> (Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let out = child.wait_with_output().expect("wait");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

#[tokio::test]
async fn a_listen_address_in_use_exits_1_naming_it() {
    let stack = Stack::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let child = spawn_serve(&stack, &addr, &[]).await;
    let (code, err) = wait_exit(child).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on {addr} (--listen)")),
        "{err}"
    );
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_server_cleanly() {
    for (signal, drain) in [("-TERM", "2"), ("-INT", "30")] {
        let stack = Stack::start().await;
        let listen = free_listen_addr();
        let child = spawn_serve(&stack, &listen, &[("STS_SIDECAR_DRAIN_SECS", drain)]).await;
        let url = format!("http://{listen}/v1/credentials");
        let mut ok = false;
        for _ in 0..100 {
            if let Ok(r) = stack
                .http
                .get(&url)
                .header("authorization", AUTH_TOKEN)
                .send()
                .await
                && r.status() == 200
            {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "the binary never served credentials");
        let started = tokio::time::Instant::now();
        kill(&child, signal);
        if signal == "-TERM" {
            // Draining: still serving from cache, to new connections too.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let r = reqwest::Client::new()
                .get(&url)
                .header("authorization", AUTH_TOKEN)
                .send()
                .await
                .expect("a request while draining");
            assert_eq!(r.status(), 200, "served while draining");
        }
        let (code, err) = wait_exit(child).await;
        assert_eq!(code, Some(0), "{signal}: {err}");
        assert!(err.contains("\"stopped\""), "{signal}: {err}");
        if signal == "-TERM" {
            assert!(
                err.contains("still serving from cache while draining"),
                "{err}"
            );
        }
        assert!(
            err.contains("sts-sidecar serving") && err.contains(&listen),
            "startup line: {err}"
        );
        // SIGTERM drains (1 s here); SIGINT does not wait for the 30 s drain.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{signal} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_refuses_new_connections() {
    // A request in flight: it arrives during the cold start and waits for STS, which answers
    // only when the test lets it (after SIGTERM). SIGTERM with no drain stops the listener at
    // once; the waiting request must still get its 200 (in-flight requests have 2 s to finish),
    // while new connections are refused from then on. No step depends on how fast this machine
    // is: each waits for what it needs to have happened.
    let stack = Stack::with(Options {
        start: false,
        ..Options::default()
    })
    .await;
    let gate = Gate::default();
    stack.sts.push_reply(StsReply::Held(gate.clone()));
    let listen = free_listen_addr();
    let child = spawn_serve(
        &stack,
        &listen,
        &[
            ("STS_SIDECAR_DRAIN_SECS", "0"),
            ("STS_SIDECAR_COLD_START_WAIT_MS", "10000"),
        ],
    )
    .await;
    wait_accepting(
        &listen,
        true,
        Duration::from_secs(10),
        "the binary never listened",
    )
    .await;
    // The cold start is waiting for STS.
    wait_for(
        Duration::from_secs(10),
        || stack.sts.calls() == 1,
        "STS was never asked",
    )
    .await;
    let sockets = || sockets_of(child.id());
    let before = sockets();
    let url = format!("http://{listen}/v1/credentials");
    let http = stack.http.clone();
    let in_flight = tokio::spawn(async move {
        let r = http
            .get(&url)
            .header("authorization", AUTH_TOKEN)
            .send()
            .await
            .expect("the in-flight request failed");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    });
    // The sidecar has accepted the request's connection, and had time to read it.
    wait_for(
        Duration::from_secs(10),
        || sockets() > before,
        "the request's connection was never accepted",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!in_flight.is_finished(), "answered before STS did");
    kill(&child, "-TERM");
    wait_accepting(
        &listen,
        false,
        Duration::from_secs(5),
        "still accepting connections after SIGTERM with no drain",
    )
    .await;
    assert!(
        !in_flight.is_finished(),
        "the in-flight request ended before the listener closed; the test proves nothing"
    );
    gate.open();
    let (status, body) = in_flight.await.expect("join");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"SecretAccessKey\""), "{body}");
    let (code, err) = wait_exit(child).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(stack.sts.calls(), 1, "{err}");
}

/// Waits until `done` holds, checking every 20 ms, failing with `what` after `within`.
async fn wait_for(within: Duration, done: impl Fn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many sockets process `pid` holds open (listeners and accepted connections).
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

async fn first_status(stack: &Stack, listen: &str) -> u16 {
    // Each 503 takes the 1.5 s cold-start grace, so bound the polling by time, not count.
    let url = format!("http://{listen}/v1/credentials");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    while tokio::time::Instant::now() < deadline {
        if let Ok(r) = stack
            .http
            .get(&url)
            .header("authorization", AUTH_TOKEN)
            .send()
            .await
        {
            last = r.status().as_u16();
            if last != 503 {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Runs `serve` on a free port until its first non-503 answer, then stops it with SIGINT;
/// returns that answer's status and everything the binary logged.
async fn first_answer(
    stack: &Stack,
    sts_endpoint: &str,
    extra_env: &[(&str, &str)],
) -> (u16, String) {
    let listen = free_listen_addr();
    let child = spawn_serve_via(stack, &listen, sts_endpoint, extra_env).await;
    let status = first_status(stack, &listen).await;
    kill(&child, "-INT");
    let (_, err) = wait_exit(child).await;
    (status, err)
}

#[tokio::test]
async fn sts_calls_go_through_http_proxy_when_set() {
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let calls_before = stack.sts.calls();
    // Nothing listens at the STS endpoint itself; only the "proxy" (the fake STS) can answer.
    let (status, err) = first_answer(
        &stack,
        "http://127.0.0.2:9",
        &[("HTTP_PROXY", &stack.sts.endpoint())],
    )
    .await;
    assert_eq!(status, 200, "{err}");
    assert_eq!(stack.sts.calls(), calls_before + 1);
}

#[tokio::test]
async fn turning_on_imdsv1_is_warned_about_at_startup() {
    let stack = Stack::start().await;
    let env = [
        ("STS_SIDECAR_IMDS", "true"),
        ("STS_SIDECAR_IMDS_V1", "true"),
    ];
    let (status, err) = first_answer(&stack, &stack.sts.endpoint(), &env).await;
    assert_eq!(status, 200, "{err}");
    assert!(
        err.contains("IMDSv1 is on") && err.contains("\"level\":\"WARN\""),
        "{err}"
    );
    assert!(
        err.contains("\"imds\":true"),
        "the startup line says IMDS is on: {err}"
    );
}

#[test]
fn a_log_filter_that_names_no_level_is_refused_not_silent() {
    // See: issue #17 (STS_SIDECAR_LOG=warning silenced every line, failed refreshes included).
    let out = command()
        .args(["check", "--wait", "0"])
        .env("STS_SIDECAR_LOG", "warning")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains(
            "STS_SIDECAR_LOG: \"warning\" in \"warning\" is not a level (did you mean warn?)"
        ),
        "{err}"
    );
}

/// What `child` (its stderr piped) logged until it said it is serving; panics if it exits first.
fn log_until_serving(child: &mut std::process::Child) -> String {
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut log = String::new();
    while !log.contains("sts-sidecar serving") {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).expect("log");
        assert!(n > 0, "exited early: {log}");
        log.push_str(&line);
    }
    log
}

/// `argv` as an unprivileged user: as the same non-root user as this test, or, when the test
/// runs as root (who may read any process), as `nobody` through `setpriv`.
fn unprivileged(argv: &[&str]) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut cmd = program("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(argv);
        cmd
    } else {
        let mut cmd = program(argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }
}

/// The soft and hard "Max core file size" of `pid`.
fn core_limit(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))?;
    let mut fields = line["Max core file size".len()..].split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
}

#[test]
fn another_process_of_the_same_user_cannot_read_the_sidecars_memory_or_environment() {
    // See: issue #20 item 5 (a core dump held the keys; /proc/PID/mem was readable).
    let own = core_limit(std::process::id()).expect("own limits");
    for allow in [false, true] {
        let mut serve = unprivileged(&[
            BIN,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--token-command",
            "/bin/false",
            "--role-arn",
            "arn:aws:iam::123456789012:role/x",
            "--sts-endpoint",
            "http://127.0.0.1:9",
            "--drain-secs",
            "0",
        ]);
        serve
            .env(
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                "env-secret-0123456789abcdef",
            )
            .env("STS_SIDECAR_LOG", "debug")
            .env("STS_SIDECAR_ALLOW_CORE_DUMPS", allow.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = serve.spawn().expect("spawn");
        // setpriv execs the sidecar: same PID. Wait until it is listening (hardening is done
        // before anything else).
        let pid = child.id();
        let log = log_until_serving(&mut child);
        let limit = core_limit(pid).expect("limits");
        let environ = unprivileged(&["cat", &format!("/proc/{pid}/environ")])
            .output()
            .expect("cat");
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let _ = child.wait();
        let seen = String::from_utf8_lossy(&environ.stdout);
        if allow {
            assert_eq!(limit, own, "--allow-core-dumps leaves the limit");
            assert!(seen.contains("env-secret-0123456789abcdef"), "{seen}");
            assert!(log.contains("--allow-core-dumps"), "{log}");
        } else {
            assert_eq!(limit, ("0".to_owned(), "0".to_owned()));
            assert!(
                !environ.status.success(),
                "read the sidecar's environment: {seen}"
            );
            assert!(!seen.contains("env-secret"), "{seen}");
            assert!(
                log.contains("process hardened") && log.contains("dumpable=Some(false)"),
                "{log}"
            );
        }
    }
}

#[test]
fn a_token_file_for_a_shared_group_is_read_by_the_app_as_another_user_and_by_nobody_else() {
    // See: issue #19. On Kubernetes the sidecar (UID 65532) and the app (another UID) share an
    // emptyDir volume; the pod's fsGroup is a supplementary group of both, and the kubelet gives
    // the volume that group with the set-group-ID bit. `--auth-token-file-mode 0640` lets the
    // group read the token. Switching users needs root (setpriv), as in CI.
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs three users with setpriv: run it as root (CI does)"
    );
    let top = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let volume = top.path().join("volume");
    std::fs::create_dir(&volume).expect("mkdir");
    nix::unistd::chown(&volume, None, Some(nix::unistd::Gid::from_raw(2000))).expect("chgrp");
    std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o2770)).expect("chmod");
    let token = volume.join("token");
    let as_user = |uid: u32, groups: &str| {
        let mut cmd = program("setpriv");
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"));
        if groups.is_empty() {
            cmd.arg("--clear-groups");
        } else {
            cmd.arg(format!("--groups={groups}"));
        }
        cmd.arg("--");
        cmd
    };
    let mut serve = as_user(65532, "2000");
    serve
        .arg(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--auth-token-file", &token.display().to_string()])
        .args(["--auth-token-file-mode", "0640"])
        .args(["--token-command", "/bin/false"])
        .args(["--role-arn", "arn:aws:iam::123456789012:role/x"])
        .args(["--sts-endpoint", "http://127.0.0.1:9", "--drain-secs", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = serve.spawn().expect("spawn");
    let log = log_until_serving(&mut child);
    let meta = std::fs::metadata(&token).expect("token file");
    let app = as_user(1000, "2000")
        .args(["cat", &token.display().to_string()])
        .output()
        .expect("cat");
    let stranger = as_user(1001, "")
        .args(["cat", &token.display().to_string()])
        .output()
        .expect("cat");
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    assert_eq!(meta.mode() & 0o7777, 0o640, "{log}");
    assert_eq!((meta.uid(), meta.gid()), (65532, 2000));
    assert!(
        app.status.success(),
        "{}",
        String::from_utf8_lossy(&app.stderr)
    );
    assert_eq!(app.stdout.len(), 43);
    assert!(!stranger.status.success(), "another user read the token");
    assert!(stranger.stdout.is_empty());
    assert!(log.contains("mode 0640"), "{log}");
}
