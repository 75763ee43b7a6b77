//! Every command of the real binary: check-config, probe, status, violations, reset; serve's
//! exit codes, SIGHUP reloads, systemd notification and socket activation.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = erl();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write");
    let path = path.display().to_string();
    (dir, path)
}

#[test]
fn check_config_prints_the_effective_config_without_passwords() {
    let (_dir, path) = write_config(
        "mode = \"log-only\"\n[redis]\nurl = \"redis://:hunter2@127.0.0.1:6379/0\"\n\
         [database]\nurl = \"mysql://erl:hunter2@localhost/dbispconfig\"\n",
    );
    let out = run(&["check-config", "--config", &path], &[("EMAIL_RATELIMIT__LIMITS__GLOBAL", "321")]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("mode = \"log-only\""), "{text}");
    assert!(text.contains("global = 321"), "environment override applied: {text}");
    assert!(text.contains("default_mailbox = 50"), "defaults filled in: {text}");
    // Issue 21 item 12 (part): the warnings serve logs, on stderr (stdout stays the config).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: mode = \"log-only\": nothing will be deferred"), "{err}");
    let (_dir, path) = write_config(
        "[limits]\nglobal = 100\nglobal_rates = [\"500/1h\"]\n[protect]\nlock_after_refusals = 2\n[learn]\nknown_networks = true\n",
    );
    let out = run(&["check-config", "--config", &path], &[]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for part in [
        "warning: limits.global_rates: 500/1h can never bind: 100/1d is reached first",
        "warning: protect.lock_after_refusals = 2 has no effect without protect.lock = true",
        "warning: learn.known_networks = true has no effect without learn.enabled = true",
    ] {
        assert!(err.contains(part), "{part} missing:\n{err}");
    }
    assert!(!stdout(&out).contains("warning"), "stdout is the config alone");
}

#[test]
fn every_password_form_is_masked_and_env_strings_stay_strings() {
    let (_dir, path) = write_config(
        "[redis]\nurl = \"redis+unix:///run/redis/redis.sock?db=2&pass=hunter2\"\n\
         [database]\nurl = \"mysql://erl@localhost/dbispconfig?password=hunter2\"\n",
    );
    let out = run(
        &["check-config", "--config", &path],
        &[("EMAIL_RATELIMIT__REDIS__KEY_PREFIX", "007"), ("EMAIL_RATELIMIT__LIMITS__DEFAULT_MAILBOX", "40")],
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("pass=********") && text.contains("password=********"), "{text}");
    assert!(text.contains("key_prefix = \"007\""), "a string key stays a string: {text}");
    assert!(text.contains("default_mailbox = 40"), "a number key still takes a number: {text}");
}

#[test]
fn bad_configs_exit_78_with_the_reason() {
    for (text, reason) in [
        ("[limits]\nglobl = 5\n", "globl"),
        ("[limits]\nglobal = 0\n", "limits.global"),
        ("mode = \"sometimes\"\n", "sometimes"),
        ("[limits\n", "TOML"),
        ("[[limits.mailbox]]\nemail = \"not valid@x\"\n", "limits.mailbox.email"),
        ("[redis]\ntimeout_ms = 8000\n", "redis.timeout_ms"),
        ("[listen]\nsocket_mode = \"0666\"\n", "listen.socket_mode"),
        ("timezone = \"Europe/Nowhere\"\n", "timezone"),
        // Issue 21 item 13: what failed and why, Postfix style.
        ("[redis]\nurl = \"redis:/127.0.0.1\"\n", "redis.url \"redis:/127.0.0.1\": no host name"),
        ("[listen]\nsocket_mode = 0660\n", "quote it: socket_mode = \"0660\""),
        (
            "[database]\nurl = \"mysql://u:pw@localhost\"\n",
            "database.url \"mysql://u:********@localhost\": no database name",
        ),
    ] {
        let (_dir, path) = write_config(text);
        for cmd in ["check-config", "serve"] {
            let out = run(&[cmd, "--config", &path], &[]);
            assert_eq!(out.status.code(), Some(78), "{cmd} {text:?}: {out:?}");
            assert!(
                stderr(&out).to_lowercase().contains(&reason.to_lowercase()),
                "{cmd} {text:?}: {}",
                stderr(&out)
            );
        }
    }
    let out = run(&["check-config", "--config", "/nonexistent/config.toml"], &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("not found"));
    // Issue 36: a cap's commonest mistakes, and a value from the environment, are named.
    let (_dir, path) = write_config("[limits]\nglobal_rates = [\"10msgs/1h\"]\n");
    let out = run(&["check-config", "-q", "--config", &path], &[]);
    assert_eq!(
        (out.status.code(), stderr(&out).as_str()),
        (
            Some(78),
            "email-ratelimit: config error: limits.global_rates: \"10msgs/1h\": \"msgs\" is not a unit: write \"10msg/1h\" for a cap on messages, or \"10/1h\" for one on recipients\n"
        )
    );
    let (_dir, path) = write_config("");
    for (var, value, said) in [
        (
            "EMAIL_RATELIMIT__LIMITS__GLOBAL_RATES",
            "[\"20 / 1h\"]",
            "EMAIL_RATELIMIT__LIMITS__GLOBAL_RATES (from the environment): limits.global_rates: \"20 / 1h\": no spaces in a cap: write it \"20/1h\"",
        ),
        (
            "EMAIL_RATELIMIT__LIMITS__GLOBAL",
            "abc",
            "EMAIL_RATELIMIT__LIMITS__GLOBAL (from the environment): invalid type: string \"abc\", expected an integer for key `limits.global`",
        ),
    ] {
        let out = run(&["check-config", "-q", "--config", &path], &[(var, value)]);
        assert_eq!(
            (out.status.code(), stderr(&out).as_str()),
            (Some(78), format!("email-ratelimit: config error: {said}\n").as_str())
        );
    }
    // An admin command that cannot reach Redis says where it looked.
    let (_dir, path) = write_config("[redis]\nurl = \"redis://:secret@127.0.0.1:1/0\"\n");
    let out = run(&["status", "--config", &path, "x@example.com"], &[]);
    assert_eq!(
        (out.status.code(), stderr(&out).as_str()),
        (Some(1), "email-ratelimit: connect to redis://:********@127.0.0.1:1/0: Connection refused\n")
    );
}

/// Issue 21 item 12: `check-config -n` shows only what differs from the defaults (the time zone
/// always, resolved); list keys come from the environment as TOML arrays; a duplicate entry names
/// its block.
#[test]
fn check_config_n_lists_env_arrays_and_duplicate_blocks() {
    let (_dir, path) = write_config(
        "mode = \"log-only\"\n[limits]\nglobal = 5000\n[[limits.mailbox]]\nemail = \"a@x.org\"\ndaily = 5\n",
    );
    let out = run(
        &["check-config", "-n", "--config", &path],
        &[("TZ", "Europe/Berlin"), ("EMAIL_RATELIMIT__LIMITS__GLOBAL_RATES", "[\"300/1h\", \"50/5m\"]")],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "timezone = \"Europe/Berlin\"   # from TZ\nmode = \"log-only\"\n[limits]\nglobal = 5000\n\
         global_rates = [\"300/1h\", \"50/5m\"]\n[[limits.mailbox]]\nemail = \"a@x.org\"\ndaily = 5\n"
    );
    let out =
        run(&["check-config", "--config", &path], &[("EMAIL_RATELIMIT__NOTIFY__ADMIN", "[\"p@x.org\", 7]")]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("EMAIL_RATELIMIT__NOTIFY__ADMIN: 7 is not a string"), "{}", stderr(&out));
    let (_dir, dup) = write_config(
        "[[limits.domain]]\ndomain = \"x.org\"\n[[limits.domain]]\ndomain = \"b.org\"\n[[limits.domain]]\ndomain = \"X.org\"\n",
    );
    let out = run(&["check-config", "--config", &dup], &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("x.org is listed twice: [[limits.domain]] #3 (domain = \"X.org\") repeats #1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn probe_prints_the_reply() {
    let d = Daemon::start("store = \"memory\"\n[[limits.mailbox]]\nemail = \"p@example.com\"\ndaily = 2\n");
    let socket = d.socket.display().to_string();
    let probe = |n: &str, state: &str, count: bool| {
        let mut args = vec![
            "probe",
            "--socket",
            &socket,
            "--user",
            "p@example.com",
            "--recipients",
            n,
            "--state",
            state,
        ];
        if count {
            args.push("--count");
        }
        let out = run(&args, &[]);
        assert!(out.status.success(), "{out:?}");
        stdout(&out)
    };
    assert_eq!(probe("2", "END-OF-MESSAGE", false), "DUNNO\n");
    assert_eq!(probe("0", "RCPT", false), "DUNNO\n", "the dry run counted nothing");
    assert_eq!(probe("2", "END-OF-MESSAGE", true), "DUNNO\n");
    assert_eq!(probe("0", "RCPT", false), format!("{}\n", defer_user("p@example.com", 2)));
    let out = run(&["probe", "--socket", "/nonexistent.sock", "--user", "x"], &[]);
    assert!(!out.status.success());
}

#[test]
fn status_violations_and_reset_share_the_daemons_keys() {
    let Some(redis) = Redis::start() else { return };
    let extra = format!(
        "[limits]\nglobal = 100\n[[limits.mailbox]]\nemail = \"alice@example.com\"\ndaily = 5\n\
         [[limits.mailbox]]\nemail = \"bulk@example.com\"\nrates = [\"1msg/1h\"]\n[redis]\nurl = \"{}\"\n",
        redis.url()
    );
    let d = Daemon::start(&extra);
    let config = d.config.display().to_string();
    assert_eq!(d.send("Alice@Example.com", 3), "DUNNO");
    assert_eq!(d.send("alice@example.com", 3), defer_user("alice@example.com", 5));

    let out = run(&["status", "--config", &config, "ALICE@example.com"], &[]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("user:        alice@example.com"), "{text}");
    assert!(text.contains("sent today:  3"), "{text}");
    assert!(text.contains("mailbox cap: 5 (remaining 2)"), "{text}");
    assert!(text.contains("server:      3 of 100 today (remaining 97)"), "{text}");

    let out = run(&["status", "--config", &config, "nobody@example.com"], &[]);
    assert!(stdout(&out).contains("mailbox cap: none"), "{out:?}");

    let out = run(&["violations", "--config", &config], &[]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("alice@example.com  limit=5 count=3 rcpt=3 ip=192.0.2.10 deferred"), "{text}");

    // Issue 36: a message cap's record says so.
    assert_eq!(d.send("bulk@example.com", 2), "DUNNO");
    assert_eq!(
        d.send("bulk@example.com", 2),
        "DEFER_IF_PERMIT bulk@example.com: Your hourly limit of 1 message reached"
    );
    let text = stdout(&run(&["violations", "--config", &config, "--user", "bulk@example.com"], &[]));
    assert!(
        text.contains("bulk@example.com  limit=1 messages count=1 rcpt=2 ip=192.0.2.10 deferred window=1h"),
        "{text}"
    );

    let out = run(
        &["violations", "--config", &config, "--json", "--limit", "5", "--user", "alice@example.com"],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON record");
    assert_eq!(v["type"], "user");
    assert_eq!(run(&["violations", "--config", &config, "--limit", "0"], &[]).stdout, b"");

    let out = run(&["reset", "--config", &config, "alice@example.com"], &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("was 3"), "{out:?}");
    assert_eq!(redis.get(&format!("erl:{}:alice@example.com", today())), None);
    assert_eq!(d.send("alice@example.com", 5), "DUNNO", "the reset sender may send again");

    let out = run(&["status", "--config", &config, "bad user"], &[]);
    assert!(!out.status.success());
}

/// The daemon and the admin commands agree on "today" through the config's `timezone`, whatever
/// the admin's shell has in TZ: Kiritimati (UTC+14) and Pago Pago (UTC-11) never share a date.
#[test]
fn admin_commands_and_the_daemon_share_the_configured_zone() {
    let Some(redis) = Redis::start() else { return };
    let extra = format!(
        "timezone = \"Pacific/Kiritimati\"\n[[limits.mailbox]]\nemail = \"alice@example.com\"\ndaily = 3\n\
         [redis]\nurl = \"{}\"\n",
        redis.url()
    );
    let d = Daemon::start_with(&extra, &[("TZ", "Pacific/Pago_Pago")]);
    let config = d.config.display().to_string();
    let kiritimati: chrono_tz::Tz = "Pacific/Kiritimati".parse().expect("zone");
    let day = chrono::Utc::now().with_timezone(&kiritimati).format("%Y-%m-%d").to_string();
    assert_eq!(d.send("alice@example.com", 3), "DUNNO");
    assert_eq!(
        redis.get(&format!("erl:{day}:alice@example.com")),
        Some(3),
        "the daemon counts on Kiritimati's date"
    );
    assert_eq!(d.send("alice@example.com", 1), defer_user("alice@example.com", 3));

    let tz = [("TZ", "Pacific/Pago_Pago")];
    let out = run(&["status", "--config", &config, "alice@example.com"], &tz);
    assert!(stdout(&out).contains("sent today:  3"), "{out:?}");
    let out = run(&["reset", "--config", &config, "alice@example.com"], &tz);
    assert!(stdout(&out).contains("was 3"), "{out:?}");
    assert_eq!(d.send("alice@example.com", 3), "DUNNO", "the reset reached the daemon's counter");
}

#[test]
fn admin_commands_explain_that_the_memory_store_is_private() {
    let (_dir, path) = write_config("store = \"memory\"\n");
    let out = run(&["status", "--config", &path, "a@example.com"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("store = \"redis\""), "{out:?}");
}

#[test]
fn sighup_applies_a_good_config_and_keeps_the_old_one_when_broken() {
    let mut d =
        Daemon::start("store = \"memory\"\n[[limits.mailbox]]\nemail = \"h@example.com\"\ndaily = 10\n");
    assert_eq!(d.send("h@example.com", 3), "DUNNO");

    d.write_config("store = \"memory\"\n[[limits.mailbox]]\nemail = \"h@example.com\"\ndaily = 4\n");
    d.signal(Signal::SIGHUP);
    d.wait_log("reloaded:", 1);
    assert_eq!(d.send("h@example.com", 2), defer_user("h@example.com", 4), "new cap applied");

    std::fs::write(&d.config, "[limits]\nglobal = \"many\"\n").expect("write");
    d.signal(Signal::SIGHUP);
    d.wait_log("reload failed, keeping the running config", 1);
    assert_eq!(d.send("h@example.com", 2), defer_user("h@example.com", 4), "old cap kept");
    assert_eq!(d.send("h@example.com", 1), "DUNNO");

    d.write_config(
        "mode = \"log-only\"\nstore = \"memory\"\n[[limits.mailbox]]\nemail = \"h@example.com\"\ndaily = 4\n",
    );
    d.signal(Signal::SIGHUP);
    d.wait_log("reloaded:", 2);
    assert_eq!(d.send("h@example.com", 2), "DUNNO", "log-only after reload");
    d.wait_log("erl DEFER (log-only) user=h@example.com", 1);

    d.signal(Signal::SIGINT);
    assert!(d.wait_exit(Duration::from_secs(15)).success());
}

#[test]
fn tells_systemd_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notify = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).expect("bind notify socket");
    listener.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let notify_path = notify.display().to_string();
    let mut d = Daemon::start_with("store = \"memory\"\n", &[("NOTIFY_SOCKET", notify_path.as_str())]);
    let next = || {
        let mut buf = [0u8; 512];
        let n = listener.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(next().contains("READY=1"));
    d.signal(Signal::SIGHUP);
    let reloading = next();
    assert!(reloading.contains("RELOADING=1") && reloading.contains("MONOTONIC_USEC="), "{reloading}");
    assert!(next().contains("READY=1"));
    d.signal(Signal::SIGTERM);
    assert!(next().contains("STOPPING=1"));
    assert!(d.wait_exit(Duration::from_secs(15)).success());
}

#[test]
fn serves_a_socket_handed_over_by_systemd() {
    if !have("python3") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let activated = dir.path().join("activated.sock");
    let configured = dir.path().join("configured.sock");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("store = \"memory\"\n[listen]\nsocket = {:?}\n", configured.display().to_string()),
    )
    .expect("write");
    // What systemd does: bind, listen, pass the socket as fd 3 with LISTEN_FDS and LISTEN_PID.
    let script = "import os, socket, sys\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
        s.bind(sys.argv[1]); s.listen(64)\n\
        if s.fileno() != 3: os.dup2(s.fileno(), 3)\n\
        os.set_inheritable(3, True)\n\
        os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_PID'] = str(os.getpid())\n\
        os.execv(sys.argv[2], [sys.argv[2], 'serve', '--config', sys.argv[3]])\n";
    let log = dir.path().join("daemon.log");
    // Supervised: a failed assertion below still stops the daemon.
    let mut child = Supervised::default();
    child.set(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&activated)
            .arg(BIN)
            .arg(&config)
            .stdout(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn python3"),
    );
    let mut c = wait_for("an answer on the activated socket", Duration::from_secs(10), || {
        let mut c = Conn::new(std::os::unix::net::UnixStream::connect(&activated).ok()?);
        c.try_write(eom("s@example.com", 1).as_bytes()).ok()?;
        c.try_reply().map(|r| (r, c))
    });
    assert_eq!(c.0, "DUNNO");
    assert_eq!(c.1.ask(&eom("s@example.com", 1)), "DUNNO");
    assert!(!configured.exists(), "the configured socket is not created under activation");
    // Logs go through a batching writer thread: wait for the line, do not race it.
    let warning =
        format!("listen.socket = {} but systemd handed over {}", configured.display(), activated.display());
    wait_for("the daemon to say Postfix and the socket unit may disagree", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).ok().filter(|said| said.contains(&warning)).map(|_| ())
    });
    child.signal(Signal::SIGTERM);
    let status = wait_for("the daemon to exit", Duration::from_secs(20), || child.try_wait());
    assert!(status.success(), "{status}");
    assert!(activated.exists(), "systemd's socket is left to systemd");
}

#[test]
fn serve_runs_on_the_embedded_defaults_as_the_readme_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("erl.sock");
    let log = std::fs::File::create(dir.path().join("log")).expect("log");
    let mut process = Supervised::default();
    process.set(
        erl()
            .arg("serve")
            .env("EMAIL_RATELIMIT__STORE", "memory")
            .env("EMAIL_RATELIMIT__LISTEN__SOCKET", &socket)
            .env("EMAIL_RATELIMIT__LIMITS__GLOBAL", "2")
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn"),
    );
    let socket_text = socket.display().to_string();
    let probe = |n: &str| {
        let out = run(
            &[
                "probe",
                "--socket",
                &socket_text,
                "--user",
                "readme@example.com",
                "--recipients",
                n,
                "--count",
            ],
            &[],
        );
        out.status.success().then(|| stdout(&out))
    };
    assert_eq!(wait_for("the daemon", Duration::from_secs(10), || probe("2")), "DUNNO\n");
    assert_eq!(probe("1").expect("answer"), format!("{}\n", defer_global("readme@example.com", 2)));
    process.signal(Signal::SIGTERM);
    assert!(wait_for("exit", Duration::from_secs(10), || process.try_wait()).success());
    // Read after the exit, which writes every queued line (lines go out in 20 ms batches).
    let text = std::fs::read_to_string(dir.path().join("log")).expect("log");
    assert!(text.contains("config=(embedded defaults)"), "{text}");
    // Issue 21 item 8: the log names the scope as the metrics and status do.
    assert!(text.contains("cap=server window=1d used=2/2"), "{text}");
}

