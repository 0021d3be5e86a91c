//! How long jobs report progress without knowing who is watching: the CLI
//! plugs in progress bars, tests and libraries use [`Silent`].

pub trait Progress {
    /// A new phase of `total` items begins.
    fn start(&mut self, label: &str, total: usize);
    /// `done` of the phase's items are finished.
    fn update(&mut self, done: usize);
    /// The phase is over.
    fn finish(&mut self);
    /// A status line for the current phase (e.g. the loss).
    fn message(&mut self, _message: &str) {}
    /// What the following phases belong to (e.g. a benchmark task); "" for nothing.
    fn context(&mut self, _context: &str) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str, _: usize) {}
    fn update(&mut self, _: usize) {}
    fn finish(&mut self) {}
}
