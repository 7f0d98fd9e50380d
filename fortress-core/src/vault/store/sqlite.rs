//! The embedded default store: one SQLite file in the data directory.
//!
//! Connections run with `secure_delete = ON`, so SQLite overwrites deleted content with
//! zeros, and in WAL mode; after a delete the store checkpoints and truncates the WAL so the
//! old page images that still held the ciphertext do not survive in the log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    COLUMNS, Columns, CredentialStore, KekUsage, StoredCredential, backend, from_columns,
    state_column, to_i64, usage_from, user_column,
};
use crate::subject::WorkspaceId;
use crate::vault::envelope::Sealed;
use crate::vault::{CredentialInfo, CredentialSlot, CredentialState, VaultError};

/// The file name of the vault database inside the data directory.
pub const SQLITE_FILE: &str = "vault.sqlite3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fortress_vault_credentials (
    workspace      TEXT    NOT NULL,
    connector      TEXT    NOT NULL,
    user_slot      TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    state          TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    kek_generation INTEGER NOT NULL,
    key_nonce      BLOB    NOT NULL,
    wrapped_key    BLOB    NOT NULL,
    nonce          BLOB    NOT NULL,
    ciphertext     BLOB    NOT NULL,
    PRIMARY KEY (workspace, connector, user_slot)
);
CREATE TABLE IF NOT EXISTS fortress_vault_keks (
    workspace  TEXT    NOT NULL PRIMARY KEY,
    generation INTEGER NOT NULL,
    wraps      INTEGER NOT NULL
);
";

/// Zeroes the sealed columns in place before a delete, so neither the live row nor (with
/// `secure_delete`) the freed cell keeps ciphertext.
const OVERWRITE: &str = "UPDATE fortress_vault_credentials SET key_nonce = zeroblob(length(key_nonce)), \
     wrapped_key = zeroblob(length(wrapped_key)), nonce = zeroblob(length(nonce)), \
     ciphertext = zeroblob(length(ciphertext))";

