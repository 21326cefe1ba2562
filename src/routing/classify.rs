//! What a statement asks of its server, by PostgreSQL's own grammar (the
//! `pg_query` crate embeds PostgreSQL's parser): whether it may run on a
//! standby. Only what is provably read-only may ([`Class::Read`]); anything
//! the parser rejects or this module does not know goes to the primary.
//!
//! Parsing costs tens of microseconds; `cache.rs` keeps each statement's
//! class so that a repeated statement is parsed once.

use pg_query::NodeRef;
use pg_query::protobuf::node::Node;

/// What a query string (one statement or several) asks of its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Provably read-only: SELECT / SHOW / VALUES / TABLE / EXPLAIN of one,
    /// no locking clause, no SELECT INTO, no data-modifying CTE, no
    /// function known to write.
    Read,
    /// `BEGIN` / `START TRANSACTION ... READ ONLY` (with reads and a
    /// COMMIT or ROLLBACK): the transaction it opens can only read.
    ReadOnlyBegin,
    /// Writes, or may write, or is not known: the primary.
    Write,
    /// Leaves state in its server's session (a temporary table, LISTEN, a
    /// session-level advisory lock, PREPARE, a cursor WITH HOLD): the
    /// client stays on the primary from then on.
    Session,
    /// `SET` / `RESET default_transaction_read_only`, session level: the
    /// client's later transactions are read-only (true) or not.
    SetReadOnly(bool),
    /// Another session-level `SET` / `RESET`, or `DISCARD`: the primary,
    /// but not a write (read-your-writes does not start over; drivers send
    /// `SET extra_float_digits = 3` and the like at connect).
    Setting,
    /// The parser rejected it: the primary (which gives the error).
    Unparsed,
}

/// A routing hint at the start of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hint {
    /// `/* pgsluice:primary */`
    Primary,
    /// `/* pgsluice:standby */`
    Standby,
}

/// Functions that write or need the primary even inside a SELECT (by
/// name, without schema; PostgreSQL folds unquoted names to lowercase).
const WRITING: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "lastval",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_notify",
    "lo_create",
    "lo_creat",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "lo_open",
    "lo_truncate",
    "lo_truncate64",
    "lowrite",
    "lo_write",
    "txid_current",
    "pg_current_xact_id",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_switch_wal",
    "pg_create_restore_point",
    "set_config",
    "dblink_exec",
    "pg_logical_emit_message",
];

/// Session-level advisory locks: held by the server connection after the
/// transaction.
const SESSION_LOCKS: &[&str] = &[
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// A hint comment at the start of `sql` (after white space). An unknown
/// `pgsluice:` word is no hint (the statement is routed by its text).
#[inline(always)]
pub(crate) fn hint(sql: &[u8]) -> Option<Hint> {
    // Most statements start with a keyword: no comment to read.
    match sql.first() {
        Some(b) if *b == b'/' || b.is_ascii_whitespace() => hint_comment(sql),
        _ => None,
    }
}

fn hint_comment(sql: &[u8]) -> Option<Hint> {
    let start = sql.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = sql[start..].strip_prefix(b"/*")?;
    let end = rest.windows(2).position(|w| w == b"*/")?;
    let word = std::str::from_utf8(&rest[..end]).ok()?.trim();
    match word.strip_prefix("pgsluice:")?.trim() {
        w if w.eq_ignore_ascii_case("primary") => Some(Hint::Primary),
        w if w.eq_ignore_ascii_case("standby") => Some(Hint::Standby),
        _ => None,
    }
}

/// The class of a query string; `writing` are the user's own writing
/// functions (writing_functions, lowercased; with a schema they match
/// only a call naming that schema).
pub(crate) fn classify(sql: &str, writing: &[String]) -> Class {
    let Ok(parsed) = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT) else {
        return Class::Unparsed;
    };
    let stmts = &parsed.protobuf.stmts;
    if stmts.is_empty() {
        // Only comments or semicolons: answered by any server.
        return Class::Read;
    }
    // Session state and writing functions anywhere in the string.
    for f in parsed.functions() {
        let name = f.to_ascii_lowercase();
        let bare = name.rsplit('.').next().unwrap_or(&name);
        if SESSION_LOCKS.contains(&bare) {
            return Class::Session;
        }
        if WRITING.contains(&bare) || writing.iter().any(|w| *w == name || *w == bare) {
            return Class::Write;
        }
    }
    let mut class = Class::Read;
    let mut read_only_begin = false;
    for raw in stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        match statement(node, &parsed) {
            Class::Read => {}
            Class::ReadOnlyBegin => read_only_begin = true,
            Class::Write if stmts.len() > 1 && read_only_begin && ends_transaction(node) => {}
            other if stmts.len() == 1 => return other,
            Class::Session => return Class::Session,
            _ => class = Class::Write,
        }
    }
    match class {
        Class::Read if read_only_begin => Class::ReadOnlyBegin,
        c => c,
    }
}

