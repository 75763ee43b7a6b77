//! End to end: the daemon behind a real Postfix, with real SASL logins (Dovecot), a real SMTP
//! client (swaks) and Maildir delivery, plus a real redis-server and mariadbd. Each scenario
//! asserts what the client saw, what was delivered, the Redis counters, and that the daemon
//! really received the request (its log names the message's queue id).
//!
//! One environment serves all scenarios in order (starting Postfix, Dovecot, Redis and MariaDB
//! takes seconds); every server is stopped by PID when the test ends, pass or fail. Run with
//! `--nocapture` to see each scenario's SMTP reply.

mod common;

use std::time::Duration;

use common::mail::{LOCAL, MailServer, REMOTE, Sent};
use common::*;
use nix::sys::signal::Signal;

const IDN_LOGIN: &str = "jörg@bücher.test";
const IDN_STORED: &str = "jörg@xn--bcher-kva.test";

struct Env {
    mail: MailServer,
    redis: Redis,
    db: Mariadb,
    daemon: Daemon,
}

fn rcpts(domain: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("r{i}@{domain}")).collect()
}

fn rcpt(domain: &str, i: usize) -> String {
    format!("r{i}@{domain}")
}

fn counter(user: &str) -> String {
    format!("erl:{}:{user}", today())
}

/// The admin who is told about locks, through the instance's own `sendmail`.
const ADMIN: &str = "r5@local.test";

fn config(env_db: &Mariadb, redis: &Redis, mail: &MailServer, mode: &str) -> String {
    format!(
        "mode = \"{mode}\"\n\
         [listen]\nsocket_group = \"postfix\"\n\
         [protect]\nmax_client_ips = 3\nlock = true\n\
         [notify]\nadmin = [\"{ADMIN}\"]\nsendmail = \"{} -t -i\"\n\
         [[limits.mailbox]]\nemail = \"alice@{LOCAL}\"\ndaily = 3\n\
         [[limits.mailbox]]\nemail = \"frank@{LOCAL}\"\ndaily = 4\n\
         [[limits.mailbox]]\nemail = \"hana@{LOCAL}\"\nrates = [\"2/1h\"]\n\
         [[limits.mailbox]]\nemail = \"kim@{LOCAL}\"\ndaily = 100\nrates = [\"2msg/1h\"]\nmax_rcpt_per_message = 3\n\
         [redis]\nurl = \"{}\"\n\
         [database]\nurl = \"{}\"\nrefresh_secs = 1\ntimeout_secs = 2\n\
         [log]\nlevel = \"info,email_ratelimit=debug\"\n",
        sendmail_as_the_unit(mail).display(),
        redis.url(),
        env_db.url()
    )
}

/// The instance's real `sendmail`, run the way the hardened unit with `systemd/sendmail.conf`
/// runs it: an unprivileged user, no_new_privs (so postdrop's set-gid does nothing), and the
/// drop-in's supplementary group postdrop. (`MAIL_CONFIG` names the test instance: `-C` is for
/// root only.)
fn sendmail_as_the_unit(mail: &MailServer) -> std::path::PathBuf {
    let drop_in = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/sendmail.conf"))
        .expect("the drop-in");
    let group = drop_in
        .lines()
        .find_map(|l| l.strip_prefix("SupplementaryGroups="))
        .expect("SupplementaryGroups in the drop-in");
    let path = mail.root().join("sendmail-as-the-unit");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexport MAIL_CONFIG={}\nexec setpriv --no-new-privs --reuid=nobody --regid=nogroup \
             --groups={group} /usr/sbin/sendmail \"$@\"\n",
            mail.config_dir().display()
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    path
}

impl Env {
    fn send(&self, login: &str, to: &[String]) -> Sent {
        let from = if login.is_ascii() { login.to_lowercase() } else { format!("jorg@{LOCAL}") };
        let sent = self.mail.send(self.mail.submission, Some(login), &from, to);
        eprintln!("  {login} -> {} recipients: {} (swaks exit {})", to.len(), sent.reply, sent.code);
        sent
    }

