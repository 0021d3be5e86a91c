//! Files that appear whole or not at all: written under a hidden temporary
//! name beside the destination, then renamed into place. The temporary name
//! carries the writer's process id, so that the next run can tell the
//! leftovers of a killed writer from the files of a live one.

use std::fs::File;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::DataError;

pub struct AtomicFile {
    path: PathBuf,
    temp: NamedTempFile,
}

impl AtomicFile {
    /// Creates `.<name>.<pid>.XXXX.tmp` in the destination's folder, so an
    /// unwritable destination fails before any work is done.
    pub fn create(path: &Path) -> Result<Self, DataError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}.{}.", std::process::id()))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|source| DataError::Io {
                path: path.into(),
                source,
            })?;
        Ok(Self {
            path: path.into(),
            temp,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file's own path, for writers that want a path.
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    pub fn as_file(&self) -> &File {
        self.temp.as_file()
    }

    /// Flushes to disk and renames into place (mode 0644 on Unix).
    pub fn commit(self) -> Result<(), DataError> {
        let io = |source| DataError::Io {
            path: self.path.clone(),
            source,
        };
        self.temp.as_file().sync_all().map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(self.temp.path(), std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        }
        self.temp.persist(&self.path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    use std::io::Write;
    let file = AtomicFile::create(path)?;
    file.as_file().write_all(bytes).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })?;
    file.commit()
}

/// Removes the temporary files that killed writers left in `dir` (those of
/// processes that no longer run). Best effort: a file that cannot be removed
/// is left.
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if writer_pid(&name).is_some_and(|pid| pid != std::process::id() && !is_running(pid)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The process id in a temporary name `.<name>.<pid>.<random>.tmp`.
fn writer_pid(file_name: &str) -> Option<u32> {
    let stem = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (rest, _random) = stem.rsplit_once('.')?;
    rest.rsplit_once('.')?.1.parse().ok()
}

fn is_running(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true // unknown elsewhere: keep the file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".vectors.npy.999999999.abc123.tmp");
        let mine = dir
            .path()
            .join(format!(".vectors.npy.{}.abc123.tmp", std::process::id()));
        let other = dir.path().join(".notes.tmp");
        for p in [&dead, &mine, &other] {
            std::fs::write(p, "x").unwrap();
        }
        remove_stale_temps(dir.path());
        assert!(!dead.exists());
        assert!(mine.exists() && other.exists());
        assert_eq!(writer_pid(".a.b.npy.42.XyZ.tmp"), Some(42));
    }

    #[test]
    fn temporary_names_carry_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let file = AtomicFile::create(&dir.path().join("out.json")).unwrap();
        let name = file.temp_path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(writer_pid(&name), Some(std::process::id()));
    }
}