/// One statement's class (functions were looked at already).
fn statement(node: &Node, parsed: &pg_query::ParseResult) -> Class {
    match node {
        Node::SelectStmt(_) => {
            if read_only_query(parsed) {
                Class::Read
            } else if into_temp(parsed) {
                Class::Session
            } else {
                Class::Write
            }
        }
        Node::VariableShowStmt(_) => Class::Read,
        // EXPLAIN ANALYZE runs its statement: read-only when that is.
        Node::ExplainStmt(_) if read_only_query(parsed) => Class::Read,
        Node::TransactionStmt(t) => {
            use pg_query::protobuf::TransactionStmtKind as K;
            let begins = matches!(t.kind(), K::TransStmtBegin | K::TransStmtStart);
            if begins && read_only_option(&t.options) == Some(true) {
                Class::ReadOnlyBegin
            } else {
                Class::Write
            }
        }
        Node::VariableSetStmt(v) if !v.is_local => set_read_only(v).unwrap_or(Class::Setting),
        Node::DiscardStmt(_) => Class::Setting,
        Node::ListenStmt(_) | Node::PrepareStmt(_) => Class::Session,
        Node::DeclareCursorStmt(d) if d.options & CURSOR_OPT_HOLD != 0 => Class::Session,
        Node::CreateStmt(c) if temporary(c.relation.as_ref()) => Class::Session,
        Node::ViewStmt(v) if temporary(v.view.as_ref()) => Class::Session,
        Node::CreateTableAsStmt(c) if temporary(c.into.as_ref().and_then(|i| i.rel.as_ref())) => {
            Class::Session
        }
        Node::CreateSeqStmt(c) if temporary(c.sequence.as_ref()) => Class::Session,
        _ => Class::Write,
    }
}

/// PostgreSQL's CURSOR_OPT_HOLD.
const CURSOR_OPT_HOLD: i32 = 0x0020;

/// No locking clause, no INTO, no data-modifying statement anywhere in
/// the parse (CTEs and subqueries included).
fn read_only_query(parsed: &pg_query::ParseResult) -> bool {
    if !parsed.dml_tables().is_empty() {
        return false;
    }
    parsed.protobuf.nodes().iter().all(|(n, _, _, _)| match n {
        NodeRef::SelectStmt(s) => s.locking_clause.is_empty() && s.into_clause.is_none(),
        NodeRef::InsertStmt(_)
        | NodeRef::UpdateStmt(_)
        | NodeRef::DeleteStmt(_)
        | NodeRef::MergeStmt(_) => false,
        _ => true,
    })
}

/// A SELECT ... INTO TEMP.
fn into_temp(parsed: &pg_query::ParseResult) -> bool {
    parsed.protobuf.nodes().iter().any(|(n, _, _, _)| {
        matches!(n, NodeRef::SelectStmt(s)
            if temporary(s.into_clause.as_ref().and_then(|i| i.rel.as_ref())))
    })
}

fn temporary(rel: Option<&pg_query::protobuf::RangeVar>) -> bool {
    rel.is_some_and(|r| r.relpersistence == "t")
}

fn ends_transaction(node: &Node) -> bool {
    use pg_query::protobuf::TransactionStmtKind as K;
    matches!(node, Node::TransactionStmt(t)
        if matches!(t.kind(), K::TransStmtCommit | K::TransStmtRollback))
}

/// The `transaction_read_only` option of a BEGIN / START TRANSACTION.
fn read_only_option(options: &[pg_query::protobuf::Node]) -> Option<bool> {
    options.iter().rev().find_map(|o| match &o.node {
        Some(Node::DefElem(d)) if d.defname == "transaction_read_only" => {
            d.arg.as_ref().and_then(|a| a.node.as_ref()).map(truthy)
        }
        _ => None,
    })
}

/// `SET default_transaction_read_only = x` / `RESET` (and `SET SESSION
/// CHARACTERISTICS AS TRANSACTION READ ONLY`).
fn set_read_only(v: &pg_query::protobuf::VariableSetStmt) -> Option<Class> {
    use pg_query::protobuf::VariableSetKind as K;
    match v.name.as_str() {
        "default_transaction_read_only" => match v.kind() {
            K::VarSetValue => v
                .args
                .first()
                .and_then(|a| a.node.as_ref())
                .map(|n| Class::SetReadOnly(truthy(n))),
            K::VarReset | K::VarSetDefault => Some(Class::SetReadOnly(false)),
            _ => None,
        },
        "SESSION CHARACTERISTICS" => read_only_option(&v.args).map(Class::SetReadOnly),
        _ => None,
    }
}

