//! `scripts/install.sh` for real, against a throwaway Postfix instance and a temporary
//! filesystem root: install (log-only) -> db-user -> enforce -> disable -> uninstall, each run
//! twice (idempotent), with Postfix's `postconf -n` and `postconf -M` compared before and after;
//! the hook placed where Postfix reaches it (before a permit, in master.cf overrides, per
//! service), refused where postconf cannot write it, and never a password on a command line.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mail::{MailServer, REMOTE};
use common::*;
use nix::sys::signal::Signal;

const INSTALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh");

fn run_install(root: &Path, mail: Option<&MailServer>, args: &[&str], path: Option<&str>) -> (bool, String) {
    run_install_env(root, mail, args, path, &[])
}

fn run_install_env(
    root: &Path,
    mail: Option<&MailServer>,
    args: &[&str],
    path: Option<&str>,
    env: &[(&str, &str)],
) -> (bool, String) {
    let mut cmd = Command::new("bash");
    // The admin commands install.sh runs keep their syslog lines off the host's.
    cmd.env("EMAIL_RATELIMIT_TEST_SYSLOG", NO_SYSLOG);
    cmd.envs(env.iter().copied());
    cmd.arg(INSTALL).args(args).arg("--root").arg(root).args(["--binary", BIN, "--no-systemd"]);
    if let Some(mail) = mail {
        cmd.arg("--postfix-config").arg(mail.config_dir());
    }
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let out = cmd.output().expect("run install.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("$ install.sh {}\n{text}", args.join(" "));
    (out.status.success(), text)
}

fn install(root: &Path, mail: &MailServer, args: &[&str]) -> String {
    let (ok, text) = run_install(root, Some(mail), args, None);
    assert!(ok, "install.sh {args:?} failed:\n{text}");
    text
}

/// A PATH whose first directory holds a logging stand-in for each of `names`: every command
/// line those programs get is appended to `log`.
fn logging_path(dir: &Path, log: &Path, names: &[&str]) -> String {
    use std::os::unix::fs::PermissionsExt;
    let system = std::env::var("PATH").unwrap_or_default();
    for name in names {
        let real = std::env::split_paths(&system)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{name} not found"));
        let shim = dir.join(name);
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"{name} $*\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                real.display()
            ),
        )
        .expect("shim");
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    format!("{}:{system}", dir.display())
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

/// A root to install under that the daemon, once it has dropped to its own user, may enter (to
/// read its config on a reload).
fn open_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    root
}

/// `/etc/default/email-ratelimit` under `root`, which the installed init script reads: the
/// environment it gives the daemon (the test's Redis and syslog; never the host's).
fn defaults(root: &Path, exports: &[(&str, &str)]) {
    let dir = root.join("etc/default");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let text: String = exports.iter().map(|(k, v)| format!("export {k}='{v}'\n")).collect();
    std::fs::write(dir.join("email-ratelimit"), text).expect("defaults");
}

/// Whether process `pid` has ended (a zombie its parent, whoever adopted it after
/// start-stop-daemon's detach, has not reaped yet counts as ended).
fn ended(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
}

/// The daemon the installed init script runs under a root: stopped when dropped, so that a
/// failed test leaves nothing running.
struct InitDaemon(std::path::PathBuf);

impl InitDaemon {
    fn script(&self) -> std::path::PathBuf {
        self.0.join("etc/init.d/email-ratelimit")
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.0.join("run/email-ratelimit/email-ratelimit.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// `/etc/init.d/email-ratelimit ACTION`: whether it succeeded, and what it said.
    fn run(&self, action: &str) -> (bool, String) {
        let out = Command::new(self.script()).arg(action).output().expect("run the init script");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    fn stop(&self) {
        let pid = self.pid();
        if self.script().exists() {
            let (ok, said) = self.run("stop");
            assert!(ok, "the init script's stop: {said}");
        }
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
            wait_for("the daemon to stop", Duration::from_secs(20), || ended(pid).then_some(()));
        }
    }
}

impl Drop for InitDaemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stop()));
        } else {
            self.stop();
        }
    }
}

fn rcpts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("r{i}@{REMOTE}")).collect()
}

