//! Files that appear whole or not at all: written under a hidden temporary
//! name beside the destination, then renamed into place.

use std::fs::File;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::DataError;

pub struct AtomicFile {
    path: PathBuf,
    temp: NamedTempFile,
}

impl AtomicFile {
    /// Creates `.<name>.XXXX.tmp` in the destination's folder, so an
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
            .prefix(&format!(".{name}."))
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
