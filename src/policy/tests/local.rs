//! Issue 24: website mail (a request naming a local user) counts on its own counters under
//! `[limits.local]` only: never on, and never refused by, the SMTP caps.

use super::*;
use crate::caps::Scope;

fn local(name: &str, n: u32) -> Request {
    Request {
        protocol_state: State::EndOfMessage,
        local_user: name.into(),
        recipient_count: Some(u64::from(n)),
        client_address: "127.0.0.1".into(),
        queue_id: "Q1".into(),
        ..Request::default()
    }
}

fn local_policy(mode: Mode) -> Policy<MemoryStore> {
    let config = crate::config::from_toml(
        "[limits]\nglobal = 2\n[limits.local]\ndaily = 5\n[[limits.local.user]]\nname = \"web2\"\ndaily = 1\n",
    )
    .expect("valid");
    let limits = Arc::new(LimitsCache::new(config.limits, None));
    let env = Env { server: "mx1".into(), ..Env::default() };
    Policy::new(MemoryStore::new(KeySchema::new("erl"), 100), limits, Settings::with_mode(mode), env)
}

fn day_count(p: &Policy<MemoryStore>, who: &Mailbox) -> u64 {
    let day = Zone::Local.moment(Utc::now()).day();
    p.store().count(&KeySchema::new("erl").sender(day, who).to_string())
}

#[test]
fn local_mail_meets_its_own_caps_not_the_servers() {
    let p = local_policy(Mode::Enforce);
    let web1 = Mailbox::local("web1", "mx1");
    block_on(async {
        // The SMTP server cap (2) is full: website mail does not care.
        assert_eq!(p.decide(&eom("alice@example.com", 2)).await.reply.action, Action::Dunno);
        assert!(matches!(
            p.decide(&eom("alice@example.com", 1)).await.reply.action,
            Action::DeferIfPermit(_)
        ));
        assert_eq!(p.decide(&local("web1", 3)).await.reply.action, Action::Dunno);
        assert_eq!(p.decide(&local("web1", 2)).await.reply.action, Action::Dunno);
        assert_eq!(day_count(&p, &web1), 5);
        let over = p.decide(&local("web1", 1)).await.reply.action;
        assert_eq!(
            over,
            Action::DeferIfPermit("local:web1@mx1: Your daily limit of 5 recipients reached".into())
        );
        assert_eq!(day_count(&p, &web1), 5, "a held message counts nothing");
        // Its own entry; root is exempt by default (counted, never held).
        assert_eq!(p.decide(&local("web2", 1)).await.reply.action, Action::Dunno);
        assert!(matches!(p.decide(&local("web2", 1)).await.reply.action, Action::DeferIfPermit(_)));
        for _ in 0..10 {
            assert_eq!(p.decide(&local("root", 1)).await.reply.action, Action::Dunno);
        }
        assert_eq!(day_count(&p, &Mailbox::local("root", "mx1")), 10);
        // Nothing of it reached the server's counter.
        let day = Zone::Local.moment(Utc::now()).day();
        assert_eq!(p.store().count(&KeySchema::new("erl").global(day).to_string()), 2);
        let v = p.store().violations();
        assert!(v.iter().any(|v| v.kind == Scope::Local.kind() && v.user == "local:web1@mx1"), "{v:?}");
    });
}

#[test]
fn log_only_counts_and_never_holds() {
    let p = local_policy(Mode::LogOnly);
    block_on(async {
        for _ in 0..3 {
            assert_eq!(p.decide(&local("web2", 1)).await.reply.action, Action::Dunno);
        }
        assert_eq!(day_count(&p, &Mailbox::local("web2", "mx1")), 3);
    });
}