#[test]
fn install_enforce_disable_uninstall_round_trip() {
    let Some(redis) = Redis::start() else { return };
    let Some(db) = Mariadb::start() else { return };
    db.sql(
        "ALTER TABLE dbispconfig.mail_user ADD password VARCHAR(255); \
         INSERT INTO dbispconfig.mail_user VALUES (1, 'alice@local.test', '{crypt}secret-hash'); \
         INSERT INTO dbispconfig.er_mail_user_ratelimit VALUES (1, 'y', 2); \
         CREATE TABLE dbispconfig.secrets (x INT); \
         CREATE TABLE dbispconfig.web_domain (domain_id INT PRIMARY KEY, domain VARCHAR(255), \
           system_user VARCHAR(64), php_open_basedir TEXT); \
         INSERT INTO dbispconfig.web_domain VALUES (1, 'www.local.test', 'web12', '/a'), \
           (2, 'shop.local.test', 'web12', '/b'), (3, 'other.test', 'web13', '/c');",
    );
    // An admin's own end-of-data restriction, which the installer must keep and restore.
    let Some(mail) = MailServer::start_with(&["alice@local.test"], "") else { return };
    let empty_map = mail.config_dir().join("client_access");
    std::fs::write(&empty_map, "").expect("map");
    mail.postconf(&[
        "-e",
        &format!("smtpd_end_of_data_restrictions = check_client_access texthash:{}", empty_map.display()),
    ]);
    // Issue 24: an OpenDKIM-style milter for local mail, and the admin's own header_checks.
    let checks = mail.config_dir().join("header_checks");
    std::fs::write(&checks, "/^X-Spam-Flag: YES/ HOLD\n").expect("header_checks");
    mail.postconf(&[
        "-e",
        "non_smtpd_milters = { inet:127.0.0.1:8891, default_action=accept }",
        &format!("header_checks = regexp:{}", checks.display()),
    ]);
    let before = (mail.postconf(&["-n"]), mail.postconf(&["-M"]));
    let root = open_root();
    let r = root.path();
    // Without systemd, install starts the daemon with the init script: on this test's Redis.
    let initd = InitDaemon(r.to_path_buf());
    defaults(r, &[("EMAIL_RATELIMIT__REDIS__URL", &redis.url()), ("EMAIL_RATELIMIT_TEST_SYSLOG", NO_SYSLOG)]);

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
    // Website mail: our milter after the admin's, pickup's own cleanup with our header_checks
    // first and the admin's after them.
    assert_eq!(
        mail.postconf(&["-nh", "non_smtpd_milters"]).trim(),
        "{ inet:127.0.0.1:8891, default_action=accept }, $email_ratelimit_milter"
    );
    let ours = mail.config_dir().join("email-ratelimit_pickup_header_checks");
    assert!(ours.is_file(), "the pickup header_checks installed");
    let services = mail.postconf(&["-P"]);
    assert!(services.contains("pickup/unix/cleanup_service_name = email-ratelimit-cleanup"), "{services}");
    assert!(
        services.contains(&format!(
            "email-ratelimit-cleanup/unix/header_checks = regexp:{},regexp:{}",
            ours.display(),
            checks.display()
        )),
        "{services}"
    );
    assert!(said.contains("verified: website mail passes the milter"), "{said}");
    let fragment = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/postfix/main.cf.fragment"))
        .expect("fragment");
    let policy = mail.postconf(&["-h", "email_ratelimit_policy"]);
    assert!(fragment.contains(policy.trim()), "the shipped hook text: {policy}");
    let config = r.join("etc/email-ratelimit/config.toml");
    // The recommended config, log-only, telling this host's postmaster.
    let written = std::fs::read_to_string(&config).expect("config");
    let host = mail.postconf(&["-h", "myhostname"]);
    assert!(written.contains(&format!("admin = [\"postmaster@{}\"]", host.trim())), "{written}");
    assert!(
        written.contains("mode = \"log-only\"") && written.contains("known_networks = true"),
        "{written}"
    );
    let milter = mail.queue_dir().join("private/email-ratelimit-milter");
    assert!(written.contains(&format!("listen = {:?}", milter.display().to_string())), "{written}");
    // The admin's edits: this test's Redis (never the host's on 6379), notifications through a
    // stand-in sendmail that records them (never the host's Postfix), and a comment.
    // The daemon runs it as its own user: a directory it may enter, a log it may write.
    let aside = open_root();
    let notified = aside.path().join("notified.log");
    std::fs::write(&notified, "").expect("notified.log");
    std::fs::set_permissions(&notified, std::os::unix::fs::PermissionsExt::from_mode(0o666)).expect("chmod");
    let stand_in = aside.path().join("sendmail-stand-in");
    std::fs::write(&stand_in, format!("#!/bin/sh\necho \"$*\" >> {}\ncat > /dev/null\n", notified.display()))
        .expect("stand-in");
    std::fs::set_permissions(&stand_in, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let edited = written
        .replacen("url = \"redis://127.0.0.1:6379/0\"", &format!("url = \"{}\"", redis.url()), 1)
        .replacen("sendmail = \"/usr/sbin/sendmail\"", &format!("sendmail = \"{}\"", stand_in.display()), 1);
    assert_ne!(edited, written, "the shipped config names Redis and sendmail");
    std::fs::write(&config, edited + "# edited by the admin\n").expect("edit");
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
        "usr/local/share/man/man8/email-ratelimit.8",
        "usr/local/share/man/man8/email-ratelimit-status.8",
        "usr/local/share/man/man5/email-ratelimit.toml.5",
    ] {
        assert!(r.join(f).exists(), "{f} installed");
    }
    let unit = std::fs::read_to_string(r.join("etc/systemd/system/email-ratelimit.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/email-ratelimit serve"), "{unit}");
    // This instance's queue_directory is not /var/spool/postfix: the socket unit must follow it.
    let dropin = std::fs::read_to_string(r.join("etc/systemd/system/email-ratelimit.socket.d/listen.conf"))
        .expect("socket drop-in");
    assert!(
        dropin.contains(&format!("ListenStream=\nListenStream={}\n", mail.policy_socket().display())),
        "{dropin}"
    );

    // A read-only database account, wired into the config.
    let socket = db.socket();
    let mysql = format!("mariadb --no-defaults -u root --socket={}", socket.display());
    let socket_arg = socket.display().to_string();
    let said = install(r, &mail, &["db-user", "--mysql", &mysql, "--db-socket", &socket_arg]);
    assert!(!said.contains("email_ratelimit:") || said.contains("********"), "password not printed: {said}");
    // Again, with every program it runs logging its command line: the password is on none.
    let shims = tempfile::tempdir().expect("tempdir");
    let argv_log = shims.path().join("argv.log");
    let path = logging_path(
        shims.path(),
        &argv_log,
        &[
            "awk", "sed", "grep", "cat", "mktemp", "head", "base64", "tr", "rm", "perl", "mkdir", "date",
            "cp", "mv",
        ],
    );
    let (ok, said) =
        run_install(r, Some(&mail), &["db-user", "--mysql", &mysql, "--db-socket", &socket_arg], Some(&path));
    assert!(ok, "{said}");
    let config_text = std::fs::read_to_string(&config).expect("config");
    let password = config_text
        .split("mysql://email_ratelimit:")
        .nth(1)
        .and_then(|rest| rest.split('@').next())
        .expect("the database url in the config");
    let argv = std::fs::read_to_string(&argv_log).expect("the shims ran");
    assert!(argv.contains("awk ") && argv.lines().count() > 5, "{argv}");
    assert!(!argv.contains(password), "the password was on a command line:\n{argv}");
    let grants = db.sql("SHOW GRANTS FOR 'email_ratelimit'@'localhost'");
    assert_eq!(grants.matches("GRANT SELECT (").count(), 4, "column grants only: {grants}");
    assert!(!grants.contains("GRANT SELECT ON `dbispconfig`"), "no whole-table grant: {grants}");
    assert!(!grants.contains("password") && !grants.contains("secrets"), "{grants}");
    // Issue 24: the websites of a local user, and nothing else of web_domain.
    let web = grants.lines().find(|l| l.contains("ON `dbispconfig`.`web_domain`")).unwrap_or_default();
    assert!(web.contains("`domain`") && web.contains("`system_user`"), "{grants}");
    assert!(!grants.contains("php_open_basedir"), "{grants}");
    let as_account = |sql: &str| {
        Command::new("mariadb")
            .args(["--no-defaults", "-u", "email_ratelimit", &format!("--password={password}")])
            .arg(format!("--socket={}", socket.display()))
            .args(["-N", "-B", "-e", sql])
            .output()
            .expect("mariadb client")
    };
    assert!(as_account("SELECT email FROM dbispconfig.mail_user").status.success());
    let denied = as_account("SELECT password FROM dbispconfig.mail_user");
    assert!(!denied.status.success(), "mail_user.password readable: {denied:?}");

    // The installed daemon, by hand (with the database's cache file of the test's own), in
    // place of the one the init script started.
    initd.stop();
    let installed = r.join("usr/local/bin/email-ratelimit");
    // Issue 24: `status local:web12` names its websites, read with that account.
    let status = Command::new(&installed)
        .args(["status", "local:web12", "--config"])
        .arg(&config)
        .env("EMAIL_RATELIMIT__REDIS__URL", redis.url())
        .output()
        .expect("status");
    let said =
        String::from_utf8_lossy(&status.stdout).into_owned() + &String::from_utf8_lossy(&status.stderr);
    assert!(
        status.status.success() && said.contains("websites:    shop.local.test, www.local.test\n"),
        "{said}"
    );
    let log_path = r.join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut daemon = Supervised::default();
    daemon.set(
        Command::new(&installed)
            .args(["serve", "--config"])
            .arg(&config)
            .env("EMAIL_RATELIMIT__DATABASE__CACHE_FILE", r.join("limits.json"))
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
        // 3 recipients under a cap of 2: a message that can never fit (REJECT when enforcing).
        daemon_log().contains("erl REJECT (log-only) user=alice@local.test rcpt=3").then_some(())
    });

    // Issue 21 item 2: enforce --at-midnight prints what enforcing changes (today's would-be
    // refusal of alice among it) and sets enforce_from = the next local date, staying log-only.
    // (install.sh's trial and record reach the test's Redis through the edited config.)
    let (ok, said) = run_install(r, Some(&mail), &["enforce", "--at-midnight"], None);
    assert!(ok, "{said}");
    let tomorrow = (chrono::Local::now().date_naive() + chrono::Days::new(1)).to_string();
    for part in [
        "What enforcing changes",
        "server caps:",
        "today (",
        "1 would-be refusal (DEFER (log-only)) of 1 sender",
        "alice@local.test  (mailbox 1d)",
        &format!("set mode = \"log-only\" and enforce_from = \"{tomorrow}\""),
    ] {
        assert!(said.contains(part), "{part:?} not in:\n{said}");
    }
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains(&format!("mode = \"log-only\"\nenforce_from = \"{tomorrow}\"\n")), "{text}");
    let records = redis.cmd(&["LRANGE", "erl:violations", "0", "0"]);
    assert!(format!("{records:?}").contains("enforce_from, at midnight"), "{records:?}");
    // enforce, twice; the daemon picks it up on SIGHUP (systemctl reload under systemd).
    let said = install(r, &mail, &["enforce"]);
    assert!(said.contains("set mode = \"enforce\""), "{said}");
    assert!(install(r, &mail, &["enforce"]).contains("already mode = \"enforce\""));
    assert!(!std::fs::read_to_string(&config).expect("config").contains("\nenforce_from = "), "dropped");
    // Already enforcing: --at-midnight must not step back to log-only.
    let said = install(r, &mail, &["enforce", "--at-midnight"]);
    assert!(said.contains("already mode = \"enforce\"") && said.contains("nothing to wait for"), "{said}");
    assert!(std::fs::read_to_string(&config).expect("config").contains("\nmode = \"enforce\"\n"));
    daemon.signal(Signal::SIGHUP);
    wait_for("the reload", Duration::from_secs(10), || {
        daemon_log().contains("reloaded: mode=enforce").then_some(())
    });
    let sent = mail.send(mail.submission, Some("alice@local.test"), "alice@local.test", &rcpts(1));
    assert_eq!(sent.code, 26, "{}", sent.transcript);
    assert!(
        sent.reply.contains("alice@local.test: Your daily limit of 2 recipients reached"),
        "{}",
        sent.reply
    );
    // The postmaster is told of the refusal, through the configured sendmail (the stand-in).
    wait_for("the notification mail", Duration::from_secs(10), || {
        let sent = std::fs::read_to_string(&notified).unwrap_or_default();
        sent.contains(&format!("-- postmaster@{}", host.trim())).then_some(())
    });

    let said = install(r, &mail, &["status"]);
    assert!(said.contains("mode = enforce") && said.contains("Postfix: hooked"), "{said}");
    // Issue 32 item 5: whether the daemon runs (it answers, and Redis does).
    assert!(said.contains("daemon:  answers (Redis too)"), "{said}");

    // disable, twice: Postfix exactly as before; mail flows without asking the daemon.
    install(r, &mail, &["disable"]);
    assert_eq!((mail.postconf(&["-n"]), mail.postconf(&["-M"])), before, "disable restores Postfix");
    assert!(!mail.postconf(&["-P"]).contains("email-ratelimit"), "no pickup override left");
    assert!(!mail.config_dir().join("email-ratelimit_pickup_header_checks").exists());
    install(r, &mail, &["disable"]);
    assert_eq!((mail.postconf(&["-n"]), mail.postconf(&["-M"])), before);
    // Issue 21 item 15: `hook` sets only the hook (what the Debian package runs); disable undoes it.
    let said = install(r, &mail, &["hook"]);
    assert!(said.contains("Hooking email-ratelimit into Postfix"), "{said}");
    assert!(install(r, &mail, &["status"]).contains("Postfix: hooked"));
    install(r, &mail, &["disable"]);
    assert_eq!((mail.postconf(&["-n"]), mail.postconf(&["-M"])), before, "disable after hook");
    for shared in ["prometheus/alerts.yml", "grafana/email-ratelimit.json", "systemd/sendmail.conf"] {
        assert!(r.join("usr/local/share/email-ratelimit").join(shared).is_file(), "{shared} installed");
    }
    let asked = daemon_log().matches("erl ").count();
    let sent = mail.send(mail.submission, Some("alice@local.test"), "alice@local.test", &rcpts(1));
    assert_eq!(sent.code, 0, "{}", sent.transcript);
    // A request of the test's own after the message: once its line is in the log, a line for
    // the message would be too (one writer, in order).
    let barrier = Command::new(&installed)
        .args(["probe", "--count", "--user", "barrier@local.test", "--socket"])
        .arg(mail.policy_socket())
        .output()
        .expect("probe");
    assert!(barrier.status.success(), "{barrier:?}");
    wait_for("the barrier's line", Duration::from_secs(10), || {
        daemon_log().contains("user=barrier@local.test").then_some(())
    });
    assert_eq!(daemon_log().matches("erl ").count() - 1, asked, "Postfix no longer asks the daemon");
    assert!(install(r, &mail, &["status"]).contains("Postfix: not hooked"));
    daemon.stop();
    let said = install(r, &mail, &["status"]);
    assert!(said.contains("daemon:  NOT answering on its socket"), "{said}");

    // install again (the init script starts the daemon), then uninstall, twice: the daemon
    // stopped, its socket file gone (one systemd's unit leaves in place, RemoveOnStop=no, or
    // one the daemon's user may not remove from Postfix's private/), and only Postfix backups
    // and the admin's files remain.
    let said = install(r, &mail, &["install"]);
    assert!(said.contains("started the daemon with"), "{said}");
    let pid = initd.pid().expect("the init script's daemon");
    std::fs::write(r.join("etc/email-ratelimit/notes.txt"), "the admin's own file\n").expect("notes");
    assert!(mail.policy_socket().exists(), "the daemon listens");
    let said = install(r, &mail, &["uninstall"]);
    assert!(said.contains("stopped the daemon"), "{said}");
    assert!(ended(pid), "stopped before uninstall returned");
    assert!(!mail.policy_socket().exists(), "the socket file is gone");
    assert!(said.contains("are saved in"), "{said}");
    let said = install(r, &mail, &["uninstall"]);
    assert!(said.contains("nothing installed"), "{said}");
    assert_eq!((mail.postconf(&["-n"]), mail.postconf(&["-M"])), before, "uninstall restores Postfix");
    // The test's own files: the daemon's log, its cache file, the init script's environment.
    let left: Vec<String> = files_under(r)
        .into_iter()
        .filter(|f| f != "daemon.log" && f != "limits.json" && f != "etc/default/email-ratelimit")
        .collect();
    assert!(left.iter().all(|f| f.starts_with("var/backups/email-ratelimit/")), "left behind: {left:?}");
    assert!(
        left.iter().any(|f| f.starts_with("var/backups/email-ratelimit/etc-email-ratelimit.")
            && f.ends_with("/notes.txt")),
        "the admin's files are backed up: {left:?}"
    );
    assert!(left.iter().any(|f| f.ends_with("/config.toml")), "and the config: {left:?}");
}

