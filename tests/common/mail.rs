//! A throwaway mail server for the end-to-end suite: a private Postfix instance
//! (`postfix -c DIR`) in a temporary root, Dovecot as its SASL server, Maildir delivery through
//! virtual(8), and swaks as the SMTP client. See `../shared/POSTFIX-NOTES.md`.
//!
//! Two smtpd services listen on loopback: a submission-like one that requires AUTH and an
//! MX-like one without AUTH for the local domain. Both ask the daemon at end-of-data through
//! the main.cf fragment this repo ships (`postfix/main.cf.fragment`), unchanged: its
//! `unix:private/email-ratelimit` resolves under the instance's queue directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{Supervised, free_port, have, spawn_logged, wait_for};

/// Password of every test account.
pub const PASSWORD: &str = "secret";
/// The local domain (accepted without AUTH on the MX-like service).
pub const LOCAL: &str = "local.test";
/// Stands in for remote domains: relayed only for authenticated senders, delivered locally.
pub const REMOTE: &str = "remote.test";
/// Mailboxes under each domain that the suite can count deliveries for.
pub const MAILBOXES: &[&str] = &["r1", "r2", "r3", "r4", "r5"];

/// The nobody account owns the Maildirs.
const VMAIL_ID: u32 = 65534;

/// Mail for this domain leaves through Postfix's smtp client (so `smtp_header_checks` apply) to
/// another host (`MailServer::start_with_sink`).
pub const OUTSIDE: &str = "out.test";

/// Delivered by Dovecot's LMTP with Pigeonhole Sieve (as on ISPConfig), as the `vmail` account
/// (`MailServer::start_with_sieve`).
pub const SIEVE: &str = "sieve.test";

pub struct MailServer {
    root: TempDir,
    pub submission: u16,
    pub mx: u16,
    /// The other host's SMTP port (0 without one).
    sink: u16,
    dovecot: Supervised,
    running: bool,
}

/// What the SMTP client saw.
#[derive(Debug)]
pub struct Sent {
    /// swaks' exit code: 0 accepted, 24 RCPT refused, 26 end-of-data refused, 28 AUTH failed.
    pub code: i32,
    /// The server's reply to the end of the data (`250 2.0.0 Ok: queued as ...`, `450 ...`).
    pub reply: String,
    pub transcript: String,
    pub elapsed: Duration,
}

impl Sent {
    /// The queue id from a `queued as` reply.
    pub fn queue_id(&self) -> Option<&str> {
        self.reply.split("queued as ").nth(1).map(str::trim)
    }
}

impl MailServer {
    /// Postfix and Dovecot with the given accounts (SASL login names, as typed by clients), hooked
    /// to the daemon with the shipped main.cf fragment.
    pub fn start(logins: &[&str]) -> Option<Self> {
        let hook = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/postfix/main.cf.fragment"))
            .expect("read the shipped main.cf fragment");
        Self::start_with(logins, &hook)
    }

    /// The same without the hook; `extra` is appended to main.cf instead.
    pub fn start_with(logins: &[&str], extra: &str) -> Option<Self> {
        Self::start_full(logins, extra, false)
    }

    /// As [`Self::start_with`], and mail for [`OUTSIDE`] leaves through the smtp client to
    /// another host: a smtpd of this instance on a port of its own, under another name (so the
    /// client sees no loop), that applies no header checks (what arrives is what left) and
    /// delivers through virtual(8) like the rest.
    pub fn start_with_sink(logins: &[&str], extra: &str) -> Option<Self> {
        Self::start_parts(logins, extra, false, true)
    }

