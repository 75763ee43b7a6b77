//! `scripts/install.sh` for real, against a throwaway Postfix instance and a temporary
//! filesystem root: install (log-only) -> db-user -> enforce -> disable -> uninstall, each run
//! twice (idempotent), with Postfix's `postconf -n` and `postconf -M` compared before and after.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mail::{MailServer, REMOTE};
use common::*;
use nix::sys::signal::Signal;

const INSTALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh");

fn install(root: &Path, mail: &MailServer, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(INSTALL)
        .args(args)
        .arg("--root")
        .arg(root)
        .arg("--postfix-config")
        .arg(mail.config_dir())
        .args(["--binary", BIN, "--no-systemd"])
        .output()
        .expect("run install.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("$ install.sh {}\n{text}", args.join(" "));
    assert!(out.status.success(), "install.sh {args:?} failed:\n{text}");
    text
}

fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).expect("under root").display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn rcpts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("r{i}@{REMOTE}")).collect()
}

#[test]
fn install_enforce_disable_uninstall_round_trip() {
    let Some(redis) = Redis::start() else { return };
    let Some(db) = Mariadb::start() else { return };
    db.sql(
        "INSERT INTO dbispconfig.mail_user VALUES (1, 'alice@local.test'); \
         INSERT INTO dbispconfig.er_mail_user_ratelimit VALUES (1, 'y', 2); \
         CREATE TABLE dbispconfig.secrets (x INT);",
    );
    // An admin's own end-of-data restriction, which the installer must keep and restore.
    let Some(mail) = MailServer::start_with(&["alice@local.test"], "") else { return };
    let empty_map = mail.config_dir().join("client_access");
    std::fs::write(&empty_map, "").expect("map");
    mail.postconf(&[
        "-e",
        &format!("smtpd_end_of_data_restrictions = check_client_access texthash:{}", empty_map.display()),
    ]);
    let before = (mail.postconf(&["-n"]), mail.postconf(&["-M"]));
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();

    // install, twice
    let said = install(r, &mail, &["install"]);
    assert!(
        said.contains("log-only") && said.contains("journalctl -u email-ratelimit -f | grep erl"),
        "{said}"
    );
    let hooked = mail.postconf(&["-nh", "smtpd_end_of_data_restrictions"]);
    assert_eq!(
        hooked.trim(),
        format!("check_client_access texthash:{}, $email_ratelimit_policy", empty_map.display())
    );
    let fragment = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/postfix/main.cf.fragment"))
        .expect("fragment");
    let policy = mail.postconf(&["-h", "email_ratelimit_policy"]);
    assert!(fragment.contains(policy.trim()), "the shipped hook text: {policy}");
    let config = r.join("etc/email-ratelimit/config.toml");
    std::fs::write(&config, std::fs::read_to_string(&config).expect("config") + "# edited by the admin\n")
        .expect("edit");
    let after_first = (files_under(r), mail.postconf(&["-n"]));
    let said = install(r, &mail, &["install"]);
    assert!(said.contains("kept the existing") && said.contains("already in place"), "{said}");
    assert_eq!((files_under(r), mail.postconf(&["-n"])), after_first, "install is idempotent");
    assert!(
        std::fs::read_to_string(&config).expect("config").contains("# edited by the admin"),
        "config kept"
    );
    for f in [
        "usr/local/bin/email-ratelimit",
        "etc/systemd/system/email-ratelimit.socket",
        "etc/systemd/system/email-ratelimit.service",
        "usr/local/share/man/man1/email-ratelimit.1",
    ] {
        assert!(r.join(f).exists(), "{f} installed");
    }
    let unit = std::fs::read_to_string(r.join("etc/systemd/system/email-ratelimit.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/email-ratelimit serve"), "{unit}");

    // A read-only database account, wired into the config.
    let socket = db.socket();
    let mysql = format!("mariadb --no-defaults -u root --socket={}", socket.display());
    let said =
        install(r, &mail, &["db-user", "--mysql", &mysql, "--db-socket", &socket.display().to_string()]);
    assert!(!said.contains("email_ratelimit:") || said.contains("********"), "password not printed: {said}");
    install(r, &mail, &["db-user", "--mysql", &mysql, "--db-socket", &socket.display().to_string()]);
    let grants = db.sql("SHOW GRANTS FOR 'email_ratelimit'@'localhost'");
    assert_eq!(grants.matches("GRANT SELECT ON").count(), 3, "{grants}");
    assert!(!grants.contains("secrets") && !grants.contains("ALL PRIVILEGES"), "{grants}");

    // The installed daemon, as systemd would run it (here by hand: no systemd in a test).
    let installed = r.join("usr/local/bin/email-ratelimit");
    let log_path = r.join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut daemon = Supervised::default();
    daemon.set(
        Command::new(&installed)
            .args(["serve", "--config"])
            .arg(&config)
            .env("EMAIL_RATELIMIT__REDIS__URL", redis.url())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start the installed daemon"),
    );
    let daemon_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for("limits from the database account", Duration::from_secs(20), || {
        daemon_log().contains("limits loaded from database").then_some(())
    });

    // log-only: delivered, but the daemon logs what it would have done.
    let sent = mail.send(mail.submission, Some("alice@local.test"), "alice@local.test", &rcpts(3));
    assert_eq!(sent.code, 0, "{}", sent.transcript);
    wait_for("a log-only deferral", Duration::from_secs(10), || {
        daemon_log().contains("erl DEFER (log-only) user=alice@local.test rcpt=3").then_some(())
    });

    // enforce, twice; the daemon picks it up on SIGHUP (systemctl reload under systemd).
    let said = install(r, &mail, &["enforce"]);
    assert!(said.contains("set mode = \"enforce\""), "{said}");
    assert!(install(r, &mail, &["enforce"]).contains("already mode = \"enforce\""));
    daemon.signal(Signal::SIGHUP);
    wait_for("the reload", Duration::from_secs(10), || {
        daemon_log().contains("reloaded: mode=enforce").then_some(())
    });
    let sent = mail.send(mail.submission, Some("alice@local.test"), "alice@local.test", &rcpts(1));
    assert_eq!(sent.code, 26, "{}", sent.transcript);
    assert!(
        sent.reply.contains("alice@local.test: Your daily limit of 2 messages reached"),
        "{}",
        sent.reply
    );

    let said = install(r, &mail, &["status"]);
    assert!(said.contains("mode = enforce") && said.contains("Postfix: hooked"), "{said}");

    // disable, twice: Postfix exactly as before; mail flows without asking the daemon.
    install(r, &mail, &["disable"]);
    assert_eq!((mail.postconf(&["-n"]), mail.postconf(&["-M"])), before, "disable restores Postfix");
    install(r, &mail, &["disable"]);
    assert_eq!((mail.postconf(&["-n"]), mail.postconf(&["-M"])), before);
    let asked = daemon_log().matches("erl ").count();
    let sent = mail.send(mail.submission, Some("alice@local.test"), "alice@local.test", &rcpts(1));
    assert_eq!(sent.code, 0, "{}", sent.transcript);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(daemon_log().matches("erl ").count(), asked, "Postfix no longer asks the daemon");
    assert!(install(r, &mail, &["status"]).contains("Postfix: not hooked"));
    daemon.stop();

    // install again, then uninstall, twice: only Postfix backups remain.
    install(r, &mail, &["install"]);
    install(r, &mail, &["uninstall"]);
    let said = install(r, &mail, &["uninstall"]);
    assert!(said.contains("nothing installed"), "{said}");
    assert_eq!((mail.postconf(&["-n"]), mail.postconf(&["-M"])), before, "uninstall restores Postfix");
    let left: Vec<String> = files_under(r).into_iter().filter(|f| f != "daemon.log").collect();
    assert!(left.iter().all(|f| f.starts_with("var/backups/email-ratelimit/")), "left behind: {left:?}");
    assert!(!left.is_empty(), "backups of main.cf and master.cf are kept");
}
