//! The integration tests: one test binary (so one build and one link, not
//! one per file) whose modules share one PostgreSQL cluster per run
//! (`support::PgCluster::shared`, each test with databases and roles of its
//! own, `support::unique`); tests that stop, restart or break PostgreSQL
//! start a cluster of their own (`PgCluster::dedicated`). The pooler under
//! test runs on shard runtimes of its own, as in the binary
//! (`support::PoolerBuilder::start`). One module per capability.

mod support;

mod admin_console;
mod admin_control;
mod auth;
mod auth_query;
mod blackhole;
mod cancel;
mod cli;
mod client_timeouts;
mod control;
mod copy;
mod copy_large;
mod deployment;
mod driver_scripts;
mod drivers;
mod errors;
mod failures;
mod fairness;
mod fast_close;
mod function_call;
mod grafana;
mod ha;
mod ha_faults;
mod ha_switchover;
mod hash_password;
mod hba;
mod idle;
mod kubernetes;
mod ldap;
mod ldap_tls;
mod ledger;
mod listen;
mod logging;
mod metrics;
mod notify;
mod pam;
mod params;
mod peering;
mod pool_settings;
mod pool_sizes;
mod pooling;
mod prepared;
mod protocol;
mod readme;
mod replication;
mod restart;
mod server_lifecycle;
mod shards;
mod shutdown;
mod signals;
mod split;
mod split_drivers;
mod sqlx_driver;
mod statement_mode;
mod stats;
mod status_page;
mod stress;
mod support_selftest;
mod tls;
mod tokio_postgres_tls;
mod tools;