    fn get(&self, user: &str) -> Option<u64> {
        self.redis.get(&counter(user))
    }

    /// The daemon's log names the accepted message's queue id in an `erl ok` line.
    fn assert_counted(&self, sent: &Sent, user: &str) {
        assert_eq!(sent.code, 0, "accepted: {}", sent.transcript);
        let qid = sent.queue_id().expect("a queue id");
        self.daemon.wait_log(&format!("queue_id={qid}"), 1);
        assert!(
            self.daemon.log().lines().any(|l| l.contains("erl ok")
                && l.contains(&format!("user={user} "))
                && l.contains(&format!("queue_id={qid}"))),
            "no erl ok line for {user} {qid}:\n{}",
            self.daemon.log()
        );
    }

    fn assert_deferred(&self, sent: &Sent, text: &str) {
        assert_eq!(sent.code, 26, "end-of-data refused: {}", sent.transcript);
        assert_eq!(sent.reply, format!("450 4.7.1 <END-OF-MESSAGE>: End-of-data rejected: {text}"));
        self.mail.wait_queue_empty();
    }
}

#[test]
fn postfix_end_to_end() {
    let logins = [
        "alice@local.test",
        "bob@local.test",
        "carol@local.test",
        "dave@local.test",
        "erin@local.test",
        "Frank@Local.Test",
        "frank@local.test",
        "hana@local.test",
        "ivan@local.test",
        "kim@local.test",
        IDN_LOGIN,
    ];
    let Some(redis) = Redis::start() else { return };
    let Some(db) = Mariadb::start() else { return };
    let Some(mail) = MailServer::start(&logins) else { return };
    for (id, email, daily) in
        [(1, "erin@local.test", "2"), (2, IDN_STORED, "2"), (3, "bob@local.test", "NULL")]
    {
        db.sql(&format!(
            "INSERT INTO dbispconfig.mail_user (mailuser_id, email) VALUES ({id}, '{email}'); \
             INSERT INTO dbispconfig.er_mail_user_ratelimit VALUES ({id}, '{}', {daily});",
            if id == 3 { "n" } else { "y" }
        ));
    }
    db.sql("UPDATE dbispconfig.er_global_ratelimit SET global_limit = 10 WHERE server_id = 0");
    // "Now" stands still for the whole run, so the hourly scenario cannot straddle an hour.
    let clock_dir = tempfile::tempdir().expect("tempdir");
    let clock = clock_dir.path().join("now");
    let now = chrono::Local::now();
    std::fs::write(&clock, now.timestamp().to_string()).expect("clock");
    let clock_env = [("EMAIL_RATELIMIT_TEST_CLOCK", clock.to_str().expect("utf-8"))];
    let daemon =
        Daemon::start_at_with(mail.policy_socket(), &config(&db, &redis, &mail, "enforce"), &clock_env);
    daemon.wait_log("limits loaded from database: global=10 default_mailbox=50 mailbox_caps=6", 1);
    let mut env = Env { mail, redis, db, daemon };

    eprintln!("1. authenticated send to 3 recipients");
    let sent = env.send("alice@local.test", &rcpts(REMOTE, 3));
    env.assert_counted(&sent, "alice@local.test");
    for r in rcpts(REMOTE, 3) {
        env.mail.wait_delivered(&r, 1);
    }
    assert_eq!((env.get("alice@local.test"), env.get("global")), (Some(3), Some(3)));

    eprintln!("2. over the mailbox cap with several recipients");
    let sent = env.send("alice@local.test", &[rcpt(REMOTE, 4), rcpt(REMOTE, 5)]);
    env.assert_deferred(&sent, "alice@local.test: Your daily limit of 3 recipients reached");
    env.daemon.wait_log("erl DEFER user=alice@local.test rcpt=2 mailbox=3/3 global=3/10 client=127.0.0.1", 1);
    assert_eq!((env.mail.delivered(&rcpt(REMOTE, 4)), env.mail.delivered(&rcpt(REMOTE, 5))), (0, 0));
    assert_eq!((env.get("alice@local.test"), env.get("global")), (Some(3), Some(3)));
    let v = &env.redis.violations()[0];
    assert_eq!(
        (
            v["type"].as_str(),
            v["user"].as_str(),
            v["limit"].as_u64(),
            v["count"].as_u64(),
            v["rcpt"].as_u64()
        ),
        (Some("user"), Some("alice@local.test"), Some(3), Some(3), Some(2))
    );
    assert_eq!((v["ip"].as_str(), v["enforced"].as_bool()), (Some("127.0.0.1"), Some(true)));

    eprintln!("3. over the global cap");
    let sent = env.send("bob@local.test", &rcpts(REMOTE, 5));
    env.assert_counted(&sent, "bob@local.test");
    let sent = env.send("bob@local.test", &rcpts(REMOTE, 3));
    env.assert_deferred(&sent, "bob@local.test: Global daily limit of 10 recipients reached");
    env.daemon.wait_log("erl DEFER user=bob@local.test rcpt=3", 1);
    assert_eq!((env.get("bob@local.test"), env.get("global")), (Some(5), Some(8)));
    let v = &env.redis.violations()[0];
    assert_eq!(
        (v["type"].as_str(), v["limit"].as_u64(), v["count"].as_u64()),
        (Some("global"), Some(10), Some(8))
    );
    env.mail.wait_queue_empty();
    for r in rcpts(REMOTE, 3) {
        assert_eq!(env.mail.delivered(&r), 2, "{r}: scenario 1 and bob's first message only");
    }
    // Room for the rest of the suite: the panel raises the server-wide cap.
    env.db.sql("UPDATE dbispconfig.er_global_ratelimit SET global_limit = 100 WHERE server_id = 0");
    env.daemon.wait_log("limits refreshed from database: global=100", 1);

    eprintln!("4. unauthenticated mail on the MX-like service");
    let sent = env.mail.send(env.mail.mx, None, "someone@elsewhere.test", &[rcpt(LOCAL, 1)]);
    eprintln!("  someone@elsewhere.test -> 1 recipient: {} (swaks exit {})", sent.reply, sent.code);
    assert_eq!(sent.code, 0, "{}", sent.transcript);
    let qid = sent.queue_id().expect("queue id");
    env.daemon.wait_log(&format!("erl pass reason=unauthenticated client=127.0.0.1 queue_id={qid}"), 1);
    env.mail.wait_delivered(&rcpt(LOCAL, 1), 1);
    assert_eq!(env.get("global"), Some(8), "nothing counted");

    eprintln!("5. log-only mode");
    env.daemon.write_config(&config(&env.db, &env.redis, &env.mail, "log-only"));
    env.daemon.signal(Signal::SIGHUP);
    env.daemon.wait_log("reloaded: mode=log-only", 1);
    // One recipient: another message than the refused one of scenario 2 (2 recipients, the same
    // size: a retry by its fingerprint, which is not recorded again).
    let sent = env.send("alice@local.test", &[rcpt(REMOTE, 4)]);
    assert_eq!(sent.code, 0, "{}", sent.transcript);
    env.daemon.wait_log("erl DEFER (log-only) user=alice@local.test rcpt=1 mailbox=4/3", 1);
    env.mail.wait_delivered(&rcpt(REMOTE, 4), 1);
    assert_eq!(env.get("alice@local.test"), Some(4), "log-only counts");
    assert_eq!(env.redis.violations()[0]["enforced"].as_bool(), Some(false));
    env.daemon.write_config(&config(&env.db, &env.redis, &env.mail, "enforce"));
    env.daemon.signal(Signal::SIGHUP);
    env.daemon.wait_log("reloaded: mode=enforce", 1);

    eprintln!("6. Redis stopped");
    env.redis.stop();
    let sent = env.send("carol@local.test", &[rcpt(REMOTE, 1)]);
    assert_eq!(sent.code, 0, "{}", sent.transcript);
    let qid = sent.queue_id().expect("queue id").to_owned();
    // This message's own line (an earlier start-up warning also names `erl fail-open reason=`).
    env.daemon.wait_log(&format!("queue_id={qid}"), 1);
    assert!(
        env.daemon
            .log()
            .lines()
            .any(|l| l.contains("erl fail-open") && l.contains(&format!("queue_id={qid}"))),
        "{}",
        env.daemon.log()
    );
    env.mail.wait_delivered(&rcpt(REMOTE, 1), 3);
    env.redis.restart();
    let seen = env.daemon.log().matches("erl ok").count();
    let restarted = std::time::Instant::now();
    wait_for("counting with Redis back", Duration::from_secs(10), || {
        let sent = env.send("carol@local.test", &[rcpt(LOCAL, 2)]);
        assert_eq!(sent.code, 0);
        (env.daemon.log().matches("erl ok").count() > seen).then_some(())
    });
    eprintln!("  counting again {:?} after Redis restarted", restarted.elapsed());

    eprintln!("7. the daemon stopped");
    env.daemon.stop();
    let before = env.get("carol@local.test");
    let sent = env.send("carol@local.test", &[rcpt(LOCAL, 3)]);
    eprintln!("  delivered in {:?} without the daemon", sent.elapsed);
    assert_eq!(sent.code, 0, "{}", sent.transcript);
    assert!(sent.elapsed < Duration::from_secs(5), "took {:?}", sent.elapsed);
    env.mail.wait_delivered(&rcpt(LOCAL, 3), 1);
    assert_eq!(env.get("carol@local.test"), before, "nothing counted without the daemon");
    assert!(env.mail.maillog().contains("connect to private/email-ratelimit"));

    eprintln!("8. the daemon restarted under open policy connections");
    env.daemon.start_again();
    let sent = env.send("dave@local.test", &[rcpt(LOCAL, 4)]);
    env.assert_counted(&sent, "dave@local.test");
    env.daemon.stop();
    env.daemon.start_again();
    let sent = env.send("dave@local.test", &[rcpt(LOCAL, 4), rcpt(LOCAL, 5)]);
    env.assert_counted(&sent, "dave@local.test");
    assert_eq!(env.get("dave@local.test"), Some(3));
    env.daemon.wait_log("limits loaded from database", 3);

    eprintln!("9. a cap from MariaDB");
    // 3 recipients under the database's cap of 2 can never fit: rejected (5xx), nothing queued.
    let sent = env.send("erin@local.test", &rcpts(REMOTE, 3));
    assert_eq!(sent.code, 26, "{}", sent.transcript);
    assert_eq!(
        sent.reply,
        "554 5.7.1 <END-OF-MESSAGE>: End-of-data rejected: erin@local.test: This message has 3 recipients, more than your daily limit of 2 allows"
    );
    env.mail.wait_queue_empty();
    let sent = env.send("erin@local.test", &rcpts(REMOTE, 2));
    env.assert_counted(&sent, "erin@local.test");
    assert_eq!(env.get("erin@local.test"), Some(2));
    let sent = env.send("erin@local.test", &[rcpt(REMOTE, 1)]);
    env.assert_deferred(&sent, "erin@local.test: Your daily limit of 2 recipients reached");

    eprintln!("10. mixed-case and IDN logins");
    let sent = env.send("Frank@Local.Test", &rcpts(LOCAL, 2));
    env.assert_counted(&sent, "frank@local.test");
    let sent = env.send("frank@local.test", &rcpts(LOCAL, 2));
    env.assert_counted(&sent, "frank@local.test");
    assert_eq!(env.get("frank@local.test"), Some(4));
    assert!(
        env.mail.maillog().contains("sasl_username=Frank@Local.Test"),
        "Postfix passed the login as typed"
    );
    let sent = env.send("Frank@Local.Test", &[rcpt(LOCAL, 1)]);
    env.assert_deferred(&sent, "frank@local.test: Your daily limit of 4 recipients reached");
    let sent = env.send(IDN_LOGIN, &rcpts(LOCAL, 2));
    env.assert_counted(&sent, IDN_STORED);
    let sent = env.send(IDN_LOGIN, &[rcpt(LOCAL, 1)]);
    env.assert_deferred(&sent, &format!("{IDN_STORED}: Your daily limit of 2 recipients reached"));
    assert_eq!(env.get(IDN_STORED), Some(2));

    eprintln!("11. an hourly cap");
    let sent = env.send("hana@local.test", &rcpts(REMOTE, 2));
    env.assert_counted(&sent, "hana@local.test");
    let sent = env.send("hana@local.test", &[rcpt(REMOTE, 1)]);
    env.assert_deferred(&sent, "hana@local.test: Your hourly limit of 2 recipients reached");
    let hourly = format!("erl:{}/1h:hana@local.test", now.format("%Y-%m-%dT%H00"));
    assert_eq!(env.redis.get(&hourly), Some(2), "nothing counted for the refused message");
    env.mail.wait_queue_empty();

    eprintln!("12. a stolen account: one login from 4 SMTP clients");
    let ivan = "ivan@local.test";
    let from =
        |ip: &str| env.mail.send_via(env.mail.submission, Some(ivan), ivan, &[rcpt(REMOTE, 1)], Some(ip));
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let sent = from(ip);
        env.assert_counted(&sent, ivan);
    }
    let locked = "ivan@local.test: Sending is suspended for this account, contact your administrator";
    let sent = from("127.0.0.4");
    eprintln!("  ivan@local.test from 127.0.0.4: {}", sent.reply);
    env.assert_deferred(&sent, locked);
    env.assert_deferred(&from("127.0.0.1"), locked);
    env.daemon.wait_log(
        "erl lock user=ivan@local.test by=auto reason=\"4 client addresses today\" client=127.0.0.4",
        1,
    );
    assert_eq!(env.get(ivan), Some(3));
    // The admin's mail, submitted through the instance's real sendmail (as the hardened unit
    // runs it) and delivered.
    let mail = wait_for("the lock's mail in the admin's Maildir", Duration::from_secs(30), || {
        env.mail
            .delivered_texts(ADMIN)
            .into_iter()
            .find(|m| m.contains("Subject: ivan@local.test locked: 4 client addresses today"))
    });
    assert!(
        mail.contains("Auto-Submitted: auto-generated")
            && mail.contains("email-ratelimit unlock ivan@local.test")
    );
    let suspect = env.mail.delivered_texts(ADMIN).into_iter().filter(|m| m.contains("is a suspect")).count();
    assert_eq!(suspect, 1, "the suspect's mail too, once");
    let (ok, out) = env.daemon.admin(&["unlock", ivan]);
    assert!(ok && out.contains("notified"), "{out}");
    let sent = from("127.0.0.4");
    env.assert_counted(&sent, ivan);
    env.mail.wait_queue_empty();

    eprintln!("13. a message cap and max_rcpt_per_message");
    let kim = "kim@local.test";
    let sent = env.send(kim, &rcpts(REMOTE, 3));
    env.assert_counted(&sent, kim);
    // 4 recipients in one message: rejected before any cap, nothing counted or queued.
    let sent = env.send(kim, &rcpts(REMOTE, 4));
    assert_eq!(sent.code, 26, "{}", sent.transcript);
    assert_eq!(
        sent.reply,
        "554 5.7.1 <END-OF-MESSAGE>: End-of-data rejected: kim@local.test: At most 3 recipients per message"
    );
    env.daemon.wait_log("erl REJECT user=kim@local.test rcpt=4", 1);
    assert!(env.daemon.log().contains("reason=per_message max_rcpt_per_message=3"), "{}", env.daemon.log());
    let v = &env.redis.violations()[0];
    assert_eq!((v["per_message"].as_bool(), v["limit"].as_u64()), (Some(true), Some(3)), "{v}");
    env.mail.wait_queue_empty();
    assert_eq!(env.get(kim), Some(3));
    // The second message of the hour fits (4 recipients so far, far under the daily 100); the
    // third is one message too many.
    let sent = env.send(kim, &[rcpt(REMOTE, 1)]);
    env.assert_counted(&sent, kim);
    let sent = env.send(kim, &[rcpt(REMOTE, 2)]);
    env.assert_deferred(&sent, "kim@local.test: Your hourly limit of 2 messages reached");
    env.daemon.wait_log("erl DEFER user=kim@local.test rcpt=1 mailbox=4/100", 1);
    assert!(env.daemon.log().contains("cap=mailbox window=1h unit=msg used=2/2"), "{}", env.daemon.log());
    let messages = format!("erl:m:{}/1h:{kim}", now.format("%Y-%m-%dT%H00"));
    assert_eq!((env.redis.get(&messages), env.get(kim)), (Some(2), Some(4)));
    assert_eq!(env.redis.violations()[0]["unit"].as_str(), Some("msg"));
}

