use std::time::Duration;

use super::*;

fn err(text: &str) -> String {
    match from_toml(text) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let c = from_toml("").expect("defaults are valid");
    assert_eq!(c.mode, Mode::Enforce);
    assert_eq!(c.store, StoreKind::Redis);
    assert_eq!(c.listen.socket, Path::new("/var/spool/postfix/private/email-ratelimit"));
    assert_eq!(c.listen.socket_mode, 0o660);
    assert!(c.listen.max_connections >= 1000);
    assert_eq!(c.listen.idle_timeout, Duration::from_secs(600));
    assert_eq!((c.limits.global, c.limits.default_mailbox), (999, 50));
    assert_eq!(c.redis.url, "redis://127.0.0.1:6379/0");
    assert_eq!(c.redis.key_prefix, "erl");
    assert_eq!(c.redis.timeout, Duration::from_millis(250));
    assert_eq!(c.redis.violations_max, 1000);
    assert_eq!(c.limits.max_recipients, 10_000);
    assert_eq!(c.timezone, crate::clock::Zone::Local);
    assert_eq!(c.database, None);
    assert_eq!(c.log.level, "info");
}

#[test]
fn parses_the_documented_example() {
    let c = from_toml(
        r#"
        mode = "log-only"
        store = "memory"
        [listen]
        socket = "/tmp/erl.sock"
        socket_mode = "0600"
        tcp = "127.0.0.1:10040"
        [limits]
        global = 5000
        default_mailbox = 80
        [[limits.mailbox]]
        email = "Alice@Example.com"
        daily = 100
        [[limits.mailbox]]
        email = "bob@bücher.example"
        [redis]
        url = "redis://:secret@127.0.0.1:6380/2"
        key_prefix = "x"
        timeout_ms = 100
        [database]
        url = "mysql://erl:pw@localhost/dbispconfig"
        refresh_secs = 30
        server_id = 2
        [log]
        level = "debug"
        "#,
    )
    .expect("valid");
    assert_eq!(c.mode, Mode::LogOnly);
    assert_eq!(c.store, StoreKind::Memory);
    assert_eq!(c.listen.socket_mode, 0o600);
    assert_eq!(c.listen.tcp.map(|a| a.port()), Some(10040));
    let emails: Vec<_> = c.limits.mailboxes.iter().map(|m| (m.mailbox.as_str(), m.caps.clone())).collect();
    let day = |n| Some(vec![crate::window::Rate::rcpt(n, crate::window::Window::Day)]);
    assert_eq!(emails, vec![("alice@example.com", day(100)), ("bob@xn--bcher-kva.example", None)]);
    let db = c.database.as_ref().expect("database set");
    assert_eq!((db.refresh, db.server_id), (Duration::from_secs(30), 2));
    assert_eq!(db.global_query, DEFAULT_GLOBAL_QUERY);
}

#[test]
fn unknown_keys_are_errors() {
    assert!(err("globl = 5").contains("globl"));
    assert!(err("[limits]\nglobl = 5").contains("globl"));
    assert!(err("[[limits.mailbox]]\nemail = \"a@b.c\"\ndayly = 5").contains("dayly"));
    assert!(err("[redis]\nurll = \"x\"").contains("urll"));
}