/// A permit before the hook, a master.cf override that empties the list, a per-service setup, an
/// override postconf cannot rewrite, and a staging root: each as an admin's Postfix has them.
#[test]
fn the_hook_goes_where_postfix_reaches_it() {
    let Some(mail) = MailServer::start_with(
        &["alice@local.test"],
        "smtpd_end_of_data_restrictions = permit_sasl_authenticated\n",
    ) else {
        return;
    };
    let mx = format!("127.0.0.1:{}/inet", mail.mx);
    let submission = format!("127.0.0.1:{}/inet", mail.submission);
    // The MX service empties the list for itself: a global hook alone would never be asked there.
    mail.postconf(&["-P", &format!("{mx}/smtpd_end_of_data_restrictions=")]);
    let before = (mail.postconf(&["-n"]), mail.postconf(&["-M"]));
    let root = open_root();
    let r = root.path();
    // Without systemd, install starts the daemon with the init script (in memory here).
    let initd = InitDaemon(r.to_path_buf());
    defaults(r, &[("EMAIL_RATELIMIT__STORE", "memory"), ("EMAIL_RATELIMIT_TEST_SYSLOG", NO_SYSLOG)]);

    let said = install(r, &mail, &["install"]);
    assert_eq!(
        mail.postconf(&["-nh", "smtpd_end_of_data_restrictions"]).trim(),
        "$email_ratelimit_policy, permit_sasl_authenticated",
        "before the permit, where Postfix reaches it"
    );
    assert!(
        mail.postconf(&["-P"])
            .contains(&format!("{mx}/smtpd_end_of_data_restrictions = $email_ratelimit_policy"))
    );
    assert!(
        said.contains("verified: the smtpd services") && said.contains(&mx) && said.contains(&submission),
        "{said}"
    );
    assert!(install(r, &mail, &["install"]).contains("Postfix hook already in place"));

    // Both services really ask the daemon (one started by hand, logging to a file, in place of
    // the init script's).
    initd.stop();
    let config = r.join("etc/email-ratelimit/config.toml");
    let log_path = r.join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut daemon = Supervised::default();
    daemon.set(
        erl()
            .args(["serve", "--config"])
            .arg(&config)
            .env("EMAIL_RATELIMIT__STORE", "memory")
            .env("EMAIL_RATELIMIT__LOG__LEVEL", "debug")
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start the daemon"),
    );
    let daemon_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for("the daemon", Duration::from_secs(20), || mail.policy_socket().exists().then_some(()));
    let sent = mail.send(mail.submission, Some("alice@local.test"), "alice@local.test", &rcpts(2));
    assert_eq!(sent.code, 0, "{}", sent.transcript);
    wait_for("the authenticated message", Duration::from_secs(10), || {
        daemon_log().contains("user=alice@local.test rcpt=2").then_some(())
    });
    let sent =
        mail.send(mail.mx, None, &format!("someone@{REMOTE}"), &[format!("r1@{}", common::mail::LOCAL)]);
    assert_eq!(sent.code, 0, "{}", sent.transcript);
    wait_for("the MX message", Duration::from_secs(10), || {
        daemon_log().contains("erl pass reason=unauthenticated").then_some(())
    });
    daemon.stop();

    install(r, &mail, &["disable"]);
    assert_eq!((mail.postconf(&["-n"]), mail.postconf(&["-M"])), before, "disable restores both");

    // A per-service setup (postfix/master.cf.fragment): install keeps it, adds no global hook.
    mail.postconf(&["-e", "email_ratelimit_policy = check_policy_service { unix:private/email-ratelimit, timeout=5s, default_action=DUNNO }"]);
    mail.postconf(&["-P", &format!("{submission}/smtpd_end_of_data_restrictions=$email_ratelimit_policy")]);
    let per_service = mail.postconf(&["-nh", "smtpd_end_of_data_restrictions"]);
    let said = install(r, &mail, &["install"]);
    assert!(said.contains("per-service hook"), "{said}");
    assert_eq!(
        mail.postconf(&["-nh", "smtpd_end_of_data_restrictions"]),
        per_service,
        "no global hook added"
    );
    install(r, &mail, &["disable"]);
    assert!(!mail.postconf(&["-P"]).contains("email_ratelimit_policy"), "{}", mail.postconf(&["-P"]));

    // An override postconf -P cannot write (a `{ }` group): refused, nothing changed.
    mail.postconf(&["-PX", &format!("{mx}/smtpd_end_of_data_restrictions")]);
    let master = mail.config_dir().join("master.cf");
    let text: String = std::fs::read_to_string(&master)
        .expect("master.cf")
        .lines()
        .map(|l| {
            let extra = if l.contains("-o syslog_name=postfix/mx") {
                "\n  -o { smtpd_end_of_data_restrictions = check_policy_service { unix:private/other, timeout=5s }, permit }"
            } else {
                ""
            };
            format!("{l}{extra}\n")
        })
        .collect();
    assert!(text.contains("unix:private/other"), "{text}");
    std::fs::write(&master, text).expect("write master.cf");
    let unwritable = (mail.postconf(&["-n"]), mail.postconf(&["-M"]));
    let (ok, said) = run_install(r, Some(&mail), &["install"], None);
    assert!(
        !ok && said.contains("postconf cannot add the hook") && said.contains("Postfix was not changed"),
        "{said}"
    );
    assert_eq!((mail.postconf(&["-n"]), mail.postconf(&["-M"])), unwritable);

    // Staging under --root without --postfix-config never touches a Postfix.
    let staging = tempfile::tempdir().expect("tempdir");
    let (ok, said) = run_install(staging.path(), None, &["install"], None);
    assert!(ok && said.contains("Postfix not touched") && !said.contains("hooked"), "{said}");
    assert_eq!((mail.postconf(&["-n"]), mail.postconf(&["-M"])), unwritable);
}

