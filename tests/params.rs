//! Session parameters in transaction mode: clients sharing one server each
//! see their own tracked settings; connect_query runs on every new server;
//! a client waiting longer than query_wait_timeout gets 57014.

mod support;

use support::{PgCluster, PoolerBuilder, bounded, sqlstate, unique, value as one};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