#[test]
fn invalid_values_name_their_key() {
    assert!(err("mode = \"enforcing\"").contains("enforcing"));
    assert!(err("[limits]\nglobal = 0").starts_with("limits.global"));
    assert!(err("[limits]\nglobal = -3").contains("global"));
    assert!(err("[listen]\nsocket = \"relative.sock\"").starts_with("listen.socket"));
    assert!(err("[listen]\nsocket_mode = \"0999\"").starts_with("listen.socket_mode"));
    assert!(err("[listen]\ntcp = \"0.0.0.0:10040\"").contains("listen.tcp_allow"));
    assert!(err("[listen]\nsocket_group = \"no-such-group-erl\"").starts_with("listen.socket_group"));
    assert!(err("[[limits.mailbox]]\nemail = \"a b@c.d\"").starts_with("limits.mailbox.email"));
    assert!(err("[[limits.mailbox]]\nemail = \"a@c.d\"\ndaily = 0").starts_with("limits.mailbox.daily"));
    assert!(
        err("[[limits.mailbox]]\nemail = \"a@c.d\"\n[[limits.mailbox]]\nemail = \"A@C.D\"").contains("twice")
    );
    assert!(err("[redis]\nurl = \"http://x\"").starts_with("redis.url"));
    assert!(err("[redis]\ntimeout_ms = 0").starts_with("redis.timeout_ms"));
    assert!(err("[database]\nurl = \"postgres://x/y\"").starts_with("database.url"));
    assert!(err("[database]\nrefresh_secs = 5").starts_with("database.url"));
    assert!(err("[log]\nlevel = \"loud=[\"").starts_with("log.level"));
    assert!(err("timezone = \"Mars/Base\"").starts_with("timezone"));
    assert!(err("[limits]\nmax_recipients = 0").starts_with("limits.max_recipients"));
    assert!(
        err("[database]\nurl = \"mysql://a@b/c\"\ncache_file = \"x.json\"")
            .starts_with("database.cache_file")
    );
}

#[test]
fn values_have_sane_upper_bounds() {
    // Postfix waits 5 s in all: a Redis wait of 8 s made every message wait past it.
    assert!(err("[redis]\ntimeout_ms = 2001").starts_with("redis.timeout_ms"));
    assert!(from_toml("[redis]\ntimeout_ms = 2000").is_ok());
    assert!(err("[redis]\nviolations_max = 100001").starts_with("redis.violations_max"));
    assert!(err("[redis]\nviolations_max = 0").starts_with("redis.violations_max"));
    assert!(err("[limits]\nglobal = 1000000001").starts_with("limits.global"));
    assert!(err("[limits]\ndefault_mailbox = 9223372036854775807").starts_with("limits.default_mailbox"));
    assert!(
        err("[[limits.mailbox]]\nemail = \"a@c.d\"\ndaily = 1000000001").starts_with("limits.mailbox.daily")
    );
    assert!(err("[limits]\nmax_recipients = 1000001").starts_with("limits.max_recipients"));
    assert!(from_toml("[limits]\nglobal = 1000000000\nmax_recipients = 1000000").is_ok());
}

#[test]
fn a_socket_other_users_can_reach_is_refused() {
    for mode in ["0666", "0662", "0664", "0661", "0777", "0606"] {
        let e = err(&format!("[listen]\nsocket_mode = \"{mode}\""));
        assert!(e.starts_with("listen.socket_mode") && e.contains("every local user"), "{mode}: {e}");
    }
    for mode in ["0660", "0600", "0640", "0620"] {
        assert!(from_toml(&format!("[listen]\nsocket_mode = \"{mode}\"")).is_ok(), "{mode}");
    }
}

#[test]
fn a_zone_is_an_iana_name() {
    let c = from_toml("timezone = \"Pacific/Kiritimati\"").expect("valid");
    assert_eq!(c.timezone.name(), "Pacific/Kiritimati");
    assert!(c.render().contains("timezone = \"Pacific/Kiritimati\""));
}

