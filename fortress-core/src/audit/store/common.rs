//! SQL shared by the backends: the column lists, row decoding, SQLite's batch inserts and filters.
//! Both backends store integers as 64-bit, hashes as bytes and bodies as text, so the
//! same code serves both; only locking and the purge flag differ.

use std::sync::OnceLock;

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use super::StoreError;
use crate::audit::checkpoint::Checkpoint;
use crate::audit::merkle::Hash;
use crate::audit::query::{AuditQuery, Order};
use crate::audit::row::{
    EventColumns, StoredEvent, effect_name, from_micros, kind_name, micros, outcome_name,
};

/// The event columns, in the order [`decode_event`] reads them.
pub(crate) const EVENT_COLUMNS: &str = "seq, recorded_at, ts, workspace, subject_id, subject_kind, action, resource, connector, model, decision, outcome, request_id, body, hash";

/// The checkpoint columns, in the order [`decode_checkpoint`] reads them.
pub(crate) const CHECKPOINT_COLUMNS: &str =
    "first_seq, last_seq, chain_head, merkle_root, created_at, key_id, signature";

/// Rows per INSERT statement at most: well under both databases' bound-parameter limits.
pub(crate) const INSERT_CHUNK: usize = 512;

/// Splits `rows` into chunks whose sizes are powers of two up to [`INSERT_CHUNK`]. A batch
/// of any size is then written by statements of at most ten shapes, which each connection
/// prepares once and keeps in its statement cache; chunks of arbitrary sizes would make
/// nearly every group-commit batch prepare a statement with thousands of parameters anew.
pub(crate) fn insert_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = if rest.len() >= INSERT_CHUNK {
            INSERT_CHUNK
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

pub(crate) fn seq_to_db(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Malformed("sequence number out of range"))
}

pub(crate) fn seq_from_db(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Malformed("negative sequence number"))
}

pub(crate) fn bytes_to<const N: usize>(bytes: Vec<u8>) -> Result<[u8; N], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Malformed("hash or signature of the wrong length"))
}

/// Decodes a row selected with [`EVENT_COLUMNS`].
pub(crate) fn decode_event<R>(row: &R) -> Result<StoredEvent, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(StoredEvent {
        seq: seq_from_db(row.try_get(0)?)?,
        recorded_at_us: row.try_get(1)?,
        columns: EventColumns {
            timestamp_us: row.try_get(2)?,
            workspace: row.try_get(3)?,
            subject_id: row.try_get(4)?,
            subject_kind: row.try_get(5)?,
            action: row.try_get(6)?,
            resource: row.try_get(7)?,
            connector: row.try_get(8)?,
            model: row.try_get(9)?,
            decision: row.try_get(10)?,
            outcome: row.try_get(11)?,
            request_id: row.try_get(12)?,
        },
        body: row.try_get(13)?,
        hash: bytes_to(row.try_get(14)?)?,
    })
}

/// Decodes a row selected with [`CHECKPOINT_COLUMNS`].
pub(crate) fn decode_checkpoint<R>(row: &R) -> Result<Checkpoint, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Checkpoint {
        first_seq: seq_from_db(row.try_get(0)?)?,
        last_seq: seq_from_db(row.try_get(1)?)?,
        chain_head: bytes_to(row.try_get(2)?)?,
        merkle_root: bytes_to(row.try_get(3)?)?,
        created_at: from_micros(row.try_get(4)?),
        key_id: row.try_get(5)?,
        signature: bytes_to(row.try_get(6)?)?,
    })
}

/// The SQLite `INSERT INTO audit_events …` text for `rows` rows (a power of two up to
/// [`INSERT_CHUNK`]), built once per shape. Rebuilding it for every batch — thousands of
/// placeholders formatted each time — was a tenth of the store's instructions per event
/// (callgrind, `examples/audit_append_profile.rs`). PostgreSQL binds a batch as arrays
/// instead (one shape for any size, see `postgres.rs`).
fn insert_sql(rows: usize) -> &'static str {
    static SHAPES: OnceLock<Vec<String>> = OnceLock::new();
    let shapes = SHAPES.get_or_init(|| {
        (0..=INSERT_CHUNK.ilog2())
            .map(|k| build_insert_sql(1 << k))
            .collect()
    });
    &shapes[rows.max(1).ilog2() as usize]
}

fn build_insert_sql(rows: usize) -> String {
    let columns = EVENT_COLUMNS.split(", ").count();
    let row = format!("({})", vec!["?"; columns].join(", "));
    format!(
        "INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES {}",
        vec![row.as_str(); rows].join(", ")
    )
}