/// The per-service variant of `postfix/master.cf.fragment`: only the service with the `-o` line
/// asks the daemon.
#[test]
fn per_service_hook_from_the_master_cf_fragment() {
    let Some(redis) = Redis::start() else { return };
    let fragment = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/postfix/main.cf.fragment"))
        .expect("main.cf fragment");
    let policy_line =
        fragment.lines().find(|l| l.starts_with("email_ratelimit_policy =")).expect("named parameter");
    let Some(mail) = MailServer::start_with(&["gina@local.test"], policy_line) else { return };
    let master = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/postfix/master.cf.fragment"))
        .expect("master.cf fragment");
    let option = master.lines().find_map(|l| l.trim().strip_prefix("-o ")).expect("an -o line");
    mail.postconf(&["-P", &format!("127.0.0.1:{}/inet/{option}", mail.submission)]);
    mail.postfix(&["reload"]);
    let daemon = Daemon::start_at(
        mail.policy_socket(),
        &format!(
            "[listen]\nsocket_group = \"postfix\"\n[[limits.mailbox]]\nemail = \"gina@local.test\"\ndaily = 1\n\
             [redis]\nurl = \"{}\"\n[log]\nlevel = \"info,email_ratelimit=debug\"\n",
            redis.url()
        ),
    );
    let sent = mail.send(mail.submission, Some("gina@local.test"), "gina@local.test", &rcpts(REMOTE, 2));
    eprintln!("  gina@local.test -> 2 recipients on submission: {}", sent.reply);
    assert_eq!(sent.code, 26, "{}", sent.transcript);
    // 2 recipients under a cap of 1 can never fit: rejected (554 5.7.1), not deferred.
    assert!(
        sent.reply.starts_with("554 5.7.1 ")
            && sent.reply.ends_with(
                "gina@local.test: This message has 2 recipients, more than your daily limit of 1 allows"
            ),
        "{}",
        sent.reply
    );
    daemon.wait_log("erl REJECT user=gina@local.test rcpt=2", 1);
    let sent = mail.send(mail.mx, None, "someone@elsewhere.test", &[rcpt(LOCAL, 1)]);
    assert_eq!(sent.code, 0, "{}", sent.transcript);
    mail.wait_delivered(&rcpt(LOCAL, 1), 1);
    assert!(
        !daemon.log().contains("reason=unauthenticated"),
        "the MX service does not ask:\n{}",
        daemon.log()
    );
}
