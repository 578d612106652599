//! Session recordings and the audit log for gatehouse: asciicast v2 files per channel
//! ([`cast`]) with raw files for binary streams ([`channel`]), session directories ([`store`]), the hash-chained audit log ([`audit`]),
//! verification ([`verify`]) and plain-text rendering through a terminal emulator
//! ([`text`]).

pub mod audit;
pub mod cast;
pub mod channel;
pub mod error;
pub mod head;
pub mod private;
pub mod store;
pub mod text;
pub mod verify;

pub use error::{RecordingError, Result};
