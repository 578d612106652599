//! The fleet's packages and their known vulnerabilities, as pure functions over what the
//! caller reads: a container's dpkg status database becomes its [`packages::Package`]
//! list, the Debian Security Tracker's JSON becomes a [`tracker::Tracker`] for one
//! release, and [`vulns::findings`] matches the two with dpkg's version ordering. No
//! file, network or process is touched here: the runtime reads a container's files
//! from outside it, the gateway fetches the tracker's data. For pending updates,
//! [`sources`] reads a container's apt sources, [`index`] a repository's Release and
//! Packages files, and [`updates::updates`] compares them with what is installed.
//!
//! Everything read is untrusted (a container's root writes its status file; the tracker
//! data comes over the network): malformed input gives a positioned [`FleetError`],
//! never a panic, and sizes are bounded by the caller.

pub mod index;
pub mod packages;
pub mod sources;
pub mod tracker;
pub mod updates;
pub mod vulns;

/// Errors from reading package or vulnerability data.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A dpkg status database could not be parsed.
    #[error("dpkg status database: {0}")]
    Status(String),
    /// A paragraph of it lacks a field or has a bad value.
    #[error("dpkg status database, package {package}: {reason}")]
    Package {
        /// The package (or `paragraph N` when it has no name).
        package: String,
        /// What is wrong.
        reason: String,
    },
    /// An apt sources file could not be read.
    #[error("apt sources {file}, line {line}: {reason}")]
    Sources {
        /// The file.
        file: String,
        /// The line (0 for a deb822 file: the reason names the paragraph).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A repository's index could not be read.
    #[error("repository index: {0}")]
    Index(String),
    /// The tracker's data could not be read.
    #[error("vulnerability data: {0}")]
    Tracker(String),
}

/// A result with a [`FleetError`].
pub type Result<T> = std::result::Result<T, FleetError>;