/// Issue 31 items 2 to 4, through install.sh on a Postfix as an admin may have it: pickup with a
/// content filter's `receive_override_options = no_header_body_checks`, a header rule that strips
/// pickup's `Received: ... from userid N` line, a table of their own on the way out, and a Dovecot
/// whose mail user is not vmail. The flag is dropped from pickup's override only with consent
/// (`--pickup-checks`), pickup's cleanup runs our table alone, the marker and that Received line
/// are removed where mail leaves (smtp), the mail user is exempted, and disable restores all of it.
#[test]
fn website_mail_on_a_content_filter_setup_leaves_without_the_marker() {
    let Some(mail) = MailServer::start_with_sink(&[], "") else { return };
    let etc = mail.config_dir();
    let admin = etc.join("header_checks");
    std::fs::write(&admin, "/^X-Mailer: bulk/ DISCARD\n/^Received: .*from userid/ IGNORE\n")
        .expect("header_checks");
    let own_exit = etc.join("smtp_header_checks");
    std::fs::write(&own_exit, "/^X-Internal:/ IGNORE\n").expect("smtp_header_checks");
    mail.postconf(&[
        "-e",
        &format!("header_checks = regexp:{}", admin.display()),
        &format!("smtp_header_checks = regexp:{}", own_exit.display()),
    ]);
    mail.postconf(&["-P", "pickup/unix/receive_override_options=no_header_body_checks,no_address_mappings"]);
    let aside = tempfile::tempdir().expect("tempdir");
    let dovecot = aside.path().join("dovecot.conf");
    std::fs::write(&dovecot, "mail_uid = mail\n").expect("dovecot.conf");
    let dovecot = dovecot.display().to_string();
    let before = (mail.postconf(&["-n"]), mail.postconf(&["-M"]), mail.postconf(&["-P"]));
    let root = open_root();
    let r = root.path();
    // Without systemd, install starts the daemon with the init script (in memory here).
    let initd = InitDaemon(r.to_path_buf());
    defaults(r, &[("EMAIL_RATELIMIT__STORE", "memory"), ("EMAIL_RATELIMIT_TEST_SYSLOG", NO_SYSLOG)]);

    // Without consent: refused, saying what and how; the policy hook is in place, the milter not.
    let (ok, said) = run_install(r, Some(&mail), &["install", "--dovecot-config", &dovecot], None);
    assert!(!ok && said.contains("no_header_body_checks") && said.contains("--pickup-checks"), "{said}");
    assert!(said.contains("The policy hook is in place"), "{said}");
    assert!(mail.postconf(&["-nh", "non_smtpd_milters"]).trim().is_empty());

    // With it: the flag leaves pickup's override (the other one stays), pickup's cleanup runs our
    // table alone, the exit table goes first in smtp_ and lmtp_header_checks with the admin's
    // Received rule repeated (and not their others), Dovecot's mail user is exempted.
    let said = install(r, &mail, &["hook", "--pickup-checks", "--dovecot-config", &dovecot]);
    let services = mail.postconf(&["-P"]);
    assert!(services.contains("pickup/unix/receive_override_options = no_address_mappings\n"), "{services}");
    let ours = etc.join("email-ratelimit_pickup_header_checks");
    assert!(
        services
            .contains(&format!("email-ratelimit-cleanup/unix/header_checks = regexp:{}\n", ours.display())),
        "our table alone: {services}"
    );
    let exit = etc.join("email-ratelimit_exit_header_checks");
    assert_eq!(
        mail.postconf(&["-nh", "smtp_header_checks"]).trim(),
        format!("regexp:{}, regexp:{}", exit.display(), own_exit.display())
    );
    assert_eq!(mail.postconf(&["-nh", "lmtp_header_checks"]).trim(), format!("regexp:{}", exit.display()));
    let table = std::fs::read_to_string(&exit).expect("the exit table");
    assert!(table.contains("/^X-Email-Ratelimit-Uid:/ IGNORE\n"), "{table}");
    assert!(table.contains("/^Received: .*from userid/ IGNORE\n") && !table.contains("X-Mailer"), "{table}");
    for part in [
        "no_header_body_checks dropped",
        "repeated where mail leaves",
        "Dovecot's mail user mail (mail_uid) is exempt",
        "verified: website mail passes the milter",
    ] {
        assert!(said.contains(part), "{part:?} not in:\n{said}");
    }
    let config = std::fs::read_to_string(r.join("etc/email-ratelimit/config.toml")).expect("config");
    assert!(
        config.contains("exempt_users = [\"root\", \"email-ratelimit\", \"vmail\", \"mail\"]"),
        "{config}"
    );
    let again = install(r, &mail, &["hook", "--pickup-checks", "--dovecot-config", &dovecot]);
    assert!(again.contains("milter hook already in place") && !again.contains("exempt from"), "{again}");

    // Website mail leaves through smtp without the marker and without pickup's Received line,
    // and was counted as its user (by a daemon of the test's, in place of the init script's).
    initd.stop();
    let socket = mail.queue_dir().join("private/email-ratelimit-milter");
    let daemon = Daemon::start_at(
        mail.policy_socket(),
        &format!(
            "store = \"memory\"\nserver_name = \"mx1\"\n[listen]\nsocket_group = \"postfix\"\n\
             [milter]\nlisten = {:?}\n[limits.local]\ndaily = 10\n",
            socket.display().to_string()
        ),
    );
    daemon.wait_log(&format!("milter on unix:{}", socket.display()), 1);
    let out = format!("r1@{}", common::mail::OUTSIDE);
    assert!(mail.sendmail_as("www-data", "www-data", None, std::slice::from_ref(&out), "leaving"));
    mail.wait_delivered(&out, 1);
    let text = mail.delivered_texts(&out).concat();
    assert!(
        text.contains("Subject: leaving") && text.contains("by sink.remote.test"),
        "went out by smtp: {text}"
    );
    assert!(!text.contains("X-Email-Ratelimit-Uid") && !text.contains("from userid"), "{text}");
    daemon.wait_log("erl ok user=local:www-data@mx1 rcpt=1 local=1/10", 1);
    assert!(mail.maillog().contains("relay=127.0.0.1["), "{}", mail.maillog());

    // disable: Postfix exactly as before, pickup's override included.
    install(r, &mail, &["disable"]);
    assert_eq!((mail.postconf(&["-n"]), mail.postconf(&["-M"]), mail.postconf(&["-P"])), before);
    assert!(!exit.exists());

    // An upgrade: a v3 config lists exempt_users without vmail, and Dovecot has no global
    // mail_uid (ISPConfig's SQL userdb gives each user's, vmail's): hook adds vmail.
    let config = r.join("etc/email-ratelimit/config.toml");
    let v3 = std::fs::read_to_string(&config).expect("config").replace(
        "exempt_users = [\"root\", \"email-ratelimit\", \"vmail\", \"mail\"]",
        "exempt_users = [\"root\", \"email-ratelimit\"]",
    );
    std::fs::write(&config, &v3).expect("a v3 list");
    std::fs::write(&dovecot, "# no mail_uid\n").expect("dovecot.conf");
    let said = install(r, &mail, &["hook", "--pickup-checks", "--dovecot-config", &dovecot]);
    assert!(said.contains("Dovecot's mail user vmail (the vmail account) is exempt"), "{said}");
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains("exempt_users = [\"root\", \"email-ratelimit\", \"vmail\"]"), "{text}");
    install(r, &mail, &["disable"]);
    assert_eq!((mail.postconf(&["-n"]), mail.postconf(&["-M"]), mail.postconf(&["-P"])), before);

    // no_milters: no milter sees pickup's mail; refused, saying why.
    mail.postconf(&["-P", "pickup/unix/receive_override_options=no_milters"]);
    let (ok, said) = run_install(r, Some(&mail), &["hook", "--pickup-checks"], None);
    assert!(!ok && said.contains("no_milters keeps every milter"), "{said}");
}

