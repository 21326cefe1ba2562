//! Building a result set: RowDescription, DataRows, CommandComplete `SHOW`,
//! and the timestamp format the console prints.

use bytes::BytesMut;

use crate::protocol::backend::{self, Column};

/// text
pub(crate) const TEXT: u32 = 25;
/// int4
pub(crate) const INT: u32 = 23;
/// int8
pub(crate) const BIGINT: u32 = 20;

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    /// NULL.
    Null,
    /// Text.
    Text(String),
    /// A number.
    Int(i64),
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_string())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Cell {
        Cell::Int(n)
    }
}

impl From<usize> for Cell {
    fn from(n: usize) -> Cell {
        Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<u64> for Cell {
    fn from(n: u64) -> Cell {
        Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Cell {
    fn from(n: u32) -> Cell {
        Cell::Int(i64::from(n))
    }
}

impl From<u16> for Cell {
    fn from(n: u16) -> Cell {
        Cell::Int(i64::from(n))
    }
}

impl From<i32> for Cell {
    fn from(n: i32) -> Cell {
        Cell::Int(i64::from(n))
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Cell {
        v.map_or(Cell::Null, Into::into)
    }
}

/// A result set being written into `out`.
pub(crate) struct Table<'a> {
    out: &'a mut BytesMut,
    width: usize,
}

impl<'a> Table<'a> {
    /// Start a result set with these (name, type OID) columns.
    pub(crate) fn new(out: &'a mut BytesMut, columns: &[(&str, u32)]) -> Table<'a> {
        let cols: Vec<Column<'_>> = columns
            .iter()
            .map(|&(name, type_oid)| Column { name, type_oid })
            .collect();
        backend::row_description(out, &cols);
        Table {
            out,
            width: columns.len(),
        }
    }

    /// Add a row (exactly one value per column).
    pub(crate) fn row(&mut self, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.width, "row width");
        let text: Vec<Option<String>> = cells
            .into_iter()
            .map(|c| match c {
                Cell::Null => None,
                Cell::Text(s) => Some(s),
                Cell::Int(n) => Some(n.to_string()),
            })
            .collect();
        let refs: Vec<Option<&str>> = text.iter().map(|t| t.as_deref()).collect();
        backend::data_row(self.out, &refs);
    }

    /// End the result set with CommandComplete `SHOW`.
    pub(crate) fn finish(self) {
        backend::command_complete(self.out, "SHOW");
    }

    /// End the table with CommandComplete `tag` (a command that answers
    /// with rows).
    pub(crate) fn finish_as(self, tag: &str) {
        backend::command_complete(self.out, tag);
    }
}

/// Column names with one type: shorthand for tables of many counters.
pub(crate) fn columns<'n>(names: &[&'n str], first_text: usize, rest: u32) -> Vec<(&'n str, u32)> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, if i < first_text { TEXT } else { rest }))
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS UTC` for microseconds since the Unix epoch (as
/// PgBouncer prints connect_time and request_time).
pub(crate) fn timestamp(unix_us: u64) -> String {
    let secs = unix_us / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Microseconds since the Unix epoch of a past `Instant`.
pub(crate) fn instant_us(at: std::time::Instant) -> u64 {
    now_us().saturating_sub(at.elapsed().as_micros() as u64)
}

/// Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
        // 2024-02-29 12:34:56 UTC
        assert_eq!(timestamp(1_709_210_096_000_000), "2024-02-29 12:34:56 UTC");
    }
}
