//! `reasonembed index`: move a passage index built by `reasonembed search`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use reasonembed_search::index::PassageIndex;
use reasonembed_search::pgvector;

use crate::progress::Bars;

/// Export a passage index (built by `reasonembed search --index DIR`) elsewhere.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Write the index into a PostgreSQL table with pgvector (ids, sources, lines, texts,
    /// vectors, and an HNSW index on inner product); `reasonembed serve --pgvector URL` then
    /// searches it. The table is replaced atomically: an interrupted export leaves the old one.
    Export(Export),
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  reasonembed search --corpus docs/ --index docs.index \"warm-up query\"\n  reasonembed index export --index docs.index --to postgres://me@localhost:5432/rag"
)]
struct Export {
    /// The index folder.
    #[arg(long)]
    index: PathBuf,
    /// A PostgreSQL URL (postgres://user[:password]@host:port/database); the database needs
    /// the pgvector extension available.
    #[arg(long, value_name = "URL", env = "REASONEMBED_PGVECTOR_URL", hide_env_values = true)]
    to: String,
    /// The table to (re)create: a plain lower-case identifier.
    #[arg(long, default_value = "passages")]
    table: String,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args) -> Result<()> {
    let Command::Export(export) = args.command;
    let index = PassageIndex::open(&export.index)?;
    let stats = pgvector::export(&index, &export.to, &export.table, &mut Bars::new(export.quiet))
        .with_context(|| format!("exporting {}", export.index.display()))?;
    eprintln!(
        "exported {} passages ({} dimensions) into table {} with an HNSW index",
        stats.rows, stats.dimensions, export.table
    );
    Ok(())
}
