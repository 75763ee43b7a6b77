//! Every command's exit code and the first line it prints when it fails (issue 34: the commands
//! moved into files of their own, with one error type mapped to exit codes in one place; none of
//! this may change). Each case fails before any server is needed, or needs one that is not there.

mod common;

use common::*;

/// How a case's config reads.
const MEMORY: &str = "store = \"memory\"\n";
const BAD_KEY: &str = "nonsense = 1\n";
const TCP_MILTER: &str = "[milter]\nlisten = \"127.0.0.1:9999\"\n";

struct Case {
    args: &'static [&'static str],
    config: Option<&'static str>,
    code: i32,
    /// The first line on stderr, exactly ("" for none).
    first: &'static str,
}

const MEMORY_STORE: &str = "email-ratelimit: store = \"memory\" keeps its counters inside the daemon; this command needs store = \"redis\"";
const UNKNOWN_FIELD: &str = "unknown field `nonsense`, expected one of `mode`, `enforce_from`, `store`, `timezone`, `server_name`, `listen`, `limits`, `redis`, `database`, `protect`, `learn`, `notify`, `metrics`, `milter`, `daemon`, `log`, `replies` (in `nonsense = 1`)";

fn cases() -> Vec<Case> {
    let case = |args, config, code, first| Case { args, config, code, first };
    vec![
        case(
            &["serve", "--config", "/nonexistent/erl.toml"],
            None,
            78,
            "email-ratelimit: config error: config file /nonexistent/erl.toml not found",
        ),
        case(&["serve"], Some(BAD_KEY), 78, "email-ratelimit: config error: CONFIG:1:1: UNKNOWN"),
        case(
            &["serve"],
            Some("store = \"memory\"\n[daemon]\nuser = \"no-such-user-erl\"\n"),
            78,
            "email-ratelimit: config error: daemon.user: no user no-such-user-erl on this host (create it: useradd --system --user-group no-such-user-erl)",
        ),
        case(&["check-config"], Some(BAD_KEY), 78, "email-ratelimit: config error: CONFIG:1:1: UNKNOWN"),
        case(
            &["check-config", "-q"],
            Some(TCP_MILTER),
            78,
            "email-ratelimit: milter.listen = \"127.0.0.1:9999\" refused: a TCP port lets any local user speak for any other local user (fill its counter, have its mail held, plant queue IDs for release); the milter is off and website mail passes uncounted until this is changed; fix: listen = \"/var/spool/postfix/private/email-ratelimit-milter\" (a Unix socket; under systemd, email-ratelimit-milter.socket) and unix:private/email-ratelimit-milter in Postfix's email_ratelimit_milter",
        ),
        case(
            &["check-config", "-q"],
            Some(MEMORY),
            0,
            "warning: store = \"memory\": counters live in this process and are lost on restart",
        ),
        case(
            &["probe", "--socket", "/nonexistent/erl.sock", "--user", "a@example.com"],
            None,
            1,
            "email-ratelimit: connect to /nonexistent/erl.sock: No such file or directory",
        ),
        case(
            &["probe", "--user", "a@example.com"],
            Some(BAD_KEY),
            78,
            "email-ratelimit: config error: CONFIG:1:1: UNKNOWN",
        ),
        case(&["status", "a@example.com"], Some(MEMORY), 1, MEMORY_STORE),
        case(
            &["violations", "--since", "5x"],
            Some(MEMORY),
            1,
            "email-ratelimit: \"5x\" is not a duration: write it like 90m, 24h or 2d",
        ),
        case(&["violations"], Some(MEMORY), 1, MEMORY_STORE),
        case(
            &["reset", "bad@"],
            Some(MEMORY),
            1,
            "email-ratelimit: invalid user: username has an invalid domain",
        ),
        case(&["top"], Some(MEMORY), 1, MEMORY_STORE),
        case(
            &["raise", "a@example.com", "500/1x", "--for", "1h"],
            Some(MEMORY),
            1,
            "email-ratelimit: \"1x\" is not a window: use 1d, or minutes or hours that divide a day (1m 5m 15m 1h 2h ... 12h)",
        ),
        case(
            &["raise", "a@example.com", "500/1d", "600/1d", "--for", "1h"],
            Some(MEMORY),
            1,
            "email-ratelimit: 600/1d: two caps for the window 1d",
        ),
        case(
            &["raise", "a@example.com", "500/1d", "--for", "5x"],
            Some(MEMORY),
            1,
            "email-ratelimit: \"5x\" is not a duration: write it like 90m, 24h or 2d",
        ),
        case(
            &["raise", "@example.com", "500/1d", "--for", "1h"],
            Some(MEMORY),
            1,
            "email-ratelimit: raise applies to one sender: a domain's caps are its [[limits.domain]] entry (or the database); change it and reload (systemctl reload email-ratelimit)",
        ),
        case(&["raise", "a@example.com", "--cancel"], Some(MEMORY), 1, MEMORY_STORE),
        case(
            &["lock", "a@example.com", "--for", "99d"],
            Some(MEMORY),
            1,
            "email-ratelimit: \"99d\": from 1s to 30d",
        ),
        case(&["lock", "a@example.com"], Some(MEMORY), 1, MEMORY_STORE),
        case(&["unlock", "a@example.com"], Some(MEMORY), 1, MEMORY_STORE),
        case(
            &["release", "local:no good"],
            Some(MEMORY),
            1,
            "email-ratelimit: \"local:no good\": a local user is written local:NAME, like local:web12",
        ),
        case(&["trial"], Some(MEMORY), 1, MEMORY_STORE),
        case(
            &["record", "bad action"],
            Some(MEMORY),
            1,
            "email-ratelimit: \"bad action\": an action is a word like enforce or log-only",
        ),
        case(
            &["record", "enforce", "--user", "two words"],
            Some(MEMORY),
            1,
            "email-ratelimit: --user \"two words\": one word (a sender, @domain or global)",
        ),
        case(
            &["replay", "/nonexistent/requests.jsonl"],
            Some(MEMORY),
            1,
            "email-ratelimit: /nonexistent/requests.jsonl: No such file or directory",
        ),
        case(&["replay", "-"], Some(BAD_KEY), 78, "email-ratelimit: config error: CONFIG:1:1: UNKNOWN"),
        case(&["locks"], Some(MEMORY), 1, MEMORY_STORE),
        case(&["next-date"], Some(BAD_KEY), 78, "email-ratelimit: config error: CONFIG:1:1: UNKNOWN"),
        case(&["generate", "man"], None, 2, "error: the following required arguments were not provided:"),
        case(&["lock"], None, 2, "error: the following required arguments were not provided:"),
    ]
}

