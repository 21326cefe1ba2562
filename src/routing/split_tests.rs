use std::time::Duration;

use super::*;
use crate::config::Fallback;
use crate::topology::StandbyCheck;

fn q(sql: &str) -> Vec<u8> {
    let mut m = vec![b'Q'];
    m.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    m.extend_from_slice(sql.as_bytes());
    m.push(0);
    m
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = name.as_bytes().to_vec();
    b.push(0);
    b.extend_from_slice(sql.as_bytes());
    b.extend_from_slice(&[0, 0, 0]);
    msg(b'P', &b)
}

fn bind(stmt: &str) -> Vec<u8> {
    let mut b = vec![0];
    b.extend_from_slice(stmt.as_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
    msg(b'B', &b)
}

fn group(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut all: Vec<u8> = parts.concat();
    all.extend(msg(b'E', &[0, 0, 0, 0, 0]));
    all.extend(msg(b'S', &[]));
    all
}

fn route(f: impl FnOnce(&mut Split)) -> SplitRoute {
    let mut s = Split {
        on: true,
        ..Split::default()
    };
    f(&mut s);
    SplitRoute::new(s, Arc::new(Rotation::default()), "u")
}

#[test]
fn reads_go_to_standbys_and_writes_to_the_primary() {
    let mut r = route(|_| {});
    let read = q("SELECT 1");
    let c = r.choose(&read);
    assert_eq!(c.routed, Routed::Read);
    assert_eq!(c.unit, read.len());
    assert!(c.goes_to_standby());
    assert_eq!(
        r.choose(&q("INSERT INTO t VALUES (1)")).routed,
        Routed::Write
    );
    assert_eq!(r.choose(&q("BEGIN")).routed, Routed::Write);
    assert_eq!(r.choose(&q("BEGIN READ ONLY")).routed, Routed::Read);
    assert_eq!(r.choose(&q("SELEC 1")).routed, Routed::Unparseable);
    // A pipelined write after a read: only the read is the unit.
    let mut two = q("SELECT 1");
    two.extend(q("DELETE FROM t"));
    assert_eq!(r.choose(&two).unit, read.len());
    // Too long to bound a standby's link to: the primary.
    let long = q(&format!("SELECT '{}'", "x".repeat(70_000)));
    assert_eq!(r.choose(&long).routed, Routed::Unparseable);
    // Not all there: the primary.
    assert_eq!(
        r.choose(&read[..read.len() - 1]).routed,
        Routed::Unparseable
    );
}

#[test]
fn hints_override_the_class() {
    let mut r = route(|_| {});
    let c = r.choose(&q("/* pgsluice:primary */ SELECT 1"));
    assert_eq!(c.routed, Routed::HintPrimary);
    let c = r.choose(&q("/* pgsluice:standby */ SELECT nextval('s')"));
    assert_eq!(c.routed, Routed::HintStandby);
    let c = r.choose(&q("/* pgsluice:elsewhere */ SELECT 1"));
    assert_eq!(c.routed, Routed::Read);
}

#[test]
fn extended_protocol_units_and_prepared_statements() {
    let mut r = route(|_| {});
    let unit = group(&[parse("", "SELECT $1::int"), bind("")]);
    let c = r.choose(&unit);
    assert_eq!((c.routed, c.unit), (Routed::Read, unit.len()));
    // Named: parsed once, Binds by name afterwards.
    let prep = group(&[parse("r", "SELECT 1"), parse("w", "UPDATE t SET a = 1")]);
    assert_eq!(r.choose(&prep).routed, Routed::Write);
    assert_eq!(r.choose(&group(&[bind("r")])).routed, Routed::Read);
    assert_eq!(r.choose(&group(&[bind("w")])).routed, Routed::Write);
    assert_eq!(r.choose(&group(&[bind("unknown")])).routed, Routed::Write);
    // No Sync yet: not a whole unit.
    assert_eq!(
        r.choose(&[parse("", "SELECT 1"), bind("")].concat()).routed,
        Routed::Unparseable
    );
    // A FunctionCall: the primary.
    assert_eq!(r.choose(&msg(b'F', &[0; 8])).routed, Routed::Write);
}

#[test]
fn session_state_pins_and_read_only_default_is_tracked() {
    let mut r = route(|_| {});
    assert_eq!(
        r.choose(&q("SET default_transaction_read_only = on"))
            .routed,
        Routed::Write
    );
    // Every transaction can only read now: the standby.
    assert_eq!(r.choose(&q("BEGIN")).routed, Routed::Read);
    assert_eq!(
        r.choose(&q("RESET default_transaction_read_only")).routed,
        Routed::Write
    );
    assert_eq!(r.choose(&q("BEGIN")).routed, Routed::Write);
    assert_eq!(
        r.choose(&q("CREATE TEMP TABLE x (a int)")).routed,
        Routed::Session
    );
    assert_eq!(r.choose(&q("SELECT 1")).routed, Routed::Session);
}

#[test]
fn read_your_writes_by_window() {
    let mut r = route(|s| {
        s.ryw = ReadYourWrites::Window;
        s.window = Duration::from_millis(50);
    });
    r.choose(&q("INSERT INTO t VALUES (1)"));
    r.ended(None);
    assert_eq!(r.choose(&q("SELECT 1")).routed, Routed::ReadYourWrites);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(r.choose(&q("SELECT 1")).routed, Routed::Read);
    // A read does not open a window.
    r.choose(&q("SELECT 1"));
    r.ended(None);
    assert_eq!(r.choose(&q("SELECT 1")).routed, Routed::Read);
}

#[test]
fn read_your_writes_by_user_is_shared() {
    let rotation = Arc::new(Rotation::default());
    let split = Split {
        on: true,
        ryw: ReadYourWrites::Window,
        scope: RywScope::User,
        ..Split::default()
    };
    let mut a = SplitRoute::new(split.clone(), rotation.clone(), "u");
    let mut b = SplitRoute::new(split.clone(), rotation.clone(), "u");
    let mut other = SplitRoute::new(split, rotation, "v");
    a.choose(&q("UPDATE t SET a = 2"));
    a.ended(None);
    assert_eq!(b.choose(&q("SELECT 1")).routed, Routed::ReadYourWrites);
    assert_eq!(other.choose(&q("SELECT 1")).routed, Routed::Read);
}

#[test]
fn read_your_writes_by_wal_position() {
    let rotation = Arc::new(Rotation::default());
    let split = Split {
        on: true,
        ryw: ReadYourWrites::Wal,
        ..Split::default()
    };
    let mut r = SplitRoute::new(split, rotation.clone(), "u");
    assert_eq!(r.choose(&q("SELECT 1")).need_lsn, None);
    r.choose(&q("INSERT INTO t VALUES (1)"));
    r.ended(None);
    // No check since the write: its position is not known yet.
    assert_eq!(r.choose(&q("SELECT 1")).routed, Routed::ReadYourWrites);
    std::thread::sleep(Duration::from_millis(1));
    let standby = |lsn| StandbyCheck {
        endpoint: Endpoint::Tcp {
            host: "s".into(),
            port: 1,
        },
        usable: true,
        lag_bytes: Some(0),
        lag_seconds: Some(0.0),
        lsn,
    };
    let limits = (Duration::ZERO, 0);
    rotation.checked(&[standby(500)], limits, Some((Instant::now(), 900)));
    // Known: a standby's server must have replayed 900.
    let c = r.choose(&q("SELECT 1"));
    assert_eq!((c.routed, c.need_lsn), (Routed::Read, Some(900)));
    // Every standby has: no check needed.
    rotation.checked(&[standby(900)], limits, None);
    assert_eq!(r.choose(&q("SELECT 1")).need_lsn, None);
    assert_eq!(SplitRoute::not_replayed().routed, Routed::ReadYourWrites);
    // A write whose position was asked at commit needs no check: its
    // position is known at once, for the client and (scope user) for the
    // user's other connections.
    assert!(!r.wants_commit_lsn());
    r.choose(&q("UPDATE t SET a = 1"));
    assert!(r.wants_commit_lsn());
    r.ended(Some(1200));
    let c = r.choose(&q("SELECT 1"));
    assert_eq!((c.routed, c.need_lsn), (Routed::Read, Some(1200)));
    let user = Split {
        on: true,
        ryw: ReadYourWrites::Wal,
        scope: RywScope::User,
        ..Split::default()
    };
    let mut a = SplitRoute::new(user.clone(), rotation.clone(), "w");
    let mut b = SplitRoute::new(user, rotation, "w");
    a.choose(&q("DELETE FROM t"));
    a.ended(Some(1300));
    assert_eq!(b.choose(&q("SELECT 1")).need_lsn, Some(1300));
}

#[test]
fn no_eligible_standby_falls_back_by_setting() {
    let rotation = Arc::new(Rotation::default());
    let lagging = StandbyCheck {
        endpoint: Endpoint::Tcp {
            host: "s".into(),
            port: 1,
        },
        usable: true,
        lag_bytes: Some(10_000),
        lag_seconds: Some(0.0),
        lsn: 0,
    };
    rotation.checked(&[lagging], (Duration::ZERO, 100), None);
    let mut s = Split {
        on: true,
        ..Split::default()
    };
    let mut r = SplitRoute::new(s.clone(), rotation.clone(), "u");
    assert_eq!(r.choose(&q("SELECT 1")).routed, Routed::NoStandby);
    s.fallback = Fallback::Wait;
    let mut r = SplitRoute::new(s, rotation, "u");
    assert_eq!(r.choose(&q("SELECT 1")).routed, Routed::Read);
}

#[test]
fn a_prepare_with_flush_is_not_a_write() {
    let mut r = route(|s| s.ryw = ReadYourWrites::Window);
    // asyncpg: Parse, Describe, Flush; the Sync comes with the first Bind.
    let mut prep = parse("s1", "SELECT 1");
    prep.extend(msg(b'D', b"Ss1\0"));
    prep.extend(msg(b'H', &[]));
    let c = r.choose(&prep);
    assert_eq!(c.routed, Routed::Unparseable);
    assert!(!c.write);
    r.ended(None);
    assert_eq!(r.choose(&group(&[bind("s1")])).routed, Routed::Read);
    // A write prepared that way is one.
    let mut prep = parse("w1", "DELETE FROM t");
    prep.extend(msg(b'H', &[]));
    assert!(r.choose(&prep).write);
    r.ended(None);
    assert_eq!(
        r.choose(&group(&[bind("s1")])).routed,
        Routed::ReadYourWrites
    );
}
