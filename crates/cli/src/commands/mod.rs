//! One module per subcommand.

pub mod embed;
pub mod pull;
pub mod shared;