#[test]
fn every_password_form_is_masked() {
    for url in [
        "redis://:hunter2@127.0.0.1:6379/0",
        "redis://erl:hunter2@127.0.0.1:6379/0",
        "rediss://erl:hunter2@redis.example:6380/0",
        "redis+unix:///run/redis/redis.sock?db=2&pass=hunter2",
        "redis+unix:///run/redis/redis.sock?user=erl&pass=hunter2&db=2",
        "unix:///run/redis/redis.sock?pass=hunter2",
        "mysql://erl:hunter2@localhost/dbispconfig",
        "mysql://erl@localhost/dbispconfig?password=hunter2",
        "mysql://erl@localhost/dbispconfig?socket=/run/mysqld/mysqld.sock&PASSWORD=hunter2",
        "mysql://erl:hunter%32@localhost/dbispconfig",
    ] {
        let shown = render::redact(url);
        assert!(!shown.contains("hunter"), "{url} -> {shown}");
        assert!(shown.contains("********"), "{url} -> {shown}");
    }
    assert_eq!(
        render::redact("redis+unix:///run/redis.sock?db=2&pass=x"),
        "redis+unix:///run/redis.sock?db=2&pass=********"
    );
    // Issue 20 item 5: a webhook's secret sits in its path or in any query key: only
    // scheme://host[:port]/… is ever shown.
    for (url, shown) in [
        ("https://hooks.slack.com/services/T0001/B0002/XXXXsecretXXXX", "https://hooks.slack.com/…"),
        ("https://discord.com/api/webhooks/123/secretTOKEN", "https://discord.com/…"),
        ("https://api.telegram.org/bot123:SECRET/sendMessage?chat_id=1", "https://api.telegram.org/…"),
        ("https://x.azurewebsites.net/api/hook?code=SECRET", "https://x.azurewebsites.net/…"),
        ("http://127.0.0.1:8080/hook?key=SECRET&apikey=SECRET&sig=SECRET", "http://127.0.0.1:8080/…"),
        ("https://user:SECRET@hooks.example.com/", "https://hooks.example.com/"),
        ("https://hooks.example.com", "https://hooks.example.com/"),
    ] {
        assert_eq!(render::redact(url), shown, "{url}");
    }
    // Other URLs: also the query keys that carry a key or a signature.
    for url in
        ["redis://h/0?key=SECRET", "mysql://u@h/db?apikey=SECRET", "redis://h/0?sig=SECRET&code=SECRET"]
    {
        assert!(!render::redact(url).contains("SECRET"), "{url} -> {}", render::redact(url));
    }
    let c = from_toml(
        "[redis]\nurl = \"redis+unix:///run/r.sock?pass=hunter2\"\n[database]\nurl = \"mysql://u@h/db?password=hunter2\"",
    )
    .expect("valid");
    assert!(!c.render().contains("hunter2"), "{}", c.render());
}

#[test]
fn a_toml_error_is_one_line_with_its_place() {
    // Issue 20 item 13.
    let e = err("[limits]\nglobl = 5\n");
    assert!(!e.contains('\n'), "{e}");
    assert!(e.starts_with("config:2:1: unknown field `globl`, expected one of"), "{e}");
    let e = err("[limits]\nglobal = \"many\"\n");
    assert!(!e.contains('\n') && e.starts_with("config:2:10: "), "{e}");
}

#[test]
fn log_levels_are_words_not_silent_filters() {
    // Issue 20 item 12: the syslog words are accepted and mapped; an unknown word is refused
    // (it used to pass and turn every line off, errors included).
    for (given, level) in [
        ("warning", "warn"),
        ("notice", "info"),
        ("crit", "error"),
        ("alert", "error"),
        ("emerg", "error"),
        ("err", "error"),
        ("WARN", "warn"),
        ("debug", "debug"),
        ("info,email_ratelimit=debug", "info,email_ratelimit=debug"),
        ("notice, email_ratelimit=warning", "info,email_ratelimit=warn"),
    ] {
        let c = from_toml(&format!("[log]\nlevel = \"{given}\"")).expect(given);
        assert_eq!(c.log.level, level, "{given}");
    }
    for bad in ["verbose", "warnings", "", "info,loud", "email_ratelimit=chatty"] {
        let e = err(&format!("[log]\nlevel = \"{bad}\""));
        assert!(e.starts_with("log.level") && e.contains("error, warn, info, debug, trace"), "{bad}: {e}");
    }
}