#[test]
fn each_command_keeps_its_exit_code_and_first_error_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failed = Vec::new();
    for (i, c) in cases().iter().enumerate() {
        let mut cmd = erl();
        cmd.args(c.args).stdin(std::process::Stdio::null());
        let mut first = c.first.to_owned();
        if let Some(text) = c.config {
            let path = dir.path().join(format!("case{i}.toml"));
            std::fs::write(&path, text).expect("write the config");
            cmd.arg("--config").arg(&path);
            first = first.replace("CONFIG", &path.display().to_string()).replace("UNKNOWN", UNKNOWN_FIELD);
        }
        let out = cmd.output().expect("run the binary");
        let err = String::from_utf8_lossy(&out.stderr);
        let got = (out.status.code(), err.lines().next().unwrap_or_default());
        if got != (Some(c.code), first.as_str()) {
            failed.push(format!("{:?}: want {} {first:?}\n  got {:?} {:?}", c.args, c.code, got.0, got.1));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// `status` without a user prints the health, then exits 1 when the daemon does not answer
/// (2: only Redis does not), with nothing on stderr.
#[test]
fn status_prints_the_health_and_exits_with_what_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    let socket = dir.path().join("none.sock");
    std::fs::write(
        &config,
        format!(
            "[redis]\nurl = \"redis://127.0.0.1:1\"\n[listen]\nsocket = {:?}\n",
            socket.display().to_string()
        ),
    )
    .expect("write");
    let out = erl().args(["status", "--config"]).arg(&config).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.lines().any(|l| l.starts_with("daemon:      NOT ANSWERING: connect to ")), "{text}");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The commands that succeed without a server print what they always printed.
#[test]
fn next_date_and_generate_print_to_stdout_and_exit_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "timezone = \"UTC\"\n").expect("write");
    // 2026-03-07 23:59:59 UTC, on the test clock (a file holding the unix time).
    let clock = dir.path().join("clock");
    std::fs::write(&clock, "1772927999").expect("write");
    let out = erl()
        .args(["next-date", "--config"])
        .arg(&config)
        .env("EMAIL_RATELIMIT_TEST_CLOCK", &clock)
        .output()
        .expect("run");
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()), (Some(0), "2026-03-08\n"));
    let out = erl().args(["generate", "bash"]).output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("_email__ratelimit() {"));
    let out = erl().args(["generate", "man", "--dir"]).arg(dir.path().join("man")).output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(dir.path().join("man/email-ratelimit-raise.8").exists());
}
