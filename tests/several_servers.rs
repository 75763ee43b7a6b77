//! Several mail servers, one Redis: two daemons (two `server_name`s) on one real
//! `redis-server` enforce one exact shared cap under 2 x 64 connections, and a raise written
//! by one server's admin command applies on both.
//!
//! The cap (400) is above what either server is sent alone (320): exactness then proves that
//! both counted into the one cap, whatever order the scheduler runs the connections in.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{Daemon, Redis, defer_user, eom, key, redis_daemon};

const HOT: &str = "hot@example.com";

#[test]
fn two_servers_share_one_exact_cap() {
    let Some(redis) = Redis::start() else { return };
    let cap = format!("[[limits.mailbox]]\nemail = \"{HOT}\"\ndaily = 400\n");
    let servers = [
        redis_daemon(&redis, &format!("server_name = \"mx1\"\n{cap}")),
        redis_daemon(&redis, &format!("server_name = \"mx2\"\n{cap}")),
    ];
    let accepted = [AtomicU64::new(0), AtomicU64::new(0)];
    std::thread::scope(|s| {
        for t in 0..128 {
            let (d, accepted): (&Daemon, &AtomicU64) = (&servers[t % 2], &accepted[t % 2]);
            let mut c = d.connect();
            s.spawn(move || {
                for _ in 0..5 {
                    if c.ask(&eom(HOT, 1)) == "DUNNO" {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let (one, two) = (accepted[0].load(Ordering::Relaxed), accepted[1].load(Ordering::Relaxed));
    assert_eq!(one + two, 400, "mx1 accepted {one}, mx2 {two}");
    assert!(one >= 80 && two >= 80, "each server was sent 320: {one} + {two}");
    assert_eq!(redis.get(&key(HOT)), Some(400));
    assert_eq!(redis.violations().len(), 240, "640 messages, 400 accepted, each refusal recorded");
    // Each refusal names the server that refused (newest first).
    assert_eq!(servers[0].send(HOT, 1), defer_user(HOT, 400));
    assert_eq!(servers[1].send(HOT, 1), defer_user(HOT, 400));
    let v = redis.violations();
    assert_eq!(v.len(), 242);
    assert_eq!((v[0]["server"].as_str(), v[1]["server"].as_str()), (Some("mx2"), Some("mx1")));
    // A raise written through one server's admin command applies on both.
    let (ok, out) = servers[1].admin(&["raise", HOT, "402/1d", "--for", "1h"]);
    assert!(ok, "{out}");
    assert_eq!(servers[0].send(HOT, 1), "DUNNO");
    assert_eq!(servers[1].send(HOT, 1), "DUNNO");
    assert_eq!(servers[0].send(HOT, 1), defer_user(HOT, 402));
}