#[test]
fn remote_tcp_needs_explicit_consent() {
    let c = from_toml("[listen]\ntcp = \"0.0.0.0:10040\"\ntcp_allow_remote = true").expect("valid");
    assert!(c.listen.tcp.is_some());
}

#[test]
fn render_masks_passwords_and_round_trips() {
    let c = from_toml(
        "store = \"memory\"\n[redis]\nurl = \"redis://:hunter2@h:1/0\"\n[database]\nurl = \"mysql://u:hunter2@h/db\"\n\
         [[limits.mailbox]]\nemail = \"a@b.example\"\ndaily = 7\n[[limits.mailbox]]\nemail = \"c@b.example\"",
    )
    .expect("valid");
    let text = c.render();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("********"));
    let back = from_toml(&text.replace("********", "hunter2")).expect("render output parses");
    assert_eq!(back, c);
}

#[test]
fn a_missing_explicit_file_is_an_error() {
    let e = load(Some(Path::new("/nonexistent/erl.toml"))).expect_err("missing");
    assert!(matches!(e, ConfigError::Missing(_)));
}

/// `config/example.toml` is the built-in defaults plus the README's recommended settings (issue
/// 22 item 5), nothing else.
#[test]
fn the_shipped_example_is_the_defaults_plus_the_recommended_config() {
    let example = from_toml(include_str!("../../config/example.toml")).expect("example is valid");
    let readme = include_str!("../../README.md");
    let block = readme
        .split("<!-- recommended config: begin -->\n")
        .nth(1)
        .and_then(|rest| rest.split("<!-- recommended config: end -->").next())
        .expect("README's recommended config");
    let recommended: String =
        block.lines().map(|l| l.strip_prefix("    ").unwrap_or(l).to_owned() + "\n").collect();
    let recommended = from_toml(&recommended).expect("the README's recommended config is valid");
    assert_eq!(example, recommended);
    assert_ne!(recommended, from_toml("").expect("defaults"), "the embedded defaults stay minimal");
    assert!(!from_toml("").expect("defaults").learn.enabled);
}

#[test]
fn caps_over_windows_and_domains_parse_and_round_trip() {
    let c = from_toml(
        r#"
        [limits]
        global_rates = ["300/1h", "100/15m"]
        default_mailbox_rates = ["10/1h"]
        [[limits.mailbox]]
        email = "alice@example.com"
        daily = 100
        rates = ["20/1h"]
        [[limits.mailbox]]
        email = "vip@example.com"
        exempt = true
        [[limits.mailbox]]
        email = "none@example.com"
        rates = []
        [[limits.domain]]
        domain = "Bücher.Example"
        daily = 2000
        rates = ["500/1h"]
        mailbox_daily = 100
        mailbox_rates = ["30/1h"]
        [[limits.domain]]
        domain = "example.org"
        rates = ["50/1h"]
        "#,
    )
    .expect("valid");
    assert_eq!(c.limits.global_rates.len(), 2);
    assert_eq!(c.limits.domains[0].domain, "xn--bcher-kva.example");
    assert_eq!(c.limits.domains[0].caps.len(), 2);
    assert_eq!(c.limits.mailboxes[2].caps, Some(vec![]), "an empty list of its own: uncapped");
    assert!(c.limits.mailboxes[1].exempt);
    let text = c.render();
    assert_eq!(from_toml(&text).expect("render output parses"), c, "{text}");
}

