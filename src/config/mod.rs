//! Configuration in PgBouncer's `pgbouncer.ini` format.
//! PLACEHOLDER with the agreed interface types; replaced by the config module.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Session,
    Transaction,
    Statement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    Any,
    Trust,
    Plain,
    Md5,
    ScramSha256,
    Cert,
    Hba,
    Pam,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{}:{line}: {key}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

pub fn load(_path: &Path) -> Result<Loaded, ConfigErrors> {
    Err(ConfigErrors(vec![]))
}

#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub general: General,
    pub databases: Databases,
    pub users: HashMap<String, UserSettings>,
    pub userlist: HashMap<String, Secret>,
}

#[derive(Debug, Clone)]
pub struct General {
    pub listen_addr: Vec<String>,
    pub listen_port: u16,
    pub unix_socket_dir: String,
    pub unix_socket_mode: u32,
    pub auth_type: AuthType,
    pub auth_file: Option<PathBuf>,
    pub pool_mode: PoolMode,
    pub max_client_conn: u32,
    pub default_pool_size: u32,
    pub server_reset_query: String,
    pub server_reset_query_always: bool,
    pub server_connect_timeout: Duration,
    pub server_login_retry: Duration,
    pub client_login_timeout: Duration,
    pub query_wait_timeout: Duration,
    pub cancel_wait_timeout: Duration,
    pub max_packet_size: u32,
    pub pkt_buf: u32,
    pub listen_backlog: u32,
    pub tcp_keepalive: bool,
    pub logfile: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub admin_users: Vec<String>,
    pub stats_users: Vec<String>,
    pub ignore_startup_parameters: Vec<String>,
    pub track_extra_parameters: Vec<String>,
    pub log_connections: bool,
    pub log_disconnections: bool,
    pub log_pooler_errors: bool,
    pub verbose: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Databases {
    pub entries: HashMap<String, Database>,
    pub fallback: Option<Database>,
}

impl Databases {
    pub fn lookup(&self, name: &str) -> Option<&Database> {
        self.entries.get(name).or(self.fallback.as_ref())
    }
}

#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub dbname: Option<String>,
    pub host: Option<String>,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub pool_size: Option<u32>,
    pub pool_mode: Option<PoolMode>,
    pub client_encoding: Option<String>,
    pub datestyle: Option<String>,
    pub timezone: Option<String>,
    pub connect_query: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct UserSettings {
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<u32>,
}