#[test]
fn under_systemd_lines_carry_their_priority_and_no_timestamp_of_their_own() {
    let d =
        Daemon::start_with("mode = \"log-only\"\nstore = \"memory\"\n", &[("JOURNAL_STREAM", "8:123456")]);
    assert_eq!(d.send("alice@example.com", 2), "DUNNO");
    d.wait_log("<6>erl ok user=alice@example.com", 1);
    let log = d.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.iter().any(|l| l.starts_with("<4>mode = \"log-only\"")), "{log}");
    assert!(lines.iter().any(|l| l.starts_with("<6>email-ratelimit ")), "{log}");
    for line in &lines {
        let prio = line.strip_prefix('<').and_then(|l| l.split_once('>')).map(|(p, _)| p);
        assert!(matches!(prio, Some("3" | "4" | "6" | "7")), "no priority prefix: {line:?}");
        assert!(!line.contains("Z  INFO") && !line.contains(" WARN "), "a timestamp or level word: {line:?}");
    }
    // On a terminal (no JOURNAL_STREAM) the lines keep their own timestamp and level.
    let plain = Daemon::start("mode = \"log-only\"\nstore = \"memory\"\n");
    plain.wait_log("WARN mode = \"log-only\"", 1);
    assert!(
        plain.log().lines().next().is_some_and(|l| l.starts_with("20") && !l.starts_with('<')),
        "{}",
        plain.log()
    );
}