/// `INSERT INTO audit_events …` for one chunk of rows, whose length must be a power of two
/// up to [`INSERT_CHUNK`] (as [`insert_chunks`] makes them).
pub(crate) fn insert_events(
    rows: &[StoredEvent],
) -> Result<Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'_>>, StoreError> {
    if !rows.len().is_power_of_two() || rows.len() > INSERT_CHUNK {
        return Err(StoreError::Malformed("insert chunk of an unexpected size"));
    }
    let mut query = sqlx::query(insert_sql(rows.len()));
    for r in rows {
        let c = &r.columns;
        query = query
            .bind(seq_to_db(r.seq)?)
            .bind(r.recorded_at_us)
            .bind(c.timestamp_us)
            .bind(c.workspace.as_str())
            .bind(c.subject_id.as_str())
            .bind(c.subject_kind.as_str())
            .bind(c.action.as_str())
            .bind(c.resource.as_str())
            .bind(c.connector.as_deref())
            .bind(c.model.as_deref())
            .bind(c.decision.as_deref())
            .bind(c.outcome.as_str())
            .bind(c.request_id.as_str())
            .bind(r.body.as_str())
            .bind(r.hash.as_slice());
    }
    Ok(query)
}

/// `INSERT INTO audit_checkpoints …`.
pub(crate) fn insert_checkpoint<'a, DB>(
    cp: &'a Checkpoint,
) -> Result<QueryBuilder<'a, DB>, StoreError>
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(format!(
        "INSERT INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ("
    ));
    let mut values = qb.separated(", ");
    values
        .push_bind(seq_to_db(cp.first_seq)?)
        .push_bind(seq_to_db(cp.last_seq)?)
        .push_bind(cp.chain_head.as_slice())
        .push_bind(cp.merkle_root.as_slice())
        .push_bind(micros(cp.created_at))
        .push_bind(cp.key_id.as_str())
        .push_bind(cp.signature.as_slice());
    qb.push(")");
    Ok(qb)
}

/// `SELECT … FROM audit_events WHERE <filter> ORDER BY seq … LIMIT n+1`.
///
/// `kind_expr` is the backend's indexed column for the event kind (a column generated
/// from the canonical body's top-level `kind`, so the write path does not set it).
pub(crate) fn select_page<'a, DB>(
    query: &'a AuditQuery,
    kind_expr: &str,
) -> Result<QueryBuilder<'a, DB>, StoreError>
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(format!(
        "SELECT {EVENT_COLUMNS} FROM audit_events WHERE 1 = 1"
    ));
    let f = &query.filter;
    if let Some(from) = f.from {
        qb.push(" AND ts >= ").push_bind(micros(from));
    }
    if let Some(until) = f.until {
        qb.push(" AND ts < ").push_bind(micros(until));
    }
    if let Some(kind) = f.kind {
        qb.push(format!(" AND {kind_expr} = "))
            .push_bind(kind_name(kind));
    }
    let text_filters: [(&str, Option<&'a str>); 7] = [
        ("workspace", f.workspace.as_deref()),
        ("subject_id", f.subject.as_deref()),
        ("action", f.action.as_deref()),
        ("connector", f.connector.as_deref()),
        ("model", f.model.as_deref()),
        ("decision", f.decision.map(effect_name)),
        ("outcome", f.outcome.map(outcome_name)),
    ];
    for (column, value) in text_filters {
        if let Some(value) = value {
            qb.push(format!(" AND {column} = ")).push_bind(value);
        }
    }
    let (cmp, dir) = match query.order {
        Order::NewestFirst => ("<", "DESC"),
        Order::OldestFirst => (">", "ASC"),
    };
    if let Some(cursor) = query.cursor {
        qb.push(format!(" AND seq {cmp} "))
            .push_bind(seq_to_db(cursor.0)?);
    }
    qb.push(format!(" ORDER BY seq {dir} LIMIT "))
        .push_bind(i64::from(query.effective_limit()) + 1);
    Ok(qb)
}

/// The hash a purge's anchor or the newest event leaves as the chain head.
pub(crate) type Head = (u64, Hash);

/// The last sequence number any writer's checkpoint covers (read with the head, inside
/// the write transaction, to tell whether a cached chain state is still current).
pub(crate) const LAST_CHECKPOINTED_SQL: &str = "SELECT MAX(last_seq) FROM audit_checkpoints";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_text_has_one_placeholder_per_value() {
        let columns = EVENT_COLUMNS.split(", ").count();
        for rows in [1, 2, 256, INSERT_CHUNK] {
            let sql = insert_sql(rows);
            assert_eq!(sql.matches('?').count(), rows * columns);
            assert_eq!(sql.matches('(').count(), rows + 1);
        }
    }

    #[test]
    fn chunks_are_powers_of_two_and_cover_every_row_in_order() {
        for n in [0usize, 1, 2, 3, 255, 256, 257, 511, 512, 513, 1500] {
            let rows: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = insert_chunks(&rows).collect();
            assert!(
                chunks
                    .iter()
                    .all(|c| c.len().is_power_of_two() && c.len() <= INSERT_CHUNK)
            );
            assert_eq!(chunks.concat(), rows, "{n}");
            assert!(chunks.len() <= n / INSERT_CHUNK + INSERT_CHUNK.ilog2() as usize + 1);
        }
    }
}
