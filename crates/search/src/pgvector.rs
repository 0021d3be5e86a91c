//! The passage index in PostgreSQL with pgvector, for users who outgrow a
//! local index: export (ids, sources, lines, texts and vectors into a table
//! with an HNSW index on inner product, the embedder's settings in the
//! table's comment) and search.
//!
//! An export fills `{table}__new` and swaps it in within one transaction, so
//! an interrupted export leaves the previous table untouched.

use std::sync::Mutex;

use pgvector::Vector;
use postgres::{Client, NoTls};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::index::{PassageIndex, SearchHit};
use reasonembed_data::Progress;

fn pg(what: impl Into<String>) -> impl FnOnce(postgres::Error) -> Error {
    let what = what.into();
    move |e| Error::Postgres {
        what,
        message: match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        },
    }
}

/// Table names are spliced into SQL, so only plain identifiers are allowed.
pub fn check_table(table: &str) -> Result<()> {
    let mut chars = table.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && table.len() <= 50;
    if ok {
        Ok(())
    } else {
        Err(Error::Postgres {
            what: "table name".into(),
            message: format!(
                "'{table}' is not a plain lower-case identifier ([a-z_][a-z0-9_]*, at most 50 characters)"
            ),
        })
    }
}

fn connect(url: &str) -> Result<Client> {
    let mut client = Client::connect(url, NoTls).map_err(pg(format!("connecting to {}", redact(url))))?;
    // "table does not exist, skipping" and the like are not news.
    client
        .batch_execute("SET client_min_messages = warning")
        .map_err(pg("SET client_min_messages"))?;
    Ok(client)
}

/// A connection string without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &url[scheme + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportStats {
    pub rows: usize,
    pub dimensions: usize,
}

/// Writes `index` into `table` (replacing it) and builds its HNSW index.
pub fn export(index: &PassageIndex, url: &str, table: &str, progress: &mut dyn Progress) -> Result<ExportStats> {
    check_table(table)?;
    let dim = index.dimensions();
    let staging = format!("{table}__new");
    let mut client = connect(url)?;
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
        .map_err(pg("CREATE EXTENSION vector (is pgvector installed?)"))?;
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {staging};
             CREATE TABLE {staging} (id bigint PRIMARY KEY, source text NOT NULL, line integer NOT NULL,
                                     text text NOT NULL, embedding vector({dim}) NOT NULL)"
        ))
        .map_err(pg(format!("creating {staging}")))?;
    let total = index.passages().count();
    progress.start("export", total);
    let mut transaction = client.transaction().map_err(pg("BEGIN"))?;
    let insert = transaction
        .prepare(&format!(
            "INSERT INTO {staging} (id, source, line, text, embedding) VALUES ($1, $2, $3, $4, $5)"
        ))
        .map_err(pg("preparing the insert"))?;
    for (i, (hit, vector)) in index.passages().enumerate() {
        let line = i32::try_from(hit.line).unwrap_or(i32::MAX);
        transaction
            .execute(
                &insert,
                &[
                    &(i as i64),
                    &hit.source,
                    &line,
                    &hit.text,
                    &Vector::from(vector.to_vec()),
                ],
            )
            .map_err(pg(format!("inserting passage {i} ({})", hit.source)))?;
        if i % 256 == 0 {
            progress.update(i);
        }
    }
    progress.update(total);
    progress.finish();
    let model = serde_json::to_string(index.model())
        .expect("settings serialise")
        .replace('\'', "''");
    transaction
        .batch_execute(&format!(
            "CREATE INDEX {staging}_hnsw ON {staging} USING hnsw (embedding vector_ip_ops);
             COMMENT ON TABLE {staging} IS '{model}';
             DROP TABLE IF EXISTS {table};
             ALTER TABLE {staging} RENAME TO {table};
             ALTER INDEX {staging}_hnsw RENAME TO {table}_hnsw;
             ALTER INDEX {staging}_pkey RENAME TO {table}_pkey"
        ))
        .map_err(pg(format!("indexing and swapping in {table}")))?;
    transaction.commit().map_err(pg("COMMIT"))?;
    Ok(ExportStats {
        rows: total,
        dimensions: dim,
    })
}

/// A passage table exported by [`export`], searched through its HNSW index.
pub struct PgVectorIndex {
    client: Mutex<Client>,
    /// To reconnect when the server restarted under us.
    url: String,
    table: String,
    model: Value,
    dimensions: usize,
}

impl PgVectorIndex {
    pub fn connect(url: &str, table: &str) -> Result<Self> {
        check_table(table)?;
        let mut client = connect(url)?;
        let row = client
            .query_opt(
                "SELECT obj_description(c.oid, 'pg_class'), a.atttypmod
                 FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'embedding'
                 WHERE c.relname = $1 AND c.relkind = 'r'",
                &[&table],
            )
            .map_err(pg(format!("reading table {table}")))?
            .ok_or_else(|| Error::Postgres {
                what: format!("table {table}"),
                message: "not found: export an index with `reasonembed index export --to …` first".into(),
            })?;
        let comment: Option<String> = row.get(0);
        let model = comment
            .and_then(|c| serde_json::from_str(&c).ok())
            .ok_or_else(|| Error::Postgres {
                what: format!("table {table}"),
                message: "its comment holds no embedder settings: it was not written by `reasonembed index export`"
                    .into(),
            })?;
        let dimensions: i32 = row.get(1);
        Ok(Self {
            client: Mutex::new(client),
            url: url.into(),
            table: table.into(),
            model,
            dimensions: usize::try_from(dimensions).unwrap_or(0),
        })
    }

    /// The embedder settings the exported index was built with.
    pub fn model(&self) -> &Value {
        &self.model
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// The `k` passages closest to `query` by inner product (HNSW, with the
    /// candidate list at least `k` long so that `k` hits come back).
    /// A dropped connection (the database restarted) is opened again once.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<SearchHit>> {
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        match self.search_with(&mut client, query, k) {
            Err(_) if client.is_closed() => {
                tracing::warn!("the PostgreSQL connection was closed; reconnecting");
                *client = connect(&self.url)?;
                self.search_with(&mut client, query, k)
            }
            result => result,
        }
    }

    fn search_with(&self, client: &mut Client, query: &[f32], k: usize) -> Result<Vec<SearchHit>> {
        let mut transaction = client.transaction().map_err(pg("BEGIN"))?;
        transaction
            .batch_execute(&format!("SET LOCAL hnsw.ef_search = {}", k.clamp(40, 1000)))
            .map_err(pg("SET hnsw.ef_search"))?;
        let rows = transaction
            .query(
                &format!(
                    "SELECT source, line, text, -(embedding <#> $1) AS score FROM {} ORDER BY embedding <#> $1 LIMIT $2",
                    self.table
                ),
                &[&Vector::from(query.to_vec()), &(k as i64)],
            )
            .map_err(pg(format!("searching {}", self.table)))?;
        transaction.commit().map_err(pg("COMMIT"))?;
        Ok(rows
            .iter()
            .map(|r| SearchHit {
                source: r.get(0),
                line: usize::try_from(r.get::<_, i32>(1)).unwrap_or(0),
                text: r.get(2),
                score: r.get::<_, f64>(3) as f32,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_table_names_are_accepted() {
        assert!(check_table("passages").is_ok() && check_table("_p2").is_ok());
        for bad in ["", "Passages", "p; DROP TABLE x", "2p", "a-b", "p\"q"] {
            assert!(check_table(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("postgres://me:secret@db:5432/x"), "postgres://me@db:5432/x");
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
    }
}
