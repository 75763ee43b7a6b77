//! What both database layouts share: the read error and reading an integer column whatever
//! its SQL type. (`database` runs the layouts; `erl_columns` is one of them; both use this.)

use sqlx::Row;
use sqlx::mysql::MySqlRow;

/// A failed read; the caller keeps its last good set.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database query timed out after {0} s")]
    Timeout(u64),
    #[error("database column {column}: {reason}")]
    Column { column: usize, reason: String },
    #[error("building the cap table failed: {0}")]
    Build(String),
}

/// An integer column as a count: unsigned, signed (negative: 0) or a decimal string; NULL is
/// `None`.
pub(super) fn int_column(row: &MySqlRow, i: usize) -> Result<Option<u64>, LimitsError> {
    if let Ok(v) = row.try_get::<Option<u64>, _>(i) {
        return Ok(v);
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return Ok(v.map(|n| u64::try_from(n).unwrap_or(0)));
    }
    match row.try_get::<Option<String>, _>(i) {
        Ok(None) => Ok(None),
        Ok(Some(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| LimitsError::Column { column: i, reason: format!("{s:?} is not a whole number") }),
        Err(e) => Err(LimitsError::Column { column: i, reason: e.to_string() }),
    }
}
