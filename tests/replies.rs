//! Issue 21 item 6: `[replies]` templates per case, with placeholders; unset cases keep the
//! contract's texts; SIGHUP applies new ones; check-config names a bad placeholder.

mod common;

use common::*;
use nix::sys::signal::Signal;

const LIMITS: &str = "store = \"memory\"\n[limits]\nglobal = 100\nglobal_rates = [\"8/1h\"]\n\
    [[limits.mailbox]]\nemail = \"a@example.com\"\ndaily = 3\n\
    [[limits.mailbox]]\nemail = \"b@example.com\"\ndaily = 50\n\
    [[limits.mailbox]]\nemail = \"l@example.com\"\ndaily = 50\n\
    [[limits.domain]]\ndomain = \"example.org\"\ndaily = 2\n\
    [protect]\nmax_client_ips = 1\nlock = true\n";

const REPLIES: &str = "[replies]\n\
    mailbox_1d = \"{user}: {limit} recipients a day ({window}); this one had {n}. See https://help.example.com/limits\"\n\
    server_1h = \"Server busy: {limit} recipients {window} for everyone, try later\"\n\
    oversize_mailbox = \"{user}: {count} recipients are more than {limit} {window}\"\n\
    locked = \"{user}: Konto gesperrt, bitte melden Sie sich beim Support\"\n";

#[test]
fn templates_replace_the_texts_of_their_cases_only() {
    let mut d = Daemon::start(&format!("{LIMITS}{REPLIES}"));
    assert_eq!(d.send("a@example.com", 2), "DUNNO");
    assert_eq!(
        d.send("a@example.com", 2),
        "DEFER_IF_PERMIT a@example.com: 3 recipients a day (daily); this one had 2. See https://help.example.com/limits"
    );
    assert_eq!(d.send("a@example.com", 4), "REJECT a@example.com: 4 recipients are more than 3 daily");
    // No template for the domain: the contract's text.
    assert_eq!(d.send("x@example.org", 2), "DUNNO");
    assert_eq!(
        d.send("x@example.org", 1),
        "DEFER_IF_PERMIT x@example.org: Daily limit of 2 recipients for example.org reached"
    );
    assert_eq!(d.send("b@example.com", 4), "DUNNO");
    assert_eq!(
        d.send("b@example.com", 1),
        "DEFER_IF_PERMIT Server busy: 8 recipients hourly for everyone, try later"
    );
    // A second client address locks l@ (max_client_ips = 1).
    assert_eq!(
        d.connect().ask(&eom_from("l@example.com", 1, "203.0.113.9")),
        "DEFER_IF_PERMIT Server busy: 8 recipients hourly for everyone, try later",
        "the first address"
    );
    let locked = d.connect().ask(&eom_from("l@example.com", 1, "203.0.113.10"));
    assert_eq!(locked, "DEFER_IF_PERMIT l@example.com: Konto gesperrt, bitte melden Sie sich beim Support");
    // SIGHUP: the templates go, the contract's texts come back.
    d.write_config(LIMITS);
    d.signal(Signal::SIGHUP);
    d.wait_log("reloaded", 1);
    assert_eq!(
        d.send("a@example.com", 1),
        "DEFER_IF_PERMIT a@example.com: Global hourly limit of 8 recipients reached"
    );
    d.stop();
}

#[test]
fn check_config_shows_the_templates_and_names_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, format!("{LIMITS}{REPLIES}")).expect("write");
    let out = erl().args(["check-config", "--config"]).arg(&path).output().expect("run");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\n[replies]\nmailbox_1d = \"{user}: {limit} recipients a day"), "{text}");
    std::fs::write(&path, "[replies]\ndomain_1h = \"{user}: {limt} per hour\"\n").expect("write");
    let out = erl().args(["check-config", "--config"]).arg(&path).output().expect("run");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replies.domain_1h: unknown placeholder {limt}"), "{err}");
    std::fs::write(&path, "[replies]\nmailbox_daily = \"x\"\n").expect("write");
    let out = erl().args(["check-config", "--config"]).arg(&path).output().expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mailbox_daily"), "{out:?}");
}

/// Issue 36 (DESIGN v4 "Replies name the unit"): the built-in texts say `recipients` or
/// `messages`, the singular for a limit of 1, and `[replies]` templates gain `{unit}`.
#[test]
fn replies_name_what_the_cap_counts() {
    let limits = "store = \"memory\"\n[[limits.mailbox]]\nemail = \"one@example.com\"\ndaily = 1\n\
        [[limits.mailbox]]\nemail = \"msg@example.com\"\nrates = [\"2msg/1h\"]\n\
        [[limits.mailbox]]\nemail = \"single@example.com\"\nrates = [\"1msg/1h\"]\n";
    let d = Daemon::start(limits);
    assert_eq!(d.send("one@example.com", 1), "DUNNO");
    assert_eq!(
        d.send("one@example.com", 1),
        "DEFER_IF_PERMIT one@example.com: Your daily limit of 1 recipient reached"
    );
    for _ in 0..2 {
        assert_eq!(d.send("msg@example.com", 3), "DUNNO");
    }
    assert_eq!(
        d.send("msg@example.com", 1),
        "DEFER_IF_PERMIT msg@example.com: Your hourly limit of 2 messages reached"
    );
    assert_eq!(d.send("single@example.com", 1), "DUNNO");
    assert_eq!(
        d.send("single@example.com", 1),
        "DEFER_IF_PERMIT single@example.com: Your hourly limit of 1 message reached"
    );
    let d = Daemon::start(&format!(
        "{limits}[replies]\nmailbox_1h = \"{{user}}: at most {{limit}} {{unit}} {{window}}\"\n"
    ));
    for _ in 0..2 {
        assert_eq!(d.send("msg@example.com", 1), "DUNNO");
    }
    assert_eq!(d.send("msg@example.com", 1), "DEFER_IF_PERMIT msg@example.com: at most 2 messages hourly");
}
