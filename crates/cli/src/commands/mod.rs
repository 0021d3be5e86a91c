//! One module per subcommand.

pub mod embed;
pub mod eval;
pub mod index;
pub mod pull;
pub mod search;
pub mod serve;
pub mod shared;
pub mod synth;
pub mod train;