/// Issue 32 item 3: `enforce --at-midnight` schedules the next local date of the config's zone,
/// also east of UTC+12 (Kiribati, UTC+14; New Zealand in summer, UTC+13), where shell date
/// arithmetic scheduled two days ahead. On a clock the test sets.
#[test]
fn enforce_at_midnight_picks_the_next_local_date_in_every_zone() {
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    let (ok, said) = run_install(r, None, &["install"], None);
    assert!(ok, "{said}");
    let config = r.join("etc/email-ratelimit/config.toml");
    let clock = r.join("clock");
    let shipped = std::fs::read_to_string(&config).expect("config");
    // Never the host's Redis: a port nothing listens on (the preview and the record say so).
    let shipped =
        shipped.replacen("url = \"redis://127.0.0.1:6379/0\"", "url = \"redis://127.0.0.1:1/0\"", 1);
    for (zone, now, next) in [
        // 10:30 UTC on the 7th is 00:30 on the 8th in Kiribati (UTC+14); 09:30 is still the 7th.
        ("Pacific/Kiritimati", "2026-12-07T10:30:00Z", "2026-12-09"),
        ("Pacific/Kiritimati", "2026-12-07T09:30:00Z", "2026-12-08"),
        ("Pacific/Auckland", "2026-12-07T11:30:00Z", "2026-12-09"),
        ("America/New_York", "2026-12-08T03:00:00Z", "2026-12-08"),
        ("UTC", "2026-12-07T23:59:59Z", "2026-12-08"),
    ] {
        let zoned = shipped.replacen("\ntimezone = \"\"", &format!("\ntimezone = \"{zone}\""), 1);
        assert_ne!(zoned, shipped, "the shipped config has a timezone line");
        std::fs::write(&config, zoned).expect("config");
        let secs = chrono::DateTime::parse_from_rfc3339(now).expect("time").timestamp();
        std::fs::write(&clock, secs.to_string()).expect("clock");
        let clock_env = clock.display().to_string();
        let (ok, said) = run_install_env(
            r,
            None,
            &["enforce", "--at-midnight"],
            None,
            &[("EMAIL_RATELIMIT_TEST_CLOCK", &clock_env)],
        );
        assert!(ok, "{said}");
        assert!(
            said.contains(&format!("Enforcing the limits from {next} 00:00 ({zone})")),
            "{zone} at {now}:\n{said}"
        );
        let text = std::fs::read_to_string(&config).expect("config");
        assert!(text.contains(&format!("enforce_from = \"{next}\"")), "{zone} at {now}:\n{text}");
    }
}

