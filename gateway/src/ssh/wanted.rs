//! What a session channel asks for (a shell, a command, the SFTP subsystem), the policy
//! action that covers it, and how its file transfers are followed for the audit.

use gatehouse_policies::Action;

use super::files::{ScpCommand, Watch};
use super::transfer::Transfer;

/// A session channel's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// An interactive shell.
    Shell,
    /// A command.
    Exec(String),
    /// The `sftp` subsystem (`sftp`, and `scp` since OpenSSH 9).
    Sftp,
}

impl Wanted {
    /// The policy action: file transfers (`sftp`, legacy `scp`, `rsync`) need `sftp`,
    /// whatever command carries them.
    pub fn action(&self) -> Action {
        match self {
            Wanted::Shell => Action::Shell,
            Wanted::Sftp => Action::Sftp,
            Wanted::Exec(c) if Transfer::parse(c).is_some() => Action::Sftp,
            Wanted::Exec(_) => Action::Exec,
        }
    }

    /// The command, for the audit log and the recording.
    pub fn command(&self) -> Option<&str> {
        match self {
            Wanted::Exec(c) => Some(c),
            _ => None,
        }
    }

    /// The program to run without a shell, when the command is a file transfer.
    pub fn transfer(&self) -> Option<Transfer> {
        match self {
            Wanted::Exec(c) => Transfer::parse(c),
            _ => None,
        }
    }

    /// The subsystem's name, if one was asked for.
    pub fn subsystem(&self) -> Option<&'static str> {
        (self == &Wanted::Sftp).then_some("sftp")
    }

    /// How to follow the files this channel moves, if it moves files in a way the gateway
    /// can read (SFTP and legacy scp; rsync's own protocol is not followed).
    pub fn watch(&self) -> Option<Watch> {
        match self {
            Wanted::Sftp => Some(Watch::sftp()),
            Wanted::Exec(c) => ScpCommand::parse(c).map(Watch::scp),
            Wanted::Shell => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_need_the_sftp_action_and_other_commands_exec() {
        assert_eq!(Wanted::Sftp.action(), Action::Sftp);
        assert_eq!(Wanted::Exec("scp -t /tmp".into()).action(), Action::Sftp);
        assert_eq!(
            Wanted::Exec("rsync --server -logDtpre.iLsfxCIvu . /tmp/x".into()).action(),
            Action::Sftp
        );
        assert_eq!(Wanted::Exec("rsync -a a b".into()).action(), Action::Exec);
        assert_eq!(Wanted::Exec("ls -t".into()).action(), Action::Exec);
        assert_eq!(
            Wanted::Exec("scp -t /tmp; id".into()).action(),
            Action::Exec
        );
        assert_eq!(
            Wanted::Exec("scp -t /tmp".into()).transfer().unwrap().argv,
            ["/usr/bin/scp", "-t", "--", "/tmp"]
        );
        assert_eq!(Wanted::Shell.action(), Action::Shell);
    }

    #[test]
    fn sftp_and_legacy_scp_are_watched() {
        assert!(matches!(Wanted::Sftp.watch(), Some(Watch::Sftp(_))));
        assert!(matches!(
            Wanted::Exec("scp -f /etc/hosts".into()).watch(),
            Some(Watch::Scp(_))
        ));
        assert!(Wanted::Exec("cat /etc/hosts".into()).watch().is_none());
        assert!(Wanted::Shell.watch().is_none());
    }
}
