//! Running as `[daemon] user` without systemd, the way Postfix's own daemons do: started as root,
//! `serve` binds its sockets, gives them to that user, writes its pid file, and then, before any
//! thread is started, drops to the user (supplementary groups, then gid, then uid) and checks
//! that the drop took.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, getegid, geteuid, getgid, getgroups, getuid, initgroups, setgid, setuid};

use crate::config::DaemonUser;

/// Why the drop failed (the daemon does not start: it never runs as root by mistake).
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot switch to user {user}: {step}: {source}")]
    Switch { user: String, step: &'static str, source: nix::Error },
    #[error("switched to user {user}, but the process still has {what}: refusing to run")]
    Kept { user: String, what: String },
    #[error("pid file {path}: {source}")]
    PidFile { path: PathBuf, source: std::io::Error },
}

/// What the start does about `[daemon] user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Switch {
    /// No user configured, or already running as it.
    Stay,
    /// Root, with a user configured: drop to it.
    To(DaemonUser),
    /// A user configured, but started as another one that is not root: it cannot switch and
    /// runs on as it is (said in the log).
    Cannot { user: String, uid: u32 },
}

impl Switch {
    /// What to do for `user`, started as `uid`.
    #[must_use]
    pub fn decide(user: Option<&DaemonUser>, uid: u32) -> Self {
        match user {
            None => Self::Stay,
            Some(u) if u.uid == uid => Self::Stay,
            Some(u) if uid == 0 => Self::To(u.clone()),
            Some(u) => Self::Cannot { user: u.name.clone(), uid },
        }
    }

    /// The owner the sockets and the pid file's directory get before the drop.
    #[must_use]
    pub fn owner(&self) -> Option<u32> {
        match self {
            Self::To(u) => Some(u.uid),
            Self::Stay | Self::Cannot { .. } => None,
        }
    }
}

/// Drops to `user` for good: its groups (from the group database), its gid, then its uid; then
/// checks that no root id is left and that root cannot be taken back.
///
/// # Errors
/// Any step that fails, or a drop that did not take.
pub fn drop_to(user: &DaemonUser) -> Result<(), PrivilegeError> {
    let fail =
        |step: &'static str| move |source| PrivilegeError::Switch { user: user.name.clone(), step, source };
    let name = CString::new(user.name.as_str()).map_err(|_| PrivilegeError::Switch {
        user: user.name.clone(),
        step: "its name",
        source: nix::Error::EINVAL,
    })?;
    let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    initgroups(&name, gid).map_err(fail("setting its supplementary groups"))?;
    setgid(gid).map_err(fail("setgid"))?;
    setuid(uid).map_err(fail("setuid"))?;
    let kept = |what: String| PrivilegeError::Kept { user: user.name.clone(), what };
    if getuid() != uid || geteuid() != uid {
        return Err(kept(format!("uid {} (effective {})", getuid(), geteuid())));
    }
    if getgid() != gid || getegid() != gid {
        return Err(kept(format!("gid {} (effective {})", getgid(), getegid())));
    }
    if user.gid != 0 && getgroups().is_ok_and(|groups| groups.contains(&Gid::from_raw(0))) {
        return Err(kept("the supplementary group root".into()));
    }
    if user.uid != 0 && setuid(Uid::from_raw(0)).is_ok() {
        return Err(kept("the power to become root again".into()));
    }
    Ok(())
}

/// The pid file: written once the sockets are bound, removed at exit if it still names this
/// process.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's ID to `path`. The file is made anew (a file or link already there is
    /// removed first, and one put there meanwhile fails the start): root never writes through a
    /// link the daemon's user could have left in its own directory.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn write(path: &Path) -> Result<Self, PrivilegeError> {
        let err = |source| PrivilegeError::PidFile { path: path.to_owned(), source };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(path).map_err(err)?;
        writeln!(file, "{}", std::process::id()).map_err(err)?;
        Ok(Self { path: path.to_owned() })
    }
}

impl std::ops::Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32) -> DaemonUser {
        DaemonUser { name: "email-ratelimit".into(), uid, gid: uid }
    }

    #[test]
    fn root_drops_the_user_stays_and_another_user_cannot() {
        assert_eq!(Switch::decide(None, 0), Switch::Stay);
        assert_eq!(Switch::decide(Some(&user(998)), 0), Switch::To(user(998)));
        assert_eq!(Switch::decide(Some(&user(998)), 0).owner(), Some(998));
        assert_eq!(Switch::decide(Some(&user(998)), 998), Switch::Stay);
        assert_eq!(
            Switch::decide(Some(&user(998)), 1000),
            Switch::Cannot { user: "email-ratelimit".into(), uid: 1000 }
        );
    }

    #[test]
    fn the_pid_file_is_made_anew_and_removed_only_while_it_is_ours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("erl.pid");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep me\n").expect("target");
        std::os::unix::fs::symlink(&target, &path).expect("a link where the pid file goes");
        let pid = PidFile::write(&path).expect("written");
        assert_eq!(
            std::fs::read_to_string(&target).expect("target"),
            "keep me\n",
            "not written through the link"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("pid"), format!("{}\n", std::process::id()));
        drop(pid);
        assert!(!path.exists(), "removed at exit");
        let pid = PidFile::write(&path).expect("written");
        std::fs::write(&path, "1\n").expect("another instance's");
        drop(pid);
        assert!(path.exists(), "another process's pid file is left alone");
    }
}