/// Credentials in a SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) `vault.sqlite3` in `data_dir`.
    pub async fn open(data_dir: &Path) -> Result<Self, VaultError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            VaultError::Config(format!(
                "cannot create data directory {}: {}",
                data_dir.display(),
                e.kind()
            ))
        })?;
        let path = data_dir.join(SQLITE_FILE);
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(backend)?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(backend)?;
        Ok(Self { pool, path })
    }

    /// The database file (its WAL is the same path with `-wal` appended).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection pool (for operational queries and tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Copies the WAL into the database and truncates it, so page images of deleted rows
    /// do not survive in the log. A busy reader can leave part of the log in place; the
    /// next delete (or SQLite's automatic checkpoint) finishes the job.
    async fn purge_wal(&self) -> Result<(), VaultError> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn get(&self, slot: &CredentialSlot) -> Result<Option<StoredCredential>, VaultError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM fortress_vault_credentials WHERE workspace = ?1 AND connector = ?2 AND user_slot = ?3"
        );
        let row: Option<Columns> = sqlx::query_as(&sql)
            .bind(slot.workspace.as_str())
            .bind(&slot.connector)
            .bind(user_column(slot))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(from_columns).transpose()
    }

    async fn write(
        &self,
        record: &StoredCredential,
        previous: Option<u32>,
    ) -> Result<bool, VaultError> {
        let slot = &record.slot;
        let query = match previous {
            None => sqlx::query(
                "INSERT INTO fortress_vault_credentials (workspace, connector, user_slot, version, state, updated_at, \
                 kek_generation, key_nonce, wrapped_key, nonce, ciphertext) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING",
            ),
            Some(_) => sqlx::query(
                "UPDATE fortress_vault_credentials SET version = ?4, state = ?5, updated_at = ?6, kek_generation = ?7, \
                 key_nonce = ?8, wrapped_key = ?9, nonce = ?10, ciphertext = ?11 \
                 WHERE workspace = ?1 AND connector = ?2 AND user_slot = ?3 AND version = ?12",
            ),
        };
        let mut query = query
            .bind(slot.workspace.as_str())
            .bind(&slot.connector)
            .bind(user_column(slot))
            .bind(i64::from(record.version))
            .bind(state_column(record.state))
            .bind(record.updated_at)
            .bind(i64::from(record.kek_generation))
            .bind(&record.wrapped_key.nonce[..])
            .bind(&record.wrapped_key.ciphertext)
            .bind(&record.secret.nonce[..])
            .bind(&record.secret.ciphertext);
        if let Some(previous) = previous {
            query = query.bind(i64::from(previous));
        }
        let done = query.execute(&self.pool).await.map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_state(
        &self,
        slot: &CredentialSlot,
        state: CredentialState,
        at: DateTime<Utc>,
    ) -> Result<bool, VaultError> {
        let done = sqlx::query(
            "UPDATE fortress_vault_credentials SET state = ?4, updated_at = ?5 \
             WHERE workspace = ?1 AND connector = ?2 AND user_slot = ?3",
        )
        .bind(slot.workspace.as_str())
        .bind(&slot.connector)
        .bind(user_column(slot))
        .bind(state_column(state))
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn rewrap(
        &self,
        slot: &CredentialSlot,
        version: u32,
        from_generation: u32,
        to_generation: u32,
        wrapped_key: &Sealed,
    ) -> Result<bool, VaultError> {
        let done = sqlx::query(
            "UPDATE fortress_vault_credentials SET kek_generation = ?6, key_nonce = ?7, wrapped_key = ?8 \
             WHERE workspace = ?1 AND connector = ?2 AND user_slot = ?3 AND version = ?4 AND kek_generation = ?5",
        )
        .bind(slot.workspace.as_str())
        .bind(&slot.connector)
        .bind(user_column(slot))
        .bind(i64::from(version))
        .bind(i64::from(from_generation))
        .bind(i64::from(to_generation))
        .bind(&wrapped_key.nonce[..])
        .bind(&wrapped_key.ciphertext)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete(&self, slot: &CredentialSlot) -> Result<bool, VaultError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let filter = " WHERE workspace = ?1 AND connector = ?2 AND user_slot = ?3";
        sqlx::query(&format!("{OVERWRITE}{filter}"))
            .bind(slot.workspace.as_str())
            .bind(&slot.connector)
            .bind(user_column(slot))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let done = sqlx::query(&format!("DELETE FROM fortress_vault_credentials{filter}"))
            .bind(slot.workspace.as_str())
            .bind(&slot.connector)
            .bind(user_column(slot))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        self.purge_wal().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list(&self, workspace: &WorkspaceId) -> Result<Vec<CredentialInfo>, VaultError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM fortress_vault_credentials WHERE workspace = ?1 ORDER BY connector, user_slot"
        );
        let rows: Vec<Columns> = sqlx::query_as(&sql)
            .bind(workspace.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.into_iter()
            .map(|r| from_columns(r).map(|c| c.info()))
            .collect()
    }

    async fn stale_wraps(
        &self,
        workspace: &WorkspaceId,
        current: u32,
    ) -> Result<Vec<StoredCredential>, VaultError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM fortress_vault_credentials WHERE workspace = ?1 AND kek_generation < ?2"
        );
        let rows: Vec<Columns> = sqlx::query_as(&sql)
            .bind(workspace.as_str())
            .bind(i64::from(current))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.into_iter().map(from_columns).collect()
    }

    async fn delete_workspace(&self, workspace: &WorkspaceId) -> Result<u64, VaultError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(&format!("{OVERWRITE} WHERE workspace = ?1"))
            .bind(workspace.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let done = sqlx::query("DELETE FROM fortress_vault_credentials WHERE workspace = ?1")
            .bind(workspace.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM fortress_vault_keks WHERE workspace = ?1")
            .bind(workspace.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        self.purge_wal().await?;
        Ok(done.rows_affected())
    }

    async fn reserve_wraps(
        &self,
        workspace: &WorkspaceId,
        count: u64,
    ) -> Result<KekUsage, VaultError> {
        let (generation, wraps): (i64, i64) = sqlx::query_as(
            "INSERT INTO fortress_vault_keks (workspace, generation, wraps) VALUES (?1, 1, ?2) \
             ON CONFLICT (workspace) DO UPDATE SET wraps = fortress_vault_keks.wraps + excluded.wraps \
             RETURNING generation, wraps",
        )
        .bind(workspace.as_str())
        .bind(to_i64(count)?)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        usage_from(generation, wraps)
    }

    async fn advance_generation(
        &self,
        workspace: &WorkspaceId,
        from: u32,
    ) -> Result<u32, VaultError> {
        sqlx::query("UPDATE fortress_vault_keks SET generation = generation + 1, wraps = 0 WHERE workspace = ?1 AND generation = ?2")
            .bind(workspace.as_str())
            .bind(i64::from(from))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        let usage = self.kek_usage(workspace).await?;
        usage.map(|u| u.generation).ok_or_else(|| {
            VaultError::Config(format!(
                "workspace {workspace} has no key-encryption key yet"
            ))
        })
    }

    async fn kek_usage(&self, workspace: &WorkspaceId) -> Result<Option<KekUsage>, VaultError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT generation, wraps FROM fortress_vault_keks WHERE workspace = ?1",
        )
        .bind(workspace.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|(g, w)| usage_from(g, w)).transpose()
    }
}