/// Issue 21 item 7: refusals, suspects and locks are warnings (`<4>`, kept by `level = "warn"`),
/// the `erl ok` lines are info (dropped by it).
#[test]
fn level_warn_keeps_refusals_suspects_and_locks_and_drops_the_ok_lines() {
    let d = Daemon::start_with(
        "store = \"memory\"\n[log]\nlevel = \"warning\"\n[[limits.mailbox]]\nemail = \"w@example.com\"\ndaily = 1\n\
         [protect]\nmax_client_ips = 1\nlock = true\n",
        &[("JOURNAL_STREAM", "8:123456")],
    );
    assert_eq!(d.send("w@example.com", 1), "DUNNO");
    assert_eq!(d.send("w@example.com", 1), defer_user("w@example.com", 1));
    assert_eq!(d.connect().ask(&eom_from("w@example.com", 1, "203.0.113.5")), defer_locked("w@example.com"));
    assert_eq!(d.send("w@example.com", 1), defer_locked("w@example.com"));
    d.wait_log("<4>erl DEFER user=w@example.com rcpt=1 cap=locked", 1);
    let log = d.log();
    for line in [
        "<4>erl DEFER user=w@example.com rcpt=1 mailbox=1/1 ",
        "<4>erl suspect user=w@example.com client_ips=2",
        "<4>erl lock user=w@example.com by=auto",
    ] {
        assert!(log.contains(line), "{line:?} not in:\n{log}");
    }
    assert!(!log.contains("erl ok"), "{log}");
}