/// `db-user --layout erl-columns` on an ISPConfig database with the extension: the server id
/// from ISPConfig's own config file, SELECT on exactly the columns the daemon reads (the
/// daemon's own queries run as that account; `mail_user.password` does not), and a config that
/// validates.
#[test]
fn db_user_for_the_erl_columns_layout() {
    let Some(db) = Mariadb::start() else { return };
    let schema =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sql/ispconfig_erl_columns.sql"))
            .expect("schema");
    db.sql(&format!("CREATE DATABASE ispc; USE ispc; {schema}"));
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    let (ok, said) = run_install(r, None, &["install"], None);
    assert!(ok, "{said}");
    let mysql = format!("mariadb --no-defaults -u root --socket={}", db.socket().display());
    let socket = db.socket().display().to_string();
    let args = [
        "db-user",
        "--layout",
        "erl-columns",
        "--database",
        "ispc",
        "--mysql",
        &mysql,
        "--db-socket",
        &socket,
    ];
    let (ok, said) = run_install(r, None, &args, None);
    assert!(!ok && said.contains("--server-id"), "no server id anywhere: {said}");
    let ispconfig = r.join("usr/local/ispconfig/server/lib");
    std::fs::create_dir_all(&ispconfig).expect("mkdir");
    std::fs::write(
        ispconfig.join("config.inc.php"),
        "<?php\n$conf['app_title'] = 'ISPConfig';\n$conf['server_id'] = '1';\n",
    )
    .expect("config.inc.php");
    let (ok, said) = run_install(r, None, &args, None);
    assert!(ok, "{said}");
    let config = std::fs::read_to_string(r.join("etc/email-ratelimit/config.toml")).expect("config");
    assert!(config.contains("layout = \"erl-columns\"\nserver_id = 1\n"), "{config}");
    let grants = db.sql("SHOW GRANTS FOR 'email_ratelimit'@'localhost'");
    assert_eq!(grants.matches("GRANT SELECT (").count(), 4, "column grants only: {grants}");
    assert!(!grants.contains("`password`"), "{grants}");
    let password = config
        .split("mysql://email_ratelimit:")
        .nth(1)
        .and_then(|rest| rest.split('@').next())
        .expect("the database url in the config");
    let as_account = |sql: &str| {
        Command::new("mariadb")
            .args(["--no-defaults", "-u", "email_ratelimit", &format!("--password={password}")])
            .arg(format!("--socket={}", db.socket().display()))
            .args(["-N", "-B", "ispc", "-e", sql])
            .output()
            .expect("mariadb client")
    };
    // The daemon's own queries, as that account.
    for query in email_ratelimit::limits::erl_columns::QUERIES {
        let out = as_account(&query.replace('?', "1"));
        assert!(out.status.success(), "{query}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(!as_account("SELECT password FROM mail_user").status.success(), "mail_user.password readable");
    let check = Command::new(r.join("usr/local/bin/email-ratelimit"))
        .args(["check-config", "--config"])
        .arg(r.join("etc/email-ratelimit/config.toml"))
        .output()
        .expect("check-config");
    assert!(check.status.success(), "{check:?}");
}

/// Issue 21 items 13 and 15: `--help` is the whole header; a bad `--root` is named; the "Next:"
/// hints repeat the options a later command needs.
#[test]
fn help_is_whole_and_mistakes_are_named() {
    let out = Command::new("bash").arg(INSTALL).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && help.starts_with("email-ratelimit installer:"), "{help}");
    assert!(help.trim_end().ends_with("disable restores the previous values."), "cut: {help}");
    assert!(help.contains("--at-midnight") && !help.contains("set -euo"), "{help}");
    let out =
        Command::new("bash").arg(INSTALL).args(["status", "--root", "/nonexistent/x"]).output().expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "install.sh: --root /nonexistent/x: no such directory\n"
    );
    let root = tempfile::tempdir().expect("tempdir");
    let (ok, said) = run_install(root.path(), None, &["install"], None);
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("{INSTALL} --root {} --no-systemd enforce", root.path().display())),
        "{said}"
    );
    let (ok, said) = run_install(root.path(), None, &["status", "--at-midnight"], None);
    assert!(!ok && said.contains("--at-midnight goes with enforce only"), "{said}");
}