#[test]
fn bad_windows_and_doubled_caps_name_their_key() {
    for (toml, key) in [
        ("[limits]\nglobal_rates = [\"5/7m\"]", "limits.global_rates"),
        ("[limits]\nglobal_rates = [\"5/25h\"]", "limits.global_rates"),
        ("[limits]\nglobal_rates = [\"0/1h\"]", "limits.global_rates"),
        ("[limits]\nglobal_rates = [\"abc\"]", "limits.global_rates"),
        ("[limits]\nglobal_rates = [\"5000/1d\"]", "limits.global_rates"),
        ("[limits]\nglobal_rates = [\"5/1h\", \"6/60m\"]", "limits.global_rates"),
        ("[limits]\ndefault_mailbox_rates = [\"5/1x\"]", "limits.default_mailbox_rates"),
        ("[[limits.mailbox]]\nemail = \"a@b.c\"\nrates = [\"5/7m\"]", "limits.mailbox.rates"),
        ("[[limits.mailbox]]\nemail = \"a@b.c\"\ndaily = 5\nrates = [\"50/1d\"]", "limits.mailbox.rates"),
        ("[[limits.domain]]\ndomain = \"b.c\"\nrates = [\"5/13m\"]", "limits.domain.rates"),
        ("[[limits.domain]]\ndomain = \"b.c\"\nmailbox_rates = [\"x/1h\"]", "limits.domain.mailbox_rates"),
        ("[[limits.domain]]\ndomain = \"a@b.c\"", "limits.domain.domain"),
        ("[[limits.domain]]\ndomain = \"b..c\"", "limits.domain.domain"),
        ("[[limits.domain]]\ndomain = \"b.c\"\n[[limits.domain]]\ndomain = \"B.C\"", "limits.domain.domain"),
        ("[[limits.domain]]\ndomain = \"b.c\"\nhourly = 5", "hourly"),
    ] {
        let e = err(toml);
        assert!(e.contains(key), "{toml:?}: {e}");
    }
}

#[test]
fn protect_and_notify_settings_are_checked() {
    let c = from_toml("").expect("defaults");
    assert_eq!(c.protect, ProtectSettings { max_client_ips: 30, lock: false, lock_after_refusals: 0 });
    assert!(!c.notify.enabled(), "nothing is sent unless set");
    assert_eq!(c.notify.sendmail, ["/usr/sbin/sendmail"]);
    assert!(!c.notify.dropped_t);
    // Issue 20 item 6: -t is dropped (recipients are arguments), with a warning at start.
    for (given, kept) in [
        ("/usr/sbin/sendmail -t -i", vec!["/usr/sbin/sendmail", "-i"]),
        ("/usr/sbin/sendmail -ti", vec!["/usr/sbin/sendmail", "-i"]),
        ("/usr/sbin/sendmail -it -oi", vec!["/usr/sbin/sendmail", "-i", "-oi"]),
        ("/usr/bin/msmtp -t", vec!["/usr/bin/msmtp"]),
    ] {
        let c = from_toml(&format!("[notify]\nsendmail = \"{given}\"")).expect(given);
        assert_eq!(
            (c.notify.sendmail.clone(), c.notify.dropped_t),
            (kept.iter().map(|s| (*s).to_owned()).collect(), true),
            "{given}"
        );
    }
    let c = from_toml("[notify]\nsendmail = \"/usr/sbin/sendmail -oi -C /etc/postfix-out\"").expect("valid");
    assert!(!c.notify.dropped_t && c.notify.sendmail.len() == 4);
    assert!(c.notify.from.starts_with("MAILER-DAEMON@"), "{}", c.notify.from);
    assert!(!c.server_name.is_empty() && !c.server_name.contains(' '));
    let on = from_toml(
        "server_name = \"mx1\"\n[protect]\nmax_client_ips = 0\nlock = true\nlock_after_refusals = 50\n\
         [notify]\nadmin = [\"Postmaster@example.com\"]\nwebhook = \"https://hooks.example.com/erl?token=s3cret\"\n",
    )
    .expect("valid");
    assert!(on.notify.enabled());
    assert_eq!((on.server_name.as_str(), on.protect.lock_after_refusals), ("mx1", 50));
    let text = on.render();
    assert!(!text.contains("s3cret") && text.contains("[notify]") && text.contains("lock = true"), "{text}");
    for (bad, key) in [
        ("[protect]\nmax_client_ips = 100001", "protect.max_client_ips"),
        ("[protect]\nlock_after_refusals = 5000000000", "protect.lock_after_refusals"),
        ("[notify]\nadmin = [\"not an address\"]", "notify.admin"),
        ("[notify]\nadmin = [\"a@b.example, c@d.example\"]", "notify.admin"),
        ("[notify]\nadmin = [\"a@b.example\\nBcc: x@y.example\"]", "notify.admin"),
        ("[notify]\nwebhook = \"ftp://x.example/\"", "notify.webhook"),
        ("[notify]\nsendmail = \"sendmail -t\"", "notify.sendmail"),
        ("[notify]\nfrom = \"nobody\"", "notify.from"),
        ("server_name = \"mx 1\"", "server_name"),
    ] {
        let e = err(bad);
        assert!(e.starts_with(key), "{bad:?}: {e}");
    }
}

