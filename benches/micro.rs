//! Criterion micro-benchmarks without I/O: the request parser and the decision (policy over the
//! in-memory store).

use std::hint::black_box;
use std::sync::Arc;

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use email_ratelimit::config::{LimitSettings, MailboxEntry, Mode};
use email_ratelimit::limits::LimitsCache;
use email_ratelimit::policy::{Env, Policy, Settings};
use email_ratelimit::protocol::{Action, Decoder};
use email_ratelimit::sender;
use email_ratelimit::store::KeySchema;
use email_ratelimit::store::memory::MemoryStore;

const REQUEST: &[u8] = b"request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nprotocol_name=ESMTP\n\
client_address=203.0.113.7\nclient_name=client.example.net\nclient_port=50123\n\
reverse_client_name=client.example.net\nserver_address=192.0.2.25\nserver_port=587\n\
helo_name=client.example.net\nsender=alice@example.com\nrecipient=\nrecipient_count=3\n\
queue_id=4XABCDEF01\ninstance=1a2b.3c4d.5e6f.0\nsize=18245\netrn_domain=\nstress=\n\
sasl_method=PLAIN\nsasl_username=alice@example.com\nsasl_sender=\nccert_subject=\nccert_issuer=\n\
ccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=TLSv1.3\n\
encryption_cipher=TLS_AES_256_GCM_SHA384\nencryption_keysize=256\npolicy_context=submission\n\n";

fn parser(c: &mut Criterion) {
    c.bench_function("parse END-OF-MESSAGE request", |b| {
        let mut decoder = Decoder::new();
        b.iter(|| {
            let mut buf = BytesMut::from(black_box(REQUEST));
            decoder.decode(&mut buf).expect("valid").expect("complete")
        });
    });
    c.bench_function("encode DEFER_IF_PERMIT reply", |b| {
        let action =
            Action::DeferIfPermit("alice@example.com: Your daily limit of 50 messages reached".into());
        let mut out = BytesMut::with_capacity(128);
        b.iter(|| {
            out.clear();
            black_box(&action).encode(&mut out);
        });
    });
    c.bench_function("normalize sender", |b| b.iter(|| sender::normalize(black_box("Alice@Bücher.Example"))));
}

fn decision(c: &mut Criterion) {
    let caps: Vec<_> = (0..100_000)
        .map(|i| {
            MailboxEntry::daily(
                sender::normalize(&format!("user{i}@example.com")).expect("valid"),
                Some(1_000_000_000),
            )
        })
        .collect();
    let limits = Arc::new(LimitsCache::new(
        LimitSettings { global: 1_000_000_000, mailboxes: caps, ..LimitSettings::default() },
        None,
    ));
    // The memory store has the same decision logic as the Redis script, without the round trip.
    let logging_off = MemoryStore::new(KeySchema::new("erl"), 1000);
    let policy = Policy::new(logging_off, limits, Settings::with_mode(Mode::Enforce), Env::default());
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::from(REQUEST);
    let request = decoder.decode(&mut buf).expect("valid").expect("complete");
    c.bench_function("decide (memory store, 100k caps)", |b| {
        b.iter(|| runtime.block_on(policy.decide(black_box(&request))));
    });
    // The same with learning and known networks on (issue 22): the daemon's own added work per
    // decision (the client's network, the allowance lookup, the table of networks remembered).
    policy.reconfigure(Settings {
        learn: email_ratelimit::config::LearnSettings {
            enabled: true,
            networks: Some(email_ratelimit::network::Networks::default()),
            ..Default::default()
        },
        ..Settings::with_mode(Mode::Enforce)
    });
    c.bench_function("decide (memory store, 100k caps, learning and known networks on)", |b| {
        b.iter(|| runtime.block_on(policy.decide(black_box(&request))));
    });
}

criterion_group!(benches, parser, decision);
criterion_main!(benches);
