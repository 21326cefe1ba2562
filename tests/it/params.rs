//! Session parameters in transaction mode: clients sharing one server each
//! see their own tracked settings, whether SET, given in the startup packet
//! or in its `options`; drivers' extra_float_digits works unconfigured;
//! application_name_add_host; connect_query runs on every new server; a
//! client waiting longer than query_wait_timeout gets 57014.

use crate::support;

use tokio::net::TcpStream;

use support::{
    PgCluster, PoolerBuilder, TestPooler, bounded, sqlstate, unique, value as one, wire,
};

#[tokio::test]
async fn clients_sharing_one_server_keep_their_own_settings() {
    bounded(async {
        let (db, pooler) = support::transaction_pooler("params_db", "pool_size=1").await;
        let mut a_cfg = pooler.config(&db, "postgres", "");
        a_cfg.application_name("client_a").options("");
        let mut b_cfg = pooler.config(&db, "postgres", "");
        b_cfg.application_name("client_b");
        let connect = |cfg: tokio_postgres::Config| async move {
            let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            c
        };
        let a = connect(a_cfg).await;
        let b = connect(b_cfg).await;
        // Both run on the only server, one after the other.
        let pid_a = one(&a, "SELECT pg_backend_pid()").await;
        let pid_b = one(&b, "SELECT pg_backend_pid()").await;
        assert_eq!(
            pid_a, pid_b,
            "pool_size=1 must give both clients the same backend"
        );

        a.simple_query("SET TimeZone = 'Asia/Tokyo'").await.unwrap();
        b.simple_query("SET TimeZone = 'America/New_York'")
            .await
            .unwrap();
        for _ in 0..3 {
            assert_eq!(one(&a, "SHOW TimeZone").await, "Asia/Tokyo");
            assert_eq!(one(&a, "SHOW application_name").await, "client_a");
            assert_eq!(one(&b, "SHOW TimeZone").await, "America/New_York");
            assert_eq!(one(&b, "SHOW application_name").await, "client_b");
        }
        // A client that set nothing gets the server defaults back.
        let c = pooler.connect(&db, "postgres", "").await;
        assert_eq!(
            one(&c, "SHOW TimeZone").await,
            one(
                &PgCluster::shared().direct_client(&db, "postgres").await,
                "SHOW TimeZone"
            )
            .await
        );
        assert_ne!(one(&c, "SHOW application_name").await, "client_b");
        // A SET rolled back is undone for the client too.
        a.simple_query("BEGIN; SET DateStyle = 'German'; ROLLBACK")
            .await
            .unwrap();
        b.simple_query("SELECT 1").await.unwrap();
        assert_ne!(one(&a, "SHOW DateStyle").await, "German, DMY");
        // An untracked setting does not leak into the next transaction's
        // tracked state (it stays on the server, as in PgBouncer).
        assert_eq!(
            one(&b, "SELECT current_setting('TimeZone')").await,
            "America/New_York"
        );
    })
    .await
}

#[tokio::test]
async fn connect_query_runs_on_each_new_server() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("connq_db");
        pg.create_db(&db).await;
        let pooler = PoolerBuilder::new()
            .set("pool_mode", "transaction")
            .pg_database(
                pg,
                &db,
                "pool_size=2 connect_query='SET pgsluice_test.tag = ''fromconnect'''",
            )
            .start()
            .await;
        let c = pooler.connect(&db, "postgres", "").await;
        assert_eq!(
            one(&c, "SELECT current_setting('pgsluice_test.tag')").await,
            "fromconnect"
        );
    })
    .await
}

#[tokio::test]
async fn waiting_longer_than_query_wait_timeout_fails_with_57014() {
    bounded(async {
        let (db, pooler) =
            support::transaction_pooler("wait_db", "pool_size=1 query_wait_timeout=0.5").await;
        let holder = pooler.connect(&db, "postgres", "").await;
        holder.simple_query("BEGIN").await.unwrap();
        let waiter = pooler.connect(&db, "postgres", "").await;
        let err = waiter.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err:?}");
        // The holder is unaffected and the pool serves others once it is done.
        holder.simple_query("COMMIT").await.unwrap();
        let next = pooler.connect(&db, "postgres", "").await;
        assert_eq!(one(&next, "SELECT 1").await, "1");
    })
    .await
}