#[test]
fn the_erl_columns_layout_needs_a_server_id() {
    let ok = from_toml("[database]\nurl = \"mysql://a@b/c\"\nlayout = \"erl-columns\"\nserver_id = 3\nmaster_url = \"mysql://m@master/dbispconfig\"")
        .expect("valid");
    let db = ok.database.expect("database");
    assert_eq!(
        (db.layout, db.server_id, db.master_url.as_deref()),
        (Layout::ErlColumns, 3, Some("mysql://m@master/dbispconfig"))
    );
    assert_eq!(
        from_toml("[database]\nurl = \"mysql://a@b/c\"").expect("valid").database.map(|d| d.layout),
        Some(Layout::ErTables)
    );
    for (bad, key) in [
        ("[database]\nurl = \"mysql://a@b/c\"\nlayout = \"erl-columns\"", "database.server_id"),
        ("[database]\nurl = \"mysql://a@b/c\"\nlayout = \"columns\"", "database.layout"),
        ("[database]\nurl = \"mysql://a@b/c\"\nmaster_url = \"mysql://m@master/x\"", "database.master_url"),
        (
            "[database]\nurl = \"mysql://a@b/c\"\nlayout = \"erl-columns\"\nserver_id = 1\nmaster_url = \"pg://x/y\"",
            "database.master_url",
        ),
    ] {
        let e = err(bad);
        assert!(e.starts_with(key), "{bad:?}: {e}");
    }
}

#[test]
fn sentinels_are_host_port_pairs_and_their_password_is_masked() {
    let c = from_toml(
        "[redis]\nurl = \"redis://:masterpw@127.0.0.1/2\"\nsentinels = [\"10.0.0.1:26379\", \"[::1]:26380\", \"s3.example\"]\n\
         sentinel_master = \"erl\"\nsentinel_password = \"sentinelpw\"",
    )
    .expect("valid");
    assert_eq!(
        c.redis.sentinels,
        vec![("10.0.0.1".to_owned(), 26379), ("::1".to_owned(), 26380), ("s3.example".to_owned(), 26379)]
    );
    assert_eq!(
        (c.redis.sentinel_master.as_str(), c.redis.sentinel_password.as_deref()),
        ("erl", Some("sentinelpw"))
    );
    let text = c.render();
    assert!(!text.contains("sentinelpw") && !text.contains("masterpw"), "{text}");
    assert!(from_toml("").expect("defaults").redis.sentinels.is_empty());
    for (bad, key) in [
        ("[redis]\nsentinels = [\"10.0.0.1:0\"]", "redis.sentinels"),
        ("[redis]\nsentinels = [\"10.0.0.1:port\"]", "redis.sentinels"),
        ("[redis]\nsentinels = [\"10.0.0.1:26379\"]\nsentinel_master = \"\"", "redis.sentinel_master"),
    ] {
        let e = err(bad);
        assert!(e.starts_with(key), "{bad:?}: {e}");
    }
}

