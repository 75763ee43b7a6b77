//! Redis Sentinel: one master, one replica and three `redis-sentinel` processes on loopback.
//! Under load, the master is killed (SIGKILL): every request is still answered within 1 s
//! (DUNNO while no master is known), counting resumes on the promoted replica (the time is
//! measured and printed), and the cap is exact on the new master; the messages accepted
//! fail-open during the failover are counted and printed.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, Redis, Sentinel, defer_user, eom, key, wait_for};

const HOT: &str = "hot@example.com";
const CAP: u64 = 400;

#[test]
fn a_failover_is_followed_within_seconds_and_the_cap_stays_exact() {
    let Some(mut master) = Redis::start() else { return };
    let master_port = master.port.to_string();
    let Some(replica) = Redis::start_with(&["--replicaof", "127.0.0.1", &master_port]) else { return };
    let mut sentinels = Vec::new();
    for _ in 0..3 {
        let Some(s) = Sentinel::start(master.port) else { return };
        sentinels.push(s);
    }
    // Each Sentinel must know the replica and the two others before a failover can happen.
    wait_for("the sentinels to know each other and the replica", Duration::from_secs(30), || {
        sentinels.iter().all(|s| s.known() == (1, 2)).then_some(())
    });
    let list: Vec<String> = sentinels.iter().map(|s| format!("\"127.0.0.1:{}\"", s.port)).collect();
    let d = Daemon::start(&format!(
        "[[limits.mailbox]]\nemail = \"{HOT}\"\ndaily = {CAP}\n\
         [redis]\nurl = \"redis://127.0.0.1/0\"\nsentinels = [{}]\nsentinel_master = \"mymaster\"\n",
        list.join(", ")
    ));
    for _ in 0..50 {
        assert_eq!(d.send(HOT, 1), "DUNNO");
    }
    assert_eq!(master.get(&key(HOT)), Some(50), "counted on the master the Sentinels named");
    wait_for("the replica to catch up", Duration::from_secs(10), || {
        (replica.get(&key(HOT)) == Some(50)).then_some(())
    });

    let stop = AtomicBool::new(false);
    let (dunno, deferred) = (AtomicU64::new(0), AtomicU64::new(0));
    let slowest = Mutex::new(Duration::ZERO);
    let resumed_after = std::thread::scope(|s| {
        // A wait below that times out panics; the senders must stop then too, or the scope
        // would wait for them forever and the suite would hang instead of failing.
        let _stop_senders = common::StopOnDrop(&stop);
        for _ in 0..8 {
            s.spawn(|| {
                let mut c = d.connect();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let reply = c.ask(&eom(HOT, 1));
                    let took = started.elapsed();
                    let mut slow = slowest.lock().expect("lock");
                    *slow = (*slow).max(took);
                    drop(slow);
                    if reply == "DUNNO" {
                        dunno.fetch_add(1, Ordering::Relaxed);
                    } else {
                        assert_eq!(reply, defer_user(HOT, CAP));
                        deferred.fetch_add(1, Ordering::Relaxed);
                        // At the cap: slow down, the cap only has to hold.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            });
        }
        // Load on the old master first, then kill it.
        wait_for("load on the master", Duration::from_secs(10), || {
            (master.get(&key(HOT)).unwrap_or(0) >= 80).then_some(())
        });
        let before = replica.get(&key(HOT)).unwrap_or(0);
        master.kill();
        let killed = Instant::now();
        // Counting resumes once the replica is promoted and the daemon has found it.
        let resumed = wait_for("counting on the promoted replica", Duration::from_secs(20), || {
            let (role, counted) = replica.try_role_and_get(&key(HOT))?;
            (role == "master" && counted.unwrap_or(0) > before).then(|| killed.elapsed())
        });
        wait_for("the cap on the new master", Duration::from_secs(20), || {
            (deferred.load(Ordering::Relaxed) > 20).then_some(())
        });
        stop.store(true, Ordering::Relaxed);
        resumed
    });
    let fail_open = d.log().lines().filter(|l| l.contains("erl fail-open") && l.contains(HOT)).count();
    let accepted = dunno.load(Ordering::Relaxed) + 50;
    let counted = replica.get(&key(HOT)).unwrap_or(0);
    let slowest = *slowest.lock().expect("lock");
    eprintln!(
        "failover: counting resumed {resumed_after:?} after SIGKILL; slowest reply {slowest:?}; accepted {accepted} = \
         {CAP} counted on the new master + {fail_open} fail-open + {} written to the old master and lost with it",
        accepted.saturating_sub(CAP).saturating_sub(u64::try_from(fail_open).unwrap_or(0))
    );
    assert!(slowest < Duration::from_secs(1), "a reply took {slowest:?}");
    assert!(resumed_after < Duration::from_secs(10), "counting resumed only after {resumed_after:?}");
    assert_eq!(counted, CAP, "the cap is exact on the new master");
    assert!(fail_open > 0, "the failover was not seen at all");
    d.wait_log("redis link back; enforcing again", 1);
}

/// A Sentinel first in the list that accepts connections and never answers must not stall
/// every resolution: the daemon moves on to the next one and counts.
#[test]
fn a_sentinel_that_swallows_connections_is_passed_over() {
    let Some(master) = Redis::start() else { return };
    let Some(sentinel) = Sentinel::start(master.port) else { return };
    // Connections complete in the kernel's backlog and are never read.
    let swallow = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let swallow_port = swallow.local_addr().expect("addr").port();
    let d = Daemon::start(&format!(
        "[redis]\nurl = \"redis://127.0.0.1/0\"\nsentinels = [\"127.0.0.1:{swallow_port}\", \"127.0.0.1:{}\"]\n",
        sentinel.port
    ));
    wait_for("counting through the second Sentinel", Duration::from_secs(15), || {
        assert_eq!(d.send("alice@example.com", 1), "DUNNO");
        (master.get(&key("alice@example.com")).unwrap_or(0) > 0).then_some(())
    });
    d.wait_log("erl fail-open reason=redis-timeout", 1);
    drop(swallow);
}