/// A constant as a boolean setting reads it (on, true, yes, 1).
fn truthy(n: &Node) -> bool {
    use pg_query::protobuf::a_const::Val;
    match n {
        Node::AConst(c) => match &c.val {
            Some(Val::Ival(i)) => i.ival != 0,
            Some(Val::Boolval(b)) => b.boolval,
            Some(Val::Sval(s)) => {
                let s = s.sval.to_ascii_lowercase();
                matches!(s.as_str(), "on" | "true" | "yes" | "1" | "t" | "y")
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(sql: &str) -> Class {
        classify(sql, &["audit".to_string(), "app.bump".to_string()])
    }

    #[test]
    fn reads_are_proven_read_only() {
        for sql in [
            "SELECT 1",
            "select abalance from pgbench_accounts where aid = 5",
            "SHOW work_mem",
            "VALUES (1), (2)",
            "TABLE t",
            "SELECT 1; SELECT 2",
            "WITH x AS (SELECT * FROM t) SELECT * FROM x",
            "EXPLAIN SELECT * FROM t",
            "EXPLAIN ANALYZE SELECT * FROM t",
            "SELECT count(*) FROM t JOIN u USING (id) WHERE now() > '2020-01-01'",
            "SELECT other.bump(1)",
            ";",
        ] {
            assert_eq!(class(sql), Class::Read, "{sql}");
        }
    }

    #[test]
    fn writes_and_doubts_go_to_the_primary() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM (SELECT * FROM t FOR SHARE) x",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "SELECT * INTO y FROM t",
            "SELECT nextval('s')",
            "SELECT pg_catalog.setval('s', 1)",
            "SELECT pg_advisory_xact_lock(1)",
            "SELECT pg_notify('c', 'x')",
            "SELECT txid_current()",
            "SELECT set_config('a.b', 'c', false)",
            "SELECT audit('x')",
            "SELECT app.bump(1)",
            "SELECT * FROM audit()",
            "SELECT 1; INSERT INTO t VALUES (1)",
            "BEGIN",
            "BEGIN READ WRITE",
            "COMMIT",
            "EXPLAIN ANALYZE DELETE FROM t",
            "CREATE TABLE t (a int)",
            "VACUUM t",
            "SET LOCAL default_transaction_read_only = on",
            "DO $$ BEGIN END $$",
            "COPY t FROM STDIN",
        ] {
            assert_eq!(class(sql), Class::Write, "{sql}");
        }
        assert_eq!(class("SELEC 1"), Class::Unparsed);
        assert_eq!(class("SELECT 'unterminated"), Class::Unparsed);
    }

    #[test]
    fn read_only_transactions_and_settings() {
        assert_eq!(class("BEGIN READ ONLY"), Class::ReadOnlyBegin);
        assert_eq!(class("START TRANSACTION READ ONLY"), Class::ReadOnlyBegin);
        assert_eq!(
            class("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
            Class::ReadOnlyBegin
        );
        assert_eq!(
            class("BEGIN READ ONLY; SELECT 1; COMMIT"),
            Class::ReadOnlyBegin
        );
        assert_eq!(
            class("BEGIN READ ONLY; INSERT INTO t VALUES (1); COMMIT"),
            Class::Write
        );
        assert_eq!(
            class("SET default_transaction_read_only = on"),
            Class::SetReadOnly(true)
        );
        assert_eq!(
            class("set default_transaction_read_only to 'off'"),
            Class::SetReadOnly(false)
        );
        assert_eq!(
            class("RESET default_transaction_read_only"),
            Class::SetReadOnly(false)
        );
        assert_eq!(
            class("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
            Class::SetReadOnly(true)
        );
        for sql in [
            "SET extra_float_digits = 3",
            "SET search_path = x",
            "RESET ALL",
            "DISCARD ALL",
        ] {
            assert_eq!(class(sql), Class::Setting, "{sql}");
        }
    }

    #[test]
    fn session_state_pins_the_client() {
        for sql in [
            "CREATE TEMP TABLE t (a int)",
            "CREATE TEMPORARY VIEW v AS SELECT 1",
            "CREATE TEMP TABLE x AS SELECT 1",
            "SELECT 1 INTO TEMP x",
            "LISTEN chan",
            "PREPARE p AS SELECT 1",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_try_advisory_lock_shared(1)",
            "SELECT 1; LISTEN chan",
        ] {
            assert_eq!(class(sql), Class::Session, "{sql}");
        }
        assert_eq!(class("DECLARE c CURSOR FOR SELECT 1"), Class::Write);
    }

    #[test]
    fn hints() {
        assert_eq!(
            hint(b"/* pgsluice:primary */ SELECT 1"),
            Some(Hint::Primary)
        );
        assert_eq!(hint(b"  /*pgsluice:standby*/SELECT 1"), Some(Hint::Standby));
        assert_eq!(hint(b"/* pgsluice:replica */ SELECT 1"), None);
        assert_eq!(hint(b"/* other */ SELECT 1"), None);
        assert_eq!(hint(b"SELECT 1 /* pgsluice:standby */"), None);
        assert_eq!(hint(b"/* pgsluice:standby"), None);
        assert_eq!(hint(b""), None);
    }
}
