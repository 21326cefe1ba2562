//! Unit tests of the session: the size of what an idle client holds, and
//! the idle wait and parking over a stream that buffers bytes of its own
//! as TLS does (`transport::read_ahead`), with no PostgreSQL.

use super::*;

fn context() -> Arc<crate::context::Context> {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let loaded = crate::config::load_str(
        "[pgbouncer]\nauth_type=any\n",
        std::path::Path::new("x.ini"),
    );
    Arc::new(crate::context::Context::new(loaded.unwrap().config, rx))
}

fn pool() -> Arc<crate::pool::Pool> {
    Arc::new(crate::pool::Pool::new(
        crate::pool::PoolKey {
            database: "d".into(),
            user: "u".into(),
            endpoint: crate::config::Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 1,
            },
            role: crate::pool::Role::Any,
        },
        crate::pool::PoolSettings::with_defaults(
            crate::server::ServerTarget {
                addr: Arc::new(crate::config::Endpoint::Tcp {
                    host: "127.0.0.1".into(),
                    port: 1,
                }),
                database: "d".into(),
                user: "u".into(),
                startup_params: vec![],
                tls: None,
                tcp: Default::default(),
            },
            crate::server::ServerCredentials::None,
        ),
    ))
}

fn client(
    ctx: &Arc<crate::context::Context>,
    pool: &Arc<crate::pool::Pool>,
    stream: Stream,
) -> Client {
    Client {
        stream,
        buf: BytesMut::new(),
        waker_set: false,
        held: Held::new(
            Registration::new(ctx.clone(), 1, crate::transport::Peer::Unix),
            ctx.client_slots.clone().try_acquire_owned().unwrap(),
            ctx.config(),
            (
                Route::new(pool.add_client().unwrap(), None),
                pool.intern(Params::new()),
            ),
        ),
    }
}

/// Wait idle as a session does, at most 10 s (a wait that depends on
/// socket readiness alone would never end for bytes the stream holds).
async fn wake(c: &mut Client) -> Wake {
    let wait = std::future::poll_fn(|cx| c.poll_wake(cx));
    tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .expect("an idle client missed bytes its stream held")
}

fn query(sql: &str) -> BytesMut {
    let mut b = BytesMut::new();
    postgres_protocol::message::frontend::query(sql, &mut b).unwrap();
    b
}

/// Every idle client is a task holding this future: keep it small (the
/// login and per-transaction state live elsewhere). tokio rounds a task
/// to 128 bytes, so about 150 bytes of future fit in a 256-byte task.
#[tokio::test]
async fn idle_session_task_stays_small() {
    let (ctx, pool) = (context(), pool());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = || async {
        Stream::from(
            tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap(),
        )
    };
    let mut one = client(&ctx, &pool, tcp().await);
    let request = std::mem::size_of_val(&one.request());
    eprintln!("request future: {request} bytes");
    assert!(request <= 880, "request future grew to {request} bytes");
    // The boxed future that serves a run of requests: under glibc's
    // tcache limit (1,032 bytes), else its malloc/free take the
    // slow path.
    let serving = std::mem::size_of_val(&serve(client(&ctx, &pool, tcp().await)));
    eprintln!("serve future: {serving} bytes");
    assert!(serving <= 1_032, "serve future grew to {serving} bytes");
    let fut = run(one);
    let size = std::mem::size_of_val(&fut);
    eprintln!("session task future: {size} bytes");
    assert!(size <= 152, "session future grew to {size} bytes");
    // The task's whole future: boxed login, then this session.
    let task = std::mem::size_of::<super::super::ClientTask>();
    eprintln!("client task future: {task} bytes");
    assert!(task <= 152, "client task future grew to {task} bytes");
}

/// The login future is boxed per connecting client: thousands log in at
/// once (S6), and glibc keeps the peak. The TLS handshake's state (a rustls
/// connection) is boxed apart so that it does not size every login.
#[tokio::test]
async fn login_future_stays_small() {
    let ctx = context();
    let (ours, _peer) = tokio::net::UnixStream::pair().unwrap();
    let registration =
        crate::context::Registration::new(ctx.clone(), 1, crate::transport::Peer::Unix);
    let login = super::super::login_task(
        Stream::from(ours),
        crate::transport::Peer::Unix,
        1,
        ctx,
        None,
        registration,
    );
    let size = std::mem::size_of_val(&login);
    eprintln!("login future: {size} bytes");
    assert!(size <= 2_048, "login future grew to {size} bytes");
}

/// A client whose stream holds the next request while its socket shows
/// nothing (the request came in one segment and the stream read all of
/// it, as TLS does): the idle wait must see it, without a kept buffer
/// (just woken from parking) and with one.
#[tokio::test]
async fn the_idle_wait_sees_a_request_the_stream_holds() {
    let (ctx, pool) = (context(), pool());
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let mut c = client(&ctx, &pool, Stream::read_ahead(ours, 5));
    let mut both = query("SELECT 1");
    both.extend_from_slice(&query("SELECT 2"));
    tokio::io::AsyncWriteExt::write_all(&mut peer, &both)
        .await
        .unwrap();
    let mut got = BytesMut::new();
    for kept in [false, true] {
        // Take one record, then wait idle again as after a request,
        // with or without the read buffer kept.
        while got.len() < both.len() {
            c.buf = if kept {
                BytesMut::with_capacity(4096)
            } else {
                BytesMut::new()
            };
            assert!(
                matches!(wake(&mut c).await, Wake::Request),
                "kept buffer: {kept}"
            );
            assert!(
                !c.buf.is_empty() && c.buf.len() <= 5,
                "one record at a time"
            );
            got.extend_from_slice(&c.buf);
        }
        assert_eq!(got, both);
        got.clear();
        tokio::io::AsyncWriteExt::write_all(&mut peer, &both)
            .await
            .unwrap();
    }
}