async fn connect(cfg: tokio_postgres::Config) -> tokio_postgres::Client {
    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

/// A raw client that logs in with exactly these startup parameters (as a
/// driver whose parameters tokio-postgres cannot send would).
async fn raw_login(pooler: &TestPooler, params: &[(&str, &str)]) -> (TcpStream, Vec<wire::Msg>) {
    let mut s = pooler.raw_connect().await;
    let startup = wire::startup_with_version(wire::PROTOCOL_3_0, params);
    wire::send(&mut s, &startup).await.unwrap();
    let msgs = wire::read_until_ready(&mut s).await.unwrap();
    assert!(msgs.iter().all(|m| m.tag != b'E'), "login failed: {msgs:?}");
    (s, msgs)
}

async fn raw_one(s: &mut TcpStream, sql: &str) -> String {
    let rows = wire::simple_query(s, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {:?}", e.message()));
    rows[0].clone().expect("not NULL")
}

#[tokio::test]
async fn options_startup_parameter_sets_tracked_values_per_client() {
    bounded(async {
        let (db, pooler) = support::transaction_pooler("opts_db", "pool_size=1").await;
        let mut a_cfg = pooler.config(&db, "postgres", "");
        a_cfg.options(
            "-c TimeZone=Asia/Tokyo --DateStyle=SQL,\\ DMY -capplication_name=from\\ options",
        );
        let mut b_cfg = pooler.config(&db, "postgres", "");
        // A parameter given on its own overrides the one in options.
        b_cfg
            .options("  --timezone=America/New_York -c application_name=overridden ")
            .application_name("client_b");
        let a = connect(a_cfg).await;
        let b = connect(b_cfg).await;
        let pid = one(&a, "SELECT pg_backend_pid()").await;
        assert_eq!(pid, one(&b, "SELECT pg_backend_pid()").await);
        let default_datestyle = one(
            &PgCluster::shared().direct_client(&db, "postgres").await,
            "SHOW DateStyle",
        )
        .await;
        assert_ne!(default_datestyle, "SQL, DMY");
        // Alternating on the only server, each sees its own values.
        for _ in 0..3 {
            assert_eq!(one(&a, "SHOW TimeZone").await, "Asia/Tokyo");
            assert_eq!(one(&a, "SHOW DateStyle").await, "SQL, DMY");
            assert_eq!(one(&a, "SHOW application_name").await, "from options");
            assert_eq!(one(&b, "SHOW TimeZone").await, "America/New_York");
            assert_eq!(one(&b, "SHOW DateStyle").await, default_datestyle);
            assert_eq!(one(&b, "SHOW application_name").await, "client_b");
        }
    })
    .await
}

#[tokio::test]
async fn options_for_untracked_parameters_are_refused_unless_ignored() {
    bounded(async {
        let (db, pooler) = support::transaction_pooler("optsno_db", "pool_size=1").await;
        for options in ["-c work_mem=64MB", "-c TimeZone=UTC --work-mem=64MB"] {
            let mut cfg = pooler.config(&db, "postgres", "");
            cfg.options(options);
            let err = cfg.connect(tokio_postgres::NoTls).await.err().unwrap();
            assert_eq!(sqlstate(&err).as_deref(), Some("08P01"), "{err:?}");
            let msg = support::db_message(&err).unwrap();
            assert!(msg.contains("work_mem"), "{msg}");
        }
        let mut cfg = pooler.config(&db, "postgres", "");
        cfg.options("-f s");
        let err = cfg.connect(tokio_postgres::NoTls).await.err().unwrap();
        assert_eq!(sqlstate(&err).as_deref(), Some("08P01"), "{err:?}");

        // With `options` in ignore_startup_parameters (PgBouncer's rule),
        // untracked settings in it are dropped and tracked ones still apply.
        let ignoring = PoolerBuilder::new()
            .set("ignore_startup_parameters", "options")
            .pg_database(PgCluster::shared(), &db, "pool_size=1")
            .start()
            .await;
        let mut cfg = ignoring.config(&db, "postgres", "");
        cfg.options("-c work_mem=64MB -c TimeZone=Asia/Tokyo");
        let c = connect(cfg).await;
        assert_eq!(one(&c, "SHOW TimeZone").await, "Asia/Tokyo");
        assert_ne!(one(&c, "SHOW work_mem").await, "64MB");
    })
    .await
}

#[tokio::test]
async fn jdbc_startup_parameters_need_no_configuration() {
    bounded(async {
        let (db, pooler) = support::transaction_pooler("jdbc_db", "pool_size=1").await;
        // What pgjdbc sends, with an empty ignore_startup_parameters.
        let (mut jdbc, _) = raw_login(
            &pooler,
            &[
                ("user", "postgres"),
                ("database", &db),
                ("client_encoding", "UTF8"),
                ("DateStyle", "ISO"),
                ("TimeZone", "Europe/Paris"),
                ("extra_float_digits", "3"),
                ("application_name", "PostgreSQL JDBC Driver"),
            ],
        )
        .await;
        let mut other_cfg = pooler.config(&db, "postgres", "");
        other_cfg.options("-c extra_float_digits=-3 -c DateStyle=German");
        let other = connect(other_cfg).await;
        let third = "SELECT (1/3::float8)::text";
        // DateStyle=ISO keeps the server's default order, as on a direct
        // connection, even when the server was left with another order.
        let order = one(
            &PgCluster::shared().direct_client(&db, "postgres").await,
            "SHOW DateStyle",
        )
        .await;
        let iso = format!("ISO, {}", order.split(", ").nth(1).unwrap());
        assert_eq!(one(&other, "SHOW DateStyle").await, "German, DMY");
        for _ in 0..3 {
            assert_eq!(raw_one(&mut jdbc, "SHOW DateStyle").await, iso);
            assert_eq!(one(&other, "SHOW DateStyle").await, "German, DMY");
            assert_eq!(raw_one(&mut jdbc, "SHOW extra_float_digits").await, "3");
            assert_eq!(raw_one(&mut jdbc, third).await, "0.3333333333333333");
            assert_eq!(raw_one(&mut jdbc, "SHOW TimeZone").await, "Europe/Paris");
            assert_eq!(one(&other, "SHOW extra_float_digits").await, "-3");
            assert_eq!(one(&other, third).await, "0.333333333333");
        }
        assert_eq!(
            raw_one(&mut jdbc, "SELECT pg_backend_pid()::text").await,
            one(&other, "SELECT pg_backend_pid()").await
        );
    })
    .await
}

/// Isolation for clients that never asked for an unreported parameter
/// needs the session's sync to record what it set on the server
/// (`Params::note_synced`, called from client/session.rs `sync_params`
/// after a successful sync query); until then such a client may see the
/// extra_float_digits of the previous client of its server.
#[tokio::test]
async fn a_client_that_did_not_ask_gets_the_default_extra_float_digits() {
    bounded(async {
        let (db, pooler) = support::transaction_pooler("efd_db", "pool_size=1").await;
        let mut asker_cfg = pooler.config(&db, "postgres", "");
        asker_cfg.options("-c extra_float_digits=-3");
        let asker = connect(asker_cfg).await;
        let plain = pooler.connect(&db, "postgres", "").await;
        let default = one(
            &PgCluster::shared().direct_client(&db, "postgres").await,
            "SHOW extra_float_digits",
        )
        .await;
        for _ in 0..3 {
            assert_eq!(one(&asker, "SHOW extra_float_digits").await, "-3");
            assert_eq!(one(&plain, "SHOW extra_float_digits").await, default);
        }
    })
    .await
}

#[tokio::test]
async fn application_name_add_host_appends_the_client_address() {
    bounded(async {
        let pg = PgCluster::shared();
        let db = unique("appname_db");
        pg.create_db(&db).await;
        let pooler = PoolerBuilder::new()
            .set("application_name_add_host", "1")
            .pg_database(pg, &db, "pool_size=1")
            .start()
            .await;
        let direct = pg.direct_client(&db, "postgres").await;
        let base = [("user", "postgres"), ("database", db.as_str())];

        let named = [base[0], base[1], ("application_name", "myapp")];
        let (mut s, login) = raw_login(&pooler, &named).await;
        let want = format!("myapp - {}", s.local_addr().unwrap());
        let reported: Vec<_> = login
            .iter()
            .filter(|m| m.tag == b'S')
            .map(|m| m.parameter())
            .collect();
        assert!(
            reported.contains(&("application_name".to_string(), want.clone())),
            "{reported:?}"
        );
        assert_eq!(raw_one(&mut s, "SHOW application_name").await, want);
        // What the server shows (pool_size=1: the backend that ran it).
        let pid = raw_one(&mut s, "SELECT pg_backend_pid()::text").await;
        let sql = format!("SELECT application_name FROM pg_stat_activity WHERE pid = {pid}");
        assert_eq!(one(&direct, &sql).await, want);

        // No name: "app", as PgBouncer.
        let (mut s2, _) = raw_login(&pooler, &base).await;
        let want2 = format!("app - {}", s2.local_addr().unwrap());
        assert_eq!(raw_one(&mut s2, "SHOW application_name").await, want2);
        assert_eq!(one(&direct, &sql).await, want2);
        assert_eq!(raw_one(&mut s, "SHOW application_name").await, want);

        // A Unix-socket client: unix(<pid>@<hostname>):<port>; the client
        // is this very process.
        let c = connect(pooler.unix_config(&db, "postgres")).await;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let want3 = format!(
            "app - unix({}@{}):{}",
            std::process::id(),
            host.trim(),
            pooler.addr().port()
        );
        assert_eq!(one(&c, "SHOW application_name").await, want3);
        assert_eq!(one(&direct, &sql).await, want3);
    })
    .await
}