/// Issue 32 item 1: on a host without systemd, `install` puts the init script in place, starts
/// the daemon with it (as root: it binds, gives the sockets to its user, writes its pid file,
/// drops), and hooks Postfix only once `probe` gets an answer. Every thread runs as
/// email-ratelimit, Postfix's requests are counted, the lines reach syslog (stdout is /dev/null
/// under start-stop-daemon --background), a reload reads the config (0640 root:email-ratelimit)
/// as that user, and uninstall stops it.
#[test]
fn without_systemd_the_init_script_runs_the_daemon_as_its_own_user() {
    let Some(redis) = Redis::start() else { return };
    let Some(mail) = MailServer::start_with(&["alice@local.test"], "") else { return };
    let syslog = SyslogSink::start();
    let root = open_root();
    let r = root.path();
    let daemon = InitDaemon(r.to_path_buf());
    let url = redis.url();
    let sink = syslog.path().display().to_string();
    // install.sh's own admin commands reach the test's Redis and syslog too.
    let env = [("EMAIL_RATELIMIT__REDIS__URL", url.as_str()), ("EMAIL_RATELIMIT_TEST_SYSLOG", sink.as_str())];
    let run = |args: &[&str]| run_install_env(r, Some(&mail), args, None, &env);
    let hook = || mail.postconf(&["-nh", "smtpd_end_of_data_restrictions"]);

    // The daemon listens elsewhere (an admin's override): nothing answers where Postfix asks,
    // and nothing is hooked.
    let elsewhere = r.join("elsewhere.sock").display().to_string();
    defaults(r, &[env[0], env[1], ("EMAIL_RATELIMIT__LISTEN__SOCKET", elsewhere.as_str())]);
    let (ok, said) = run(&["install"]);
    assert!(
        !ok && said.contains(&format!("NOT hooked: nothing answers on {}", mail.policy_socket().display())),
        "{said}"
    );
    assert!(!hook().contains("email_ratelimit"), "hooked with nothing answering: {}", hook());

    // Where Postfix asks: started by the init script, answered, hooked.
    defaults(r, &env);
    let (ok, said) = run(&["install"]);
    assert!(ok, "{said}");
    let script = daemon.script();
    assert!(
        said.contains(&format!("installed the init script {}", script.display()))
            && said.contains(&format!("started the daemon with {} (sysvinit script: pid ", script.display()))
            && said.contains("running as email-ratelimit, logging to syslog")
            && said.contains(&format!("the daemon answers on {}", mail.policy_socket().display())),
        "{said}"
    );
    assert!(hook().contains("$email_ratelimit_policy"), "{}", hook());
    let user = nix::unistd::User::from_name("email-ratelimit").expect("passwd").expect("the daemon's user");
    let config = r.join("etc/email-ratelimit/config.toml");
    let meta = std::fs::metadata(&config).expect("config");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.mode() & 0o777, meta.uid(), meta.gid()),
        (0o640, 0, user.gid.as_raw()),
        "root:email-ratelimit 0640"
    );
    let text = std::fs::read_to_string(&config).expect("config");
    let section = text.split("\n[daemon]\n").nth(1).and_then(|t| t.split("\n[").next()).unwrap_or_default();
    assert!(section.contains("\nuser = \"email-ratelimit\"\n"), "{text}");

    // Every thread of the process runs as the unprivileged user.
    let pid = daemon.pid().expect("the pid file");
    let (uid, gid) = (user.uid.as_raw().to_string(), user.gid.as_raw().to_string());
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks").flatten().collect();
    assert!(tasks.len() >= 3, "the runtime's, the log's, jemalloc's threads: {}", tasks.len());
    for task in &tasks {
        let status = std::fs::read_to_string(task.path().join("status")).expect("status");
        let ids = |name: &str| -> Vec<String> {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_default();
            line.split_whitespace().skip(1).map(str::to_owned).collect()
        };
        assert_eq!(ids("Uid:"), vec![uid.clone(); 4], "{}: {status}", task.path().display());
        assert_eq!(ids("Gid:"), vec![gid.clone(); 4], "{}: {status}", task.path().display());
        assert!(!ids("Groups:").contains(&"0".to_owned()), "{status}");
    }

    // Postfix's requests are counted (log-only counts).
    for _ in 0..2 {
        let sent = mail.send(mail.submission, Some("alice@local.test"), "alice@local.test", &rcpts(2));
        assert_eq!(sent.code, 0, "{}", sent.transcript);
    }
    wait_for("4 recipients counted", Duration::from_secs(20), || {
        (redis.get(&common::key("alice@local.test")) == Some(4)).then_some(())
    });
    // Its lines reach syslog, facility mail, as email-ratelimit[pid].
    let line = syslog.wait_for("erl ok user=alice@local.test rcpt=2");
    assert!(line.starts_with(&format!("<22>email-ratelimit[{pid}]: erl ok ")), "{line}");
    let line = syslog.wait_for("running as user email-ratelimit");
    assert!(line.contains("sockets bound and pid file written as root"), "{line}");

    // A reload (enforce) reads the config as that user.
    let (ok, said) = run(&["enforce"]);
    assert!(ok && said.contains(&format!("reloaded the daemon ({} reload)", script.display())), "{said}");
    syslog.wait_for("reloaded: mode=enforce");
    let (ok, said) = run(&["status"]);
    assert!(ok, "{said}");
    assert!(said.contains(&format!("init:    email-ratelimit is running (pid {pid})")), "{said}");
    assert!(said.contains("daemon:  answers (Redis too)"), "{said}");

    // uninstall stops it and removes the script.
    let (ok, said) = run(&["uninstall"]);
    assert!(ok && said.contains(&format!("stopped the daemon and removed {}", script.display())), "{said}");
    assert!(ended(pid), "stopped before uninstall returned");
    assert!(!script.exists() && !r.join("run/email-ratelimit").exists());
    assert_eq!(hook().trim(), "", "unhooked");
}