/// Parking: a client whose stream holds bytes is given back at once (the
/// parker watches the socket, which would never wake it); one whose
/// stream holds nothing parks, and its socket wakes it with its stream,
/// read-ahead buffer and all, back on a reactor.
#[tokio::test]
async fn parking_keeps_what_the_stream_holds() {
    let (ctx, pool) = (context(), pool());
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let mut c = client(&ctx, &pool, Stream::read_ahead(ours, 3));
    tokio::io::AsyncWriteExt::write_all(&mut peer, &query("SELECT 1"))
        .await
        .unwrap();
    // One record taken: the rest waits in the stream.
    assert!(matches!(wake(&mut c).await, Wake::Request));
    c.buf = BytesMut::new();
    let c = c
        .park()
        .expect("a client with buffered bytes must not park");
    assert_eq!(ctx.registry.counts(), (1, 0));
    // Drained: now it parks, off the reactor, watched by the parker.
    let mut c = c;
    let mut rest = BytesMut::new();
    while rest.len() < query("SELECT 1").len() - 3 {
        c.buf = BytesMut::new();
        assert!(matches!(wake(&mut c).await, Wake::Request));
        rest.extend_from_slice(&c.buf);
    }
    c.buf = BytesMut::new();
    let entry = c.target().clone();
    assert!(
        c.park().is_none(),
        "an idle client with nothing buffered parks"
    );
    assert_eq!(ctx.registry.counts(), (1, 1));
    // Its socket wakes it: a task again (the request then fails to find
    // a server, which ends the session; what matters is the wake-up).
    tokio::io::AsyncWriteExt::write_all(&mut peer, &query("SELECT 2"))
        .await
        .unwrap();
    let woken = crate::runtime::timer::timeout(std::time::Duration::from_secs(10), async {
        while ctx.registry.counts().1 != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        woken.is_ok(),
        "the parked client was not woken by its socket"
    );
    drop(entry);
}

/// A chooser that sends each transaction to the next pool in turn.
struct Alternate(std::sync::atomic::AtomicUsize);

impl crate::routing::Choose for Alternate {
    fn home(&self, _: &[crate::config::Endpoint]) -> usize {
        0
    }
    fn spreads(&self) -> bool {
        true
    }
    fn pick(&self, pools: &[Arc<crate::pool::Pool>]) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed) % pools.len()
    }
}

/// A fake PostgreSQL backend on `socket`: every Query gets CommandComplete
/// and ReadyForQuery 'I'.
async fn answer_queries(mut socket: tokio::net::UnixStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = BytesMut::new();
    loop {
        while let Some(h) = crate::protocol::Header::parse(&buf).filter(|h| buf.len() >= h.total())
        {
            let _ = buf.split_to(h.total());
            let mut out = BytesMut::new();
            crate::protocol::backend::command_complete(&mut out, "SELECT 1");
            crate::protocol::backend::ready_for_query(&mut out, b'I');
            socket.write_all(&out).await.unwrap();
        }
        if socket.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return;
        }
    }
}

/// One session over two pools of one database (two endpoints), its
/// transactions spread by a chooser: each transaction takes its server
/// from the pool picked for it and gives it back there; the client is
/// counted in its home pool only; statistics and the database's shared
/// server limit are kept per pool.
#[tokio::test]
async fn a_session_uses_two_pools_with_accounting_per_pool() {
    use crate::config::Endpoint;
    use crate::pool::Role;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ctx = context();
    let endpoints: Vec<Endpoint> = (1..=2)
        .map(|port| Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port,
        })
        .collect();
    let pools: Vec<Arc<crate::pool::Pool>> = endpoints
        .iter()
        .enumerate()
        .map(|(slot, e)| {
            let key = ("d", "u", e, Role::Any);
            ctx.pools.get_or_create(key, slot, || {
                let mut s = pool().settings_full().as_ref().clone();
                s.target.addr = Arc::new(e.clone());
                s.mode = crate::config::PoolMode::Transaction;
                s
            })
        })
        .collect();
    for pool in &pools {
        let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
        tokio::spawn(answer_queries(theirs));
        let addr = pool.settings().target.addr.clone();
        pool.adopt(crate::server::ServerConn::new(Stream::from(ours), addr));
    }
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let mut c = client(&ctx, &pools[0], Stream::from(ours));
    let choose: Arc<dyn crate::routing::Choose> = Arc::new(Alternate(Default::default()));
    let home = pools[0].add_client().unwrap();
    c.held.route = Route::new(home, Some((pools.clone(), choose)));
    // (The route `client` made is dropped here: its count goes with it.)
    for _ in 0..2 {
        peer.write_all(&query("SELECT 1")).await.unwrap();
        let mut answer = vec![0u8; 20];
        let (step, read) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(c.request(), peer.read_exact(&mut answer))
        })
        .await
        .expect("the transaction hung");
        assert!(matches!(step, Ok(Step::Idle)));
        read.unwrap();
        assert_eq!(answer[answer.len() - 6], b'Z');
    }
    for pool in &pools {
        let t = pool.stats.totals();
        assert_eq!(
            (t.xact_count, t.server_assignment_count),
            (1, 1),
            "{}",
            pool.key()
        );
        let n = pool.counts();
        assert_eq!((n.total, n.idle), (1, 1), "its server came back to it");
    }
    assert_eq!(pools[0].client_count(), 1, "counted in its home pool");
    assert_eq!(pools[1].client_count(), 0);
    assert_eq!(
        ctx.pools.db_limit("d"),
        Some((0, 2)),
        "one server per pool under the database's limit"
    );
    assert_eq!(ctx.pools.db_clients("d"), 1);
}
