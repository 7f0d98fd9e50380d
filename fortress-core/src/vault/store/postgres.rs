//! The scale-out store: a PostgreSQL table shared by every replica.
//!
//! PostgreSQL never overwrites a row in place: an `UPDATE` or `DELETE` leaves the old tuple
//! (with its ciphertext) as a dead tuple in the heap until `VACUUM` prunes it, and the WAL
//! and any base backups keep their copies until they are recycled. After a delete this store
//! zeroes the sealed columns (so the newest tuple version holds no ciphertext), deletes the
//! row and, by default, runs `VACUUM FULL` on the table ([`PgPurge`]): the table is
//! rewritten into a new file holding only live rows and the old file is unlinked. That takes
//! a brief exclusive lock on the (small) table; deletions are rare. A plain `VACUUM` prunes
//! dead tuples without the lock but does not promise to overwrite their bytes. WAL segments
//! and backups keep their copies until recycled; for Bank workspaces the customer key is
//! destroyed with the workspace, which makes those copies undecryptable (see
//! `docs/security.md`).

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    COLUMNS, Columns, CredentialStore, KekUsage, StoredCredential, backend, from_columns,
    state_column, to_i64, usage_from, user_column,
};
use crate::subject::WorkspaceId;
use crate::vault::envelope::Sealed;
use crate::vault::{CredentialInfo, CredentialSlot, CredentialState, VaultError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fortress_vault_credentials (
    workspace      TEXT    NOT NULL,
    connector      TEXT    NOT NULL,
    user_slot      TEXT    NOT NULL,
    version        BIGINT      NOT NULL,
    state          TEXT        NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    kek_generation BIGINT      NOT NULL,
    key_nonce      BYTEA       NOT NULL,
    wrapped_key    BYTEA       NOT NULL,
    nonce          BYTEA       NOT NULL,
    ciphertext     BYTEA       NOT NULL,
    PRIMARY KEY (workspace, connector, user_slot)
);
CREATE TABLE IF NOT EXISTS fortress_vault_keks (
    workspace  TEXT    NOT NULL PRIMARY KEY,
    generation BIGINT  NOT NULL,
    wraps      BIGINT  NOT NULL
);
";

/// Zeroes the sealed columns before a delete (the newest tuple version then holds none).
const OVERWRITE: &str = "UPDATE fortress_vault_credentials SET \
     key_nonce = decode(repeat('00', length(key_nonce)), 'hex'), \
     wrapped_key = decode(repeat('00', length(wrapped_key)), 'hex'), \
     nonce = decode(repeat('00', length(nonce)), 'hex'), \
     ciphertext = decode(repeat('00', length(ciphertext)), 'hex')";

/// Credentials in a PostgreSQL table (unqualified names: the connection's `search_path`
/// chooses the schema).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    purge: PgPurge,
}

/// What a delete does about the dead tuples that still hold the deleted ciphertext.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgPurge {
    /// `VACUUM FULL`: rewrite the table, unlinking the file that held the dead tuples.
    #[default]
    VacuumFull,
    /// Plain `VACUUM`: prune dead tuples (space reusable, bytes not guaranteed overwritten).
    Vacuum,
    /// Nothing: rely on autovacuum (for deployments that schedule `VACUUM FULL` themselves).
    Autovacuum,
}

impl PgStore {
    /// Connects to a `postgres://` URL and creates the tables if needed.
    pub async fn connect(url: &str) -> Result<Self, VaultError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| VaultError::Config("invalid PostgreSQL URL".into()))?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options (for example a `search_path`).
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, VaultError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(backend)?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool and creates the tables if needed.
    pub async fn from_pool(pool: PgPool) -> Result<Self, VaultError> {
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(backend)?;
        Ok(Self {
            pool,
            purge: PgPurge::default(),
        })
    }

    /// How deletes purge dead tuples (default [`PgPurge::VacuumFull`]).
    #[must_use]
    pub fn with_purge(mut self, purge: PgPurge) -> Self {
        self.purge = purge;
        self
    }

    /// The connection pool (for operational queries and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Purges dead tuples (the pre-delete row versions) right away. `VACUUM` cannot run in
    /// a transaction, hence the simple-query protocol. A long-running transaction elsewhere
    /// can keep tuples it may still see; autovacuum removes them later.
    async fn vacuum(&self) -> Result<(), VaultError> {
        let sql = match self.purge {
            PgPurge::VacuumFull => "VACUUM FULL fortress_vault_credentials",
            PgPurge::Vacuum => "VACUUM fortress_vault_credentials",
            PgPurge::Autovacuum => return Ok(()),
        };
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl CredentialStore for PgStore {
    async fn get(&self, slot: &CredentialSlot) -> Result<Option<StoredCredential>, VaultError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM fortress_vault_credentials WHERE workspace = $1 AND connector = $2 AND user_slot = $3"
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
            ),
            Some(_) => sqlx::query(
                "UPDATE fortress_vault_credentials SET version = $4, state = $5, updated_at = $6, kek_generation = $7, \
                 key_nonce = $8, wrapped_key = $9, nonce = $10, ciphertext = $11 \
                 WHERE workspace = $1 AND connector = $2 AND user_slot = $3 AND version = $12",
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
            "UPDATE fortress_vault_credentials SET state = $4, updated_at = $5 \
             WHERE workspace = $1 AND connector = $2 AND user_slot = $3",
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
            "UPDATE fortress_vault_credentials SET kek_generation = $6, key_nonce = $7, wrapped_key = $8 \
             WHERE workspace = $1 AND connector = $2 AND user_slot = $3 AND version = $4 AND kek_generation = $5",
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
        let filter = " WHERE workspace = $1 AND connector = $2 AND user_slot = $3";
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
        self.vacuum().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list(&self, workspace: &WorkspaceId) -> Result<Vec<CredentialInfo>, VaultError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM fortress_vault_credentials WHERE workspace = $1 ORDER BY connector, user_slot"
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
            "SELECT {COLUMNS} FROM fortress_vault_credentials WHERE workspace = $1 AND kek_generation < $2"
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
        sqlx::query(&format!("{OVERWRITE} WHERE workspace = $1"))
            .bind(workspace.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let done = sqlx::query("DELETE FROM fortress_vault_credentials WHERE workspace = $1")
            .bind(workspace.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM fortress_vault_keks WHERE workspace = $1")
            .bind(workspace.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        self.vacuum().await?;
        Ok(done.rows_affected())
    }

    async fn reserve_wraps(
        &self,
        workspace: &WorkspaceId,
        count: u64,
    ) -> Result<KekUsage, VaultError> {
        let (generation, wraps): (i64, i64) = sqlx::query_as(
            "INSERT INTO fortress_vault_keks (workspace, generation, wraps) VALUES ($1, 1, $2) \
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
        sqlx::query("UPDATE fortress_vault_keks SET generation = generation + 1, wraps = 0 WHERE workspace = $1 AND generation = $2")
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
            "SELECT generation, wraps FROM fortress_vault_keks WHERE workspace = $1",
        )
        .bind(workspace.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|(g, w)| usage_from(g, w)).transpose()
    }
}
