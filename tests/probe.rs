//! `probe` (issue 21 item 1): a dry run by default that answers what the daemon would answer now
//! and changes nothing in Redis (no counter, top, address, violation, lock or marker) and sends
//! no notification; `--count` sends a real request; `--socket` defaults to the config's.

mod common;

use common::*;

fn digest(redis: &Redis) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(&mut redis.conn()).expect("DEBUG DIGEST")
}

#[test]
fn probe_changes_nothing_unless_told_to_count() {
    let Some(redis) = Redis::start_with(&["--enable-debug-command", "yes"]) else { return };
    // A stand-in sendmail filing each mail it is given.
    let outbox = tempfile::tempdir().expect("tempdir");
    let sendmail = outbox.path().join("sendmail");
    std::fs::write(
        &sendmail,
        format!("#!/bin/sh\ncat > \"$(mktemp {}/mail.XXXXXX)\"\n", outbox.path().display()),
    )
    .expect("write");
    std::fs::set_permissions(&sendmail, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let mails = || -> Vec<String> {
        std::fs::read_dir(outbox.path())
            .expect("outbox")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("mail."))
            .map(|e| std::fs::read_to_string(e.path()).expect("mail"))
            .collect()
    };
    let d = Daemon::start(&format!(
        "[redis]\nurl = \"{}\"\n[[limits.mailbox]]\nemail = \"p@example.com\"\ndaily = 2\n\
         [protect]\nmax_client_ips = 1\nlock = true\nlock_after_refusals = 1\n\
         [notify]\nsendmail = \"{}\"\nadmin = [\"postmaster@example.com\"]\n",
        redis.url(),
        sendmail.display()
    ));
    let config = d.config.display().to_string();
    // --socket from the config's [listen] socket.
    let probe = |args: &[&str]| {
        let out = erl()
            .args(["probe", "--config", &config, "--user", "p@example.com"])
            .args(args)
            .output()
            .expect("probe");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let empty = digest(&redis);
    for _ in 0..3 {
        assert_eq!(probe(&["--recipients", "2"]), "DUNNO\n", "nothing counted between dry runs");
    }
    // Refused answers, from several addresses (a suspect past 1), change nothing either.
    let oversize =
        "REJECT p@example.com: This message has 3 recipients, more than your daily limit of 2 allows\n";
    for client in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert_eq!(probe(&["--recipients", "3", "--client", client]), oversize);
    }
    assert_eq!(digest(&redis), empty, "a dry run wrote to Redis");
    // A real request counts.
    assert_eq!(probe(&["--recipients", "2", "--count", "--sender", "bounce@example.com"]), "DUNNO\n");
    let counted = digest(&redis);
    assert_ne!(counted, empty);
    let full = format!("{}\n", defer_user("p@example.com", 2));
    assert_eq!(probe(&["--state", "RCPT", "--recipients", "0", "--recipient", "x@example.net"]), full);
    for client in ["192.0.2.7", "192.0.2.8"] {
        assert_eq!(probe(&["--client", client, "--size", "900000"]), full);
    }
    assert_eq!(digest(&redis), counted, "a refused dry run wrote to Redis (a marker, a record, a lock?)");
    let (_, status) = d.admin(&["status", "p@example.com"]);
    assert!(status.contains("2 used today, cap 2") && status.contains("locked:      no"), "{status}");
    let (_, violations) = d.admin(&["violations", "--json"]);
    assert_eq!(violations.trim(), "", "no record");
    // The real refusal afterwards is the first one: it is recorded (and mailed).
    assert_eq!(probe(&["--count"]), full);
    let (_, violations) = d.admin(&["violations", "--json"]);
    assert!(violations.contains("\"type\":\"user\""), "{violations}");
    // Nothing was mailed for the dry runs (their refusals, suspects and locks were none): the
    // mails are about the real refusal.
    let sent = wait_for("the admin's mail", std::time::Duration::from_secs(10), || {
        let m = mails();
        (!m.is_empty()).then_some(m)
    });
    assert!(sent.iter().all(|m| !m.contains("192.0.2.7") && !m.contains("192.0.2.3")), "{sent:?}");
    d.wait_log("erl probe user=p@example.com rcpt=1 answer=DEFER_IF_PERMIT", 2);
}

#[test]
fn in_log_only_mode_probe_says_what_enforcing_would_answer() {
    let d = Daemon::start(
        "store = \"memory\"\nmode = \"log-only\"\n[[limits.mailbox]]\nemail = \"q@example.com\"\ndaily = 1\n",
    );
    let socket = d.socket.display().to_string();
    let probe = |args: &[&str]| {
        let out = erl()
            .args(["probe", "--socket", &socket, "--user", "q@example.com"])
            .args(args)
            .output()
            .expect("probe");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(probe(&[]), "DUNNO\nwould: DUNNO\n");
    assert_eq!(probe(&["--count"]), "DUNNO\n", "a real request in log-only mode");
    assert_eq!(probe(&[]), format!("DUNNO\nwould: {}\n", defer_user("q@example.com", 1)));
    assert_eq!(
        probe(&["--recipients", "4"]),
        "DUNNO\nwould: REJECT q@example.com: This message has 4 recipients, more than your daily limit of 1 allows\n"
    );
}

#[test]
fn probe_names_what_it_could_not_reach() {
    let out = erl()
        .args(["probe", "--socket", "/nonexistent/erl.sock", "--user", "x@example.com"])
        .output()
        .expect("probe");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "email-ratelimit: connect to /nonexistent/erl.sock: No such file or directory\n"
    );
}