    /// As [`Self::start`], and mail for [`SIEVE`] is delivered by Dovecot's LMTP (Postfix's
    /// `lmtp` transport to `private/dovecot-lmtp`) into Maildirs of the `vmail` account, with
    /// Sieve scripts (`sieve_script`), whose mail (vacation, redirect) Dovecot submits through
    /// this instance's sendmail as `vmail`, as ISPConfig's Dovecot does.
    pub fn start_with_sieve(logins: &[&str]) -> Option<Self> {
        let hook = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/postfix/main.cf.fragment"))
            .expect("read the shipped main.cf fragment");
        if nix::unistd::User::from_name("vmail").ok().flatten().is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "no vmail account: run the suite through scripts/test.sh, whose namespace has one"
            );
            eprintln!("SKIPPED: no vmail account (scripts/test.sh provides one in its namespace)");
            return None;
        }
        if !Path::new("/usr/lib/dovecot/lmtp").exists()
            || !Path::new("/usr/lib/dovecot/modules/lib90_sieve_plugin.so").exists()
        {
            assert!(std::env::var_os("CI").is_none(), "dovecot-lmtpd and dovecot-sieve are required in CI");
            eprintln!("SKIPPED: dovecot-lmtpd or dovecot-sieve not installed");
            return None;
        }
        Self::start_full(logins, &hook, true)
    }

    fn start_full(logins: &[&str], extra: &str, sieve: bool) -> Option<Self> {
        Self::start_parts(logins, extra, sieve, false)
    }

    fn start_parts(logins: &[&str], extra: &str, sieve: bool, sink: bool) -> Option<Self> {
        for program in ["postfix", "postconf", "dovecot", "swaks"] {
            if !have(program) && !have(&format!("/usr/sbin/{program}")) {
                return None;
            }
        }
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod root");
        let mut server = Self {
            root,
            submission: free_port(),
            mx: free_port(),
            sink: if sink { free_port() } else { 0 },
            dovecot: Supervised::default(),
            running: false,
        };
        server.write_postfix(extra, sieve);
        server.write_dovecot(logins, sieve);
        // `check` creates the queue subdirectories (private/ owned by postfix) first.
        server.postfix(&["check"]);
        if sieve {
            std::fs::set_permissions(
                server.queue_dir().join("maildrop"),
                std::fs::Permissions::from_mode(0o1733),
            )
            .expect("chmod maildrop");
        }
        server.start_dovecot();
        server.postfix(&["start"]);
        if sieve {
            // ...and pickup's wake-up open to them too (else it looks only once a minute).
            let public = server.queue_dir().join("public");
            std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o711)).expect("chmod public");
            wait_for("pickup's fifo", Duration::from_secs(20), || {
                public.join("pickup").exists().then_some(())
            });
            std::fs::set_permissions(public.join("pickup"), std::fs::Permissions::from_mode(0o622))
                .expect("chmod pickup");
        }
        server.running = true;
        for port in [server.submission, server.mx, server.sink].into_iter().filter(|p| *p != 0) {
            wait_for("smtpd to listen", Duration::from_secs(20), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).ok()
            });
        }
        Some(server)
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn config_dir(&self) -> PathBuf {
        self.root().join("etc")
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.root().join("queue")
    }

    /// Where the daemon must listen so that `unix:private/email-ratelimit` reaches it.
    pub fn policy_socket(&self) -> PathBuf {
        self.queue_dir().join("private/email-ratelimit")
    }

    fn maildir(&self, address: &str) -> PathBuf {
        let (local, domain) = address.split_once('@').expect("an address");
        self.root().join("mail").join(domain).join(local).join("new")
    }

    /// Messages delivered to `address` so far.
    pub fn delivered(&self, address: &str) -> usize {
        std::fs::read_dir(self.maildir(address)).map(|d| d.count()).unwrap_or(0)
    }

    /// The messages delivered to `address` so far.
    pub fn delivered_texts(&self, address: &str) -> Vec<String> {
        std::fs::read_dir(self.maildir(address))
            .map(|d| {
                d.filter_map(Result::ok).filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `address` holds `count` messages.
    pub fn wait_delivered(&self, address: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.delivered(address) < count {
            assert!(
                Instant::now() < deadline,
                "{address} holds {} messages, expected {count}\nmaillog:\n{}",
                self.delivered(address),
                self.maillog()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.root().join("maillog")).unwrap_or_default()
    }

    /// Whether the queue is empty (`postqueue -p`).
    pub fn queue_is_empty(&self) -> bool {
        let out =
            Command::new("postqueue").arg("-c").arg(self.config_dir()).arg("-p").output().expect("postqueue");
        String::from_utf8_lossy(&out.stdout).contains("Mail queue is empty")
    }

    /// Waits for the queue to drain (deliveries are asynchronous).
    pub fn wait_queue_empty(&self) {
        wait_for("an empty mail queue", Duration::from_secs(30), || self.queue_is_empty().then_some(()));
    }

    /// `postconf -c DIR <args>`'s output.
    pub fn postconf(&self, args: &[&str]) -> String {
        let out =
            Command::new("postconf").arg("-c").arg(self.config_dir()).args(args).output().expect("postconf");
        assert!(out.status.success(), "postconf {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `postfix -c DIR <args>`; panics with the output on failure.
    pub fn postfix(&self, args: &[&str]) {
        let out = Command::new("postfix")
            .arg("-c")
            .arg(self.config_dir())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run postfix");
        assert!(
            out.status.success(),
            "postfix {args:?}: {}{}\nmaillog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.maillog()
        );
    }

    /// Website mail: the milter at `private/email-ratelimit-milter` in `non_smtpd_milters`
    /// (with the per-milter settings of DESIGN, after `existing`), and pickup's own cleanup
    /// service with `header_checks` = `tables` (the shipped `postfix/pickup_header_checks`
    /// first), as postfix/README.md and install.sh set them up.
    pub fn hook_milter(&self, existing: &str, tables: &[&Path]) {
        self.postconf(&["-M", "email-ratelimit-cleanup/unix=email-ratelimit-cleanup unix n - n - 0 cleanup"]);
        self.set_pickup_checks(tables);
        self.postconf(&["-P", "pickup/unix/cleanup_service_name=email-ratelimit-cleanup"]);
        let fragment =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/postfix/milter.cf.fragment"))
                .expect("the shipped milter fragment");
        let ours =
            fragment.lines().find(|l| l.starts_with("email_ratelimit_milter = ")).expect("the milter line");
        let milters = if existing.is_empty() {
            "$email_ratelimit_milter".to_owned()
        } else {
            format!("{existing}, $email_ratelimit_milter")
        };
        self.postconf(&[&ours.replacen(" = ", "=", 1), &format!("non_smtpd_milters={milters}")]);
        self.postfix(&["reload"]);
    }

    /// The `header_checks` of pickup's own cleanup service (takes effect at the next reload).
    pub fn set_pickup_checks(&self, tables: &[&Path]) {
        let list: Vec<String> = tables.iter().map(|t| format!("regexp:{}", t.display())).collect();
        self.postconf(&["-P", &format!("email-ratelimit-cleanup/unix/header_checks={}", list.join(","))]);
    }

    /// Submits a message through this instance's real `sendmail`, run as the Unix user `uid`
    /// (a name or a number) with group `gid` (no_new_privs, group postdrop, as a web server's PHP
    /// would); `from` is `-f`. Returns whether sendmail accepted it.
    pub fn sendmail_as(
        &self,
        uid: &str,
        gid: &str,
        from: Option<&str>,
        to: &[String],
        subject: &str,
    ) -> bool {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--no-new-privs",
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--groups=postdrop",
        ])
        .arg("/usr/sbin/sendmail")
        .arg("-i");
        if let Some(from) = from {
            cmd.args(["-f", from]);
        }
        let mut child = cmd
            .arg("--")
            .args(to)
            .env("MAIL_CONFIG", self.config_dir())
            .stdin(Stdio::piped())
            .spawn()
            .expect("run sendmail");
        {
            use std::io::Write;
            let mut input = child.stdin.take().expect("stdin");
            write!(input, "Subject: {subject}\nTo: {}\n\nsent as {uid}\n", to.join(", ")).expect("write");
        }
        child.wait().expect("sendmail").success()
    }

    /// The queue IDs in the hold queue.
    pub fn held(&self) -> Vec<String> {
        let out =
            Command::new("postqueue").arg("-c").arg(self.config_dir()).arg("-j").output().expect("postqueue");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["queue_name"] == "hold")
            .filter_map(|m| m["queue_id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Sends one message with swaks. `login` authenticates (submission port) when set.
    pub fn send(&self, port: u16, login: Option<&str>, from: &str, to: &[String]) -> Sent {
        self.send_via(port, login, from, to, None)
    }

    /// As [`Self::send`], from the local address `local` (`127.0.0.2`...): another SMTP client.
    pub fn send_via(
        &self,
        port: u16,
        login: Option<&str>,
        from: &str,
        to: &[String],
        local: Option<&str>,
    ) -> Sent {
        let mut cmd = Command::new("swaks");
        if let Some(ip) = local {
            cmd.args(["--local-interface", ip]);
        }
        cmd.args(["--server", &format!("127.0.0.1:{port}"), "--from", from, "--to", &to.join(",")])
            .args(["--helo", "client.test", "--timeout", "60", "--header", "Subject: e2e"])
            .args(["--body", "A message from the email-ratelimit end-to-end suite."]);
        if let Some(user) = login {
            cmd.args(["--auth", "PLAIN", "--auth-user", user, "--auth-password", PASSWORD]);
        }
        let started = Instant::now();
        let out = cmd.stdin(Stdio::null()).output().expect("run swaks");
        let elapsed = started.elapsed();
        let mut transcript = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.code() == Some(28) {
            transcript.push_str("\n--- dovecot.log ---\n");
            transcript.push_str(
                &std::fs::read_to_string(self.root().join("dovecot/dovecot.log")).unwrap_or_default(),
            );
        }
        // The reply that follows the end-of-data dot.
        let reply = transcript
            .lines()
            .skip_while(|l| l.trim() != "-> .")
            .find(|l| l.starts_with("<~ ") || l.starts_with("<** ") || l.starts_with("<- "))
            .map(|l| l.split_once(' ').map_or(l, |(_, r)| r).trim().to_owned())
            .unwrap_or_default();
        Sent { code: out.status.code().unwrap_or(-1), reply, transcript, elapsed }
    }

    /// The Sieve script of the mailbox `address` (under [`SIEVE`]), active from now on.
    pub fn sieve_script(&self, address: &str, script: &str) {
        let home = self.sieve_home(address);
        std::fs::create_dir_all(&home).expect("mkdir home");
        std::fs::write(home.join(".dovecot.sieve"), script).expect("sieve script");
        let vmail = nix::unistd::User::from_name("vmail").ok().flatten().expect("vmail");
        for p in [home.parent().expect("domain dir"), &home, &home.join(".dovecot.sieve")] {
            std::os::unix::fs::chown(p, Some(vmail.uid.as_raw()), Some(vmail.gid.as_raw())).expect("chown");
        }
    }

    fn sieve_home(&self, address: &str) -> PathBuf {
        let (local, domain) = address.split_once('@').expect("an address");
        self.root().join("vmail").join(domain).join(local)
    }

    /// The messages Dovecot delivered to `address` (under [`SIEVE`]) so far.
    pub fn sieve_delivered(&self, address: &str) -> usize {
        std::fs::read_dir(self.sieve_home(address).join("Maildir/new")).map(|d| d.count()).unwrap_or(0)
    }

    /// Waits until Dovecot delivered `count` messages to `address` (under [`SIEVE`]).
    pub fn wait_sieve_delivered(&self, address: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.sieve_delivered(address) < count {
            assert!(
                Instant::now() < deadline,
                "Dovecot delivered {} messages to {address}, expected {count}\nmaillog:\n{}\ndovecot.log:\n{}",
                self.sieve_delivered(address),
                self.maillog(),
                std::fs::read_to_string(self.root().join("dovecot/dovecot.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn write_postfix(&self, extra: &str, sieve: bool) {
        let root = self.root();
        let etc = self.config_dir();
        let queue = self.queue_dir();
        let data = root.join("data");
        let mail = root.join("mail");
        for d in [&etc, &queue, &data, &mail] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let postfix = nix::unistd::User::from_name("postfix").ok().flatten().expect("a postfix user");
        std::os::unix::fs::chown(&data, Some(postfix.uid.as_raw()), Some(postfix.gid.as_raw()))
            .expect("chown data");
        std::os::unix::fs::chown(&mail, Some(VMAIL_ID), Some(VMAIL_ID)).expect("chown mail");

        let mut vmailbox = String::new();
        for domain in [LOCAL, REMOTE, OUTSIDE] {
            for m in MAILBOXES {
                vmailbox.push_str(&format!("{m}@{domain} {domain}/{m}/\n"));
            }
        }
        std::fs::write(etc.join("vmailbox"), vmailbox).expect("vmailbox");
        let mut transport = format!("{REMOTE} virtual:\n");
        if self.sink != 0 {
            transport.push_str(&format!("{OUTSIDE} smtp:[127.0.0.1]:{}\n", self.sink));
        }
        if sieve {
            transport.push_str(&format!("{SIEVE} lmtp:unix:private/dovecot-lmtp\n"));
            let vmail = root.join("vmail");
            std::fs::create_dir_all(&vmail).expect("mkdir vmail");
            let owner = nix::unistd::User::from_name("vmail").ok().flatten().expect("vmail");
            std::os::unix::fs::chown(&vmail, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))
                .expect("chown vmail");
        }
        std::fs::write(etc.join("transport"), transport).expect("transport");
        let relay_domains = if sieve { SIEVE } else { "" };

        let r = root.display();
        let main = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {q}\n\
             data_directory = {d}\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = mail.{LOCAL}\n\
             mydomain = {LOCAL}\n\
             myorigin = $myhostname\n\
             mydestination =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             smtputf8_enable = yes\n\
             biff = no\n\
             maillog_file = {r}/maillog\n\
             maillog_file_prefixes = /var, /dev/stdout, {r}\n\
             virtual_mailbox_domains = {LOCAL}\n\
             virtual_mailbox_base = {m}\n\
             virtual_mailbox_maps = texthash:{e}/vmailbox\n\
             virtual_uid_maps = static:{VMAIL_ID}\n\
             virtual_gid_maps = static:{VMAIL_ID}\n\
             transport_maps = texthash:{e}/transport\n\
             relay_domains = {relay_domains}\n\
             alias_maps =\n\
             alias_database =\n\
             smtpd_sasl_type = dovecot\n\
             smtpd_sasl_path = private/auth\n\
             smtpd_sasl_auth_enable = no\n\
             smtpd_tls_security_level = none\n\
             smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination\n\
             smtpd_recipient_restrictions =\n\
             {extra}\n",
            q = queue.display(),
            d = data.display(),
            m = mail.display(),
            e = etc.display(),
        );
        std::fs::write(etc.join("main.cf"), main).expect("main.cf");
        let master = format!(
            "127.0.0.1:{sub} inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n  \
             -o smtpd_sasl_auth_enable=yes\n  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n  \
             -o {{ smtpd_policy_service_policy_context = submission }}\n\
             127.0.0.1:{mx} inet n - n - - smtpd\n  -o syslog_name=postfix/mx\n\
             pickup unix n - n 60 1 pickup\n\
             cleanup unix n - n - 0 cleanup\n\
             qmgr unix n - n 300 1 qmgr\n\
             rewrite unix - - n - - trivial-rewrite\n\
             bounce unix - - n - 0 bounce\n\
             defer unix - - n - 0 bounce\n\
             trace unix - - n - 0 bounce\n\
             verify unix - - n - 1 verify\n\
             flush unix n - n 1000? 0 flush\n\
             proxymap unix - - n - - proxymap\n\
             showq unix n - n - - showq\n\
             error unix - - n - - error\n\
             retry unix - - n - - error\n\
             discard unix - - n - - discard\n\
             virtual unix - n n - - virtual\n\
             smtp unix - - n - - smtp\n\
             relay unix - - n - - smtp\n\
             lmtp unix - - n - - lmtp\n\
             anvil unix - - n - 1 anvil\n\
             scache unix - - n - 1 scache\n\
             postlog unix-dgram n - n - 1 postlogd\n",
            sub = self.submission,
            mx = self.mx,
        );
        let master = if self.sink == 0 {
            master
        } else {
            master
                + &format!(
                    "127.0.0.1:{} inet n - n - - smtpd\n  -o syslog_name=postfix/sink\n  -o myhostname=sink.{REMOTE}\n  \
                     -o smtpd_relay_restrictions=permit_mynetworks,reject\n  -o receive_override_options=no_header_body_checks\n  \
                     -o content_filter=virtual:sink\n",
                    self.sink
                )
        };
        std::fs::write(etc.join("master.cf"), master).expect("master.cf");
    }

    fn write_dovecot(&self, logins: &[&str], sieve: bool) {
        let dir = self.root().join("dovecot");
        std::fs::create_dir_all(dir.join("run")).expect("mkdir dovecot");
        let users: String = logins.iter().map(|u| format!("{u}:{{PLAIN}}{PASSWORD}\n")).collect();
        std::fs::write(dir.join("users"), users).expect("users");
        let d = dir.display();
        let conf = format!(
            "base_dir = {d}/run\n\
             state_dir = {d}/run\n\
             log_path = {d}/dovecot.log\n\
             protocols =\n\
             listen = 127.0.0.1\n\
             ssl = no\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain login\n\
             # Keep the login as typed, so the daemon's own normalization is what is tested.\n\
             auth_username_format =\n\
             # UTF-8 logins (IDN domains) are refused by the default character list.\n\
             auth_username_chars =\n\
             auth_verbose = yes\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid={VMAIL_ID} gid={VMAIL_ID} home=/nonexistent\n}}\n\
             service auth {{\n  unix_listener {auth} {{\n    mode = 0660\n    user = postfix\n    group = postfix\n  }}\n}}\n",
            auth = self.queue_dir().join("private/auth").display(),
        );
        if sieve {
            // Dovecot runs its sendmail_path as the mail user. A private instance's config
            // (MAIL_CONFIG, -C) is taken from a user who is not root only when postdrop runs
            // without its set-gid privilege (Postfix checks the default main.cf otherwise): so
            // here with no_new_privs, and this instance's maildrop (and pickup's fifo) open to
            // every user (as Postfix allows) since postdrop then lacks group postdrop. On a real server Dovecot
            // runs /usr/sbin/sendmail as it is; either way the queue file is vmail's.
            let wrapper = self.root().join("dovecot-sendmail");
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nMAIL_CONFIG={} exec setpriv --no-new-privs /usr/sbin/sendmail \"$@\"\n",
                    self.config_dir().display()
                ),
            )
            .expect("wrapper");
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let conf = if sieve {
            // LMTP with Sieve, as the vmail account; Sieve's mail goes through this instance's
            // sendmail (`-C`), as the mail user.
            conf.replace("protocols =\n", "protocols = lmtp\n")
                .replace("home=/nonexistent", &format!("home={}/vmail/%d/%n", self.root().display()))
                .replace(&format!("uid={VMAIL_ID} gid={VMAIL_ID}"), "uid=vmail gid=vmail allow_all_users=yes")
                + &format!(
                    "mail_location = maildir:~/Maildir\n\
                     first_valid_uid = 1\n\
                     sendmail_path = {root}/dovecot-sendmail\n\
                     postmaster_address = postmaster@{LOCAL}\n\
                     service lmtp {{\n  unix_listener {lmtp} {{\n    mode = 0600\n    user = postfix\n    group = postfix\n  }}\n}}\n\
                     protocol lmtp {{\n  mail_plugins = sieve\n}}\n\
                     plugin {{\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n}}\n",
                    root = self.root().display(),
                    lmtp = self.queue_dir().join("private/dovecot-lmtp").display(),
                )
        } else {
            conf
        };
        std::fs::write(dir.join("dovecot.conf"), conf).expect("dovecot.conf");
    }

    fn start_dovecot(&mut self) {
        let dir = self.root().join("dovecot");
        self.dovecot.set(spawn_logged(
            Command::new("dovecot").arg("-F").arg("-c").arg(dir.join("dovecot.conf")),
            &dir.join("stdout.log"),
            "dovecot",
        ));
        let auth = self.queue_dir().join("private/auth");
        wait_for("dovecot's auth socket", Duration::from_secs(20), || {
            if let Some(status) = self.dovecot.try_wait() {
                panic!(
                    "dovecot exited ({status}): {}{}",
                    std::fs::read_to_string(dir.join("stdout.log")).unwrap_or_default(),
                    std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
                );
            }
            auth.exists().then_some(())
        });
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        if self.running {
            let master = std::fs::read_to_string(self.queue_dir().join("pid/master.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            let stopped = Command::new("postfix")
                .arg("-c")
                .arg(self.config_dir())
                .arg("stop")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success());
            if let Some(pid) = master {
                if !stopped {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                // The master is not our child: wait until it is gone (or a zombie for PID 1 to reap).
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline && alive(pid) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        self.dovecot.stop();
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}