#[test]
fn status_without_a_user_is_the_health_of_what_the_daemon_needs() {
    let Some(mut redis) = Redis::start() else { return };
    let d = redis_daemon(&redis, "server_name = \"mx7\"\n[limits]\nglobal_rates = [\"300/1h\"]\n");
    let hour = chrono::Local::now().format("%H:00").to_string();
    assert_eq!(d.send("alice@example.com", 3), "DUNNO");
    let (ok, out) = d.admin(&["lock", "eve@example.com"]);
    assert!(ok, "{out}");
    let (ok, out) = d.admin(&["status"]);
    assert!(ok, "{out}");
    // Issue 21 item 10: the mode and whether the daemon answers; an hour is not "today" (unless
    // the clock just passed the hour, which would empty that window).
    let same_hour = chrono::Local::now().format("%H:00").to_string() == hour;
    for line in [
        "server name: mx7",
        &format!("config:      {}", d.config.display()),
        "mode:        enforce",
        "limits:      config file",
        "server   1d: 3 used today, cap 999 (remaining 996)",
        &format!("server   1h: 3 used since {hour}, cap 300 (remaining 297)"),
        "locked:      1 sender (email-ratelimit locks)",
    ] {
        if line.starts_with("server   1h") && !same_hour {
            continue;
        }
        assert!(out.lines().any(|l| l == line), "{line:?} not in:\n{out}");
    }
    assert!(out.contains("redis:       reachable"), "{out}");
    assert!(out.contains(&format!("daemon:      answers on {}", d.socket.display())), "{out}");
    let (ok, json) = d.admin(&["status", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!((v["redis"]["up"].as_bool(), v["locked_senders"].as_u64()), (Some(true), Some(1)));
    assert_eq!(
        v["server"][0],
        serde_json::json!({"window": "1d", "since": "today", "used": 3, "limit": 999, "remaining": 996})
    );
    assert_eq!((v["mode"].as_str(), v["daemon"]["answers"].as_bool()), (Some("enforce"), Some(true)));
    // Issue 32 item 5: the exit status tells a check which part is down: 0 all up, 1 the daemon
    // does not answer, 2 it answers but Redis does not.
    let code = |config: &std::path::Path| {
        let out = erl().args(["status", "--config"]).arg(config).output().expect("status");
        (out.status.code(), stdout(&out))
    };
    assert_eq!(code(&d.config).0, Some(0));
    let (dir, elsewhere) = write_config(&format!(
        "store = \"redis\"\n[listen]\nsocket = \"/nonexistent/erl.sock\"\n[redis]\nurl = \"{}\"\n",
        redis.url()
    ));
    let (status, out) = code(std::path::Path::new(&elsewhere));
    assert_eq!(status, Some(1), "the daemon does not answer there, Redis does: {out}");
    drop(dir);
    redis.stop();
    let (status, out) = code(&d.config);
    assert_eq!(status, Some(2), "the daemon answers, Redis does not: {out}");
    assert!(out.contains("redis:       UNREACHABLE"), "{out}");
    // The daemon gone: said too.
    drop(d);
    // (Redis is the test's own, stopped: never the host's on 6379.)
    let (dir, path) = write_config(&format!(
        "store = \"redis\"\n[listen]\nsocket = \"/nonexistent/erl.sock\"\n[redis]\nurl = \"{}\"\n",
        redis.url()
    ));
    let out = run(&["status", "--config", &path], &[]);
    assert!(
        stdout(&out).contains(
            "daemon:      NOT ANSWERING: connect to /nonexistent/erl.sock: No such file or directory"
        ),
        "{out:?}"
    );
    drop(dir);
}

/// Issue 21 item 3 (part): `[[limits.domain]] domain = "*"` caps the mailboxes of every domain
/// without an entry of its own, and each such domain's senders together, separately.
#[test]
fn the_catch_all_domain_entry_caps_every_other_domain() {
    let d = Daemon::start(
        "store = \"memory\"\n[[limits.domain]]\ndomain = \"*\"\ndaily = 5\nmailbox_daily = 3\n\
         [[limits.domain]]\ndomain = \"free.example\"\n",
    );
    for _ in 0..3 {
        assert_eq!(d.send("a@one.example", 1), "DUNNO");
    }
    assert_eq!(d.send("a@one.example", 1), defer_user("a@one.example", 3));
    assert_eq!(d.send("b@one.example", 2), "DUNNO");
    assert_eq!(
        d.send("c@one.example", 1),
        "DEFER_IF_PERMIT c@one.example: Daily limit of 5 recipients for one.example reached",
        "one.example's senders together"
    );
    assert_eq!(d.send("a@two.example", 3), "DUNNO", "another domain counts on its own");
    for _ in 0..5 {
        assert_eq!(d.send("x@free.example", 1), "DUNNO", "a domain with its own entry is not caught");
    }
    let out = run(&["check-config", "--config", &d.config.display().to_string()], &[]);
    assert!(stdout(&out).contains("domain = \"*\""), "{}", stdout(&out));
}

/// Issue 21 item 10: without a config file, `status` says so instead of naming one.
#[test]
fn status_on_the_embedded_defaults_names_no_file() {
    let Some(redis) = Redis::start() else { return };
    let out = run(&["status"], &[("EMAIL_RATELIMIT__REDIS__URL", &redis.url())]);
    let text = stdout(&out);
    for line in
        ["config:      none: the embedded defaults", "limits:      embedded defaults (no config file)"]
    {
        assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
    }
}