#[test]
fn metrics_listen_on_loopback_or_a_socket_unless_allowed() {
    assert_eq!(from_toml("").expect("defaults").metrics, None, "off unless set");
    let tcp = from_toml("[metrics]\nlisten = \"127.0.0.1:9425\"").expect("valid");
    assert_eq!(tcp.metrics, Some(MetricsListen::Tcp("127.0.0.1:9425".parse().expect("addr"))));
    let unix = from_toml("[metrics]\nlisten = \"/run/email-ratelimit/metrics.sock\"").expect("valid");
    assert_eq!(unix.metrics, Some(MetricsListen::Unix("/run/email-ratelimit/metrics.sock".into())));
    assert!(err("[metrics]\nlisten = \"0.0.0.0:9425\"").starts_with("metrics.listen"));
    assert!(err("[metrics]\nlisten = \"localhost\"").starts_with("metrics.listen"));
    let remote = from_toml("[metrics]\nlisten = \"10.0.0.5:9425\"\nallow_remote = true").expect("allowed");
    assert_eq!(from_toml(&remote.render()).expect("round trip").metrics, remote.metrics);
}

/// Issue 22: `[learn]`, message caps and `max_rcpt_per_message` are validated, each error
/// naming its key.
#[test]
fn learning_message_caps_and_per_message_are_validated() {
    let c = from_toml("[learn]\nenabled = true\nfactor = 2.5\n[limits]\nmax_rcpt_per_message = 100\n")
        .expect("valid");
    assert!(c.learn.enabled && (c.learn.factor - 2.5).abs() < f64::EPSILON);
    assert_eq!((c.learn.days, c.learn.min_days, c.learn.ceiling), (28, 7, 2000));
    assert_eq!(c.learn.networks, None, "known_networks is off by default");
    assert_eq!(c.limits.max_rcpt_per_message, 100);
    let c = from_toml("[learn]\nknown_networks = true\nipv4_prefix = 16\n").expect("valid");
    assert_eq!(c.learn.networks, Some(crate::network::Networks { v4: 16, v6: 48 }));
    for (text, key) in [
        ("[learn]\ndays = 0\n", "learn.days"),
        ("[learn]\nmin_days = 29\n", "learn.min_days"),
        ("[learn]\nfactor = 0.0\n", "learn.factor"),
        ("[learn]\nmax_growth = 0.5\n", "learn.max_growth"),
        ("[learn]\nceiling = 0\n", "learn.ceiling"),
        ("[learn]\nipv4_prefix = 33\n", "learn.ipv4_prefix"),
        ("[learn]\nipv4_prefix = 0\n", "learn.ipv4_prefix"),
        ("[learn]\nipv6_prefix = 129\n", "learn.ipv6_prefix"),
        ("[learn]\nenabled = true\nceiling = 40\n", "learn.ceiling"),
        (
            "[learn]\nenabled = true\nceiling = 100\n[[limits.domain]]\ndomain = \"x.org\"\nmailbox_daily = 200\n",
            "learn.ceiling",
        ),
        ("[limits]\nmax_rcpt_per_message = 100000000\n", "limits.max_rcpt_per_message"),
        ("[[limits.mailbox]]\nemail = \"a@x.org\"\nmax_rcpt_per_message = -1\n", "max_rcpt_per_message"),
        ("[limits]\ndefault_mailbox_rates = [\"40msg/1h\", \"30msg/1h\"]\n", "limits.default_mailbox_rates"),
        ("[limits]\nglobal_rates = [\"0msg/1h\"]\n", "limits.global_rates"),
    ] {
        let e = err(text);
        assert!(e.contains(key), "{text:?}: {e}");
    }
    // A recipient cap and a message cap of the same window, and a daily cap with a daily
    // message cap, stand side by side.
    from_toml("[limits]\ndefault_mailbox_rates = [\"20/1h\", \"40msg/1h\", \"300msg/1d\"]\n").expect("valid");
}
