//! Listeners: takes systemd's sockets, or binds the configured Unix socket (and an optional
//! TCP one). Binding never changes a file by a path that could have been swapped: the mode is
//! set through the umask before `bind`, the group is changed without following links, and the
//! inode is checked to be the socket this process created.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

use crate::config::{ListenSettings, SocketGroup};

/// What to do when the socket's group cannot be set (not root, and not a member of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupChange {
    /// The bind fails.
    Required,
    /// The socket keeps the process's own group; the caller is told (to warn).
    BestEffort,
}

/// Listener setup faults (fatal at startup).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("{0} is in use by a running process")]
    InUse(PathBuf),
    #[error(
        "{0} was replaced while the socket was being set up (a symlink or another file); refusing to use it"
    )]
    Swapped(PathBuf),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

fn io_err(path: impl std::fmt::Display) -> impl FnOnce(io::Error) -> ServerError {
    move |source| ServerError::Io { path: path.to_string(), source }
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    Unix(UnixListener, Option<OwnedSocket>),
    Tcp(TcpListener),
}

/// A socket file this process created, removed on exit unless someone replaced it meanwhile.
#[derive(Debug)]
pub struct OwnedSocket {
    path: PathBuf,
    inode: (u64, u64),
}

impl Drop for OwnedSocket {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.inode
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Listener {
    /// Where it listens, for logs.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Unix(l, _) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix:(systemd)".into()),
            Self::Tcp(l) => l.local_addr().map_or_else(|_| "tcp".into(), |a| format!("inet:{a}")),
        }
    }

    /// The path of the socket file this process made (not one systemd handed over).
    #[must_use]
    pub fn owned_path(&self) -> Option<&Path> {
        match self {
            Self::Unix(_, Some(owned)) => Some(&owned.path),
            Self::Unix(_, None) | Self::Tcp(_) => None,
        }
    }

    /// The socket file's path, for a Unix listener bound to one.
    #[must_use]
    pub fn unix_path(&self) -> Option<PathBuf> {
        match self {
            Self::Unix(l, _) => l.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_owned)),
            Self::Tcp(_) => None,
        }
    }
}

/// The listeners: the policy ones and those set aside by name.
#[derive(Debug, Default)]
pub struct Bound {
    pub listeners: Vec<Listener>,
    /// Whether the sockets came from systemd.
    pub activated: bool,
    /// systemd's sockets whose `FileDescriptorName` was asked for, by name.
    pub named: Vec<(String, Listener)>,
}

/// Takes systemd's sockets (`LISTEN_FDS`) when there are any, else binds the configured ones.
/// systemd's sockets named (`FileDescriptorName=`, `LISTEN_FDNAMES`) as one of `set_aside` are
/// handed back apart, for another listener (the milter's).
///
/// # Errors
/// [`ServerError`] when a socket cannot be bound or a path is not a socket.
pub fn bind(settings: &ListenSettings, set_aside: &[&str]) -> Result<Bound, ServerError> {
    let (activated, named): (Vec<_>, Vec<_>) =
        from_systemd()?.into_iter().partition(|(name, _)| !set_aside.contains(&name.as_str()));
    if !activated.is_empty() || !named.is_empty() {
        return Ok(Bound {
            listeners: activated.into_iter().map(|(_, l)| l).collect(),
            activated: true,
            named,
        });
    }
    let group = settings.socket_group.as_ref();
    let socket = Endpoint::Unix {
        path: &settings.socket,
        mode: Some(settings.socket_mode),
        group,
        change: GroupChange::Required,
    };
    let mut listeners = vec![socket.bind()?.0];
    if let Some(addr) = settings.tcp {
        listeners.push(Endpoint::Tcp(addr).bind()?.0);
    }
    Ok(Bound { listeners, activated: false, named })
}

/// Where one listener is bound: a socket file or a TCP address. The policy service, the milter
/// and the metrics endpoint are all bound through it.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    /// A socket file with its mode (`None`: the process's umask decides, as for a plain bind)
    /// and group; with [`GroupChange::BestEffort`], a group this process may not use leaves the
    /// socket in its own group, and the reason comes back with the listener.
    Unix {
        path: &'a Path,
        mode: Option<u32>,
        group: Option<&'a SocketGroup>,
        change: GroupChange,
    },
    Tcp(std::net::SocketAddr),
}

impl Endpoint<'_> {
    /// Binds it: the listener, and what a best-effort group change could not do.
    ///
    /// # Errors
    /// As [`bind`].
    pub fn bind(self) -> Result<(Listener, Option<String>), ServerError> {
        match self {
            Self::Unix { path, mode, group, change } => bind_unix(path, mode, group, change, || {}),
            Self::Tcp(addr) => {
                let std = std::net::TcpListener::bind(addr).map_err(io_err(addr))?;
                std.set_nonblocking(true).map_err(io_err(addr))?;
                Ok((Listener::Tcp(TcpListener::from_std(std).map_err(io_err(addr))?), None))
            }
        }
    }
}

/// systemd's sockets with their names (`LISTEN_FDNAMES`; `""` when unnamed).
fn from_systemd() -> Result<Vec<(String, Listener)>, ServerError> {
    let names: Vec<String> =
        std::env::var("LISTEN_FDNAMES").unwrap_or_default().split(':').map(str::to_owned).collect();
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = Vec::new();
    for i in 0..fds.len() {
        let what = format!("systemd socket {i}");
        let name = names.get(i).cloned().unwrap_or_default();
        if let Ok(Some(l)) = fds.take_unix_listener(i) {
            l.set_nonblocking(true).map_err(io_err(&what))?;
            out.push((name, Listener::Unix(UnixListener::from_std(l).map_err(io_err(&what))?, None)));
        } else if let Some(l) = fds.take_tcp_listener(i).map_err(io_err(&what))? {
            l.set_nonblocking(true).map_err(io_err(&what))?;
            out.push((name, Listener::Tcp(TcpListener::from_std(l).map_err(io_err(&what))?)));
        }
    }
    Ok(out)
}

/// Binds the socket file. `after_bind` runs between `bind` and the ownership change: a test
/// swaps the path there, as an attacker with write access to the directory could.
fn bind_unix(
    path: &Path,
    mode: Option<u32>,
    group: Option<&SocketGroup>,
    change: GroupChange,
    after_bind: impl FnOnce(),
) -> Result<(Listener, Option<String>), ServerError> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A socket someone still answers on is a second instance, not a stale file.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(io_err(&shown))?;
        }
        Ok(_) => return Err(ServerError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&shown)(e)),
    }
    // The mode comes from the umask at bind time: no window with a wider mode, and no chmod
    // by path afterwards (which would follow a symlink put there meanwhile).
    let bind = || std::os::unix::net::UnixListener::bind(path);
    let std = match mode {
        Some(mode) => with_umask(!mode & 0o777, bind),
        None => bind(),
    }
    .map_err(io_err(&shown))?;
    let ours = own_socket(path)?;
    // From here on the file is ours: removed again if anything below fails.
    let owned = OwnedSocket { path: path.to_owned(), inode: ours };
    after_bind();
    let mut note = None;
    if let Some(group) = group {
        // lchown: the link itself if the path was swapped for one, never its target.
        match std::os::unix::fs::lchown(path, None, Some(group.gid)) {
            Ok(()) => {}
            Err(e) if change == GroupChange::BestEffort && e.kind() == io::ErrorKind::PermissionDenied => {
                note = Some(format!(
                    "{shown}: group {} not set ({}: this process is neither root nor a member); the socket keeps the process's own group",
                    group.name,
                    crate::oserror::plain(&e)
                ));
            }
            Err(e) => return Err(io_err(&shown)(e)),
        }
        if own_socket(path)? != ours {
            return Err(ServerError::Swapped(path.to_owned()));
        }
    }
    std.set_nonblocking(true).map_err(io_err(&shown))?;
    let listener = UnixListener::from_std(std).map_err(io_err(&shown))?;
    Ok((Listener::Unix(listener, Some(owned)), note))
}

/// The (device, inode) of the socket at `path`, if it is a socket this user owns.
fn own_socket(path: &Path) -> Result<(u64, u64), ServerError> {
    let meta = std::fs::symlink_metadata(path).map_err(|_| ServerError::Swapped(path.to_owned()))?;
    if !meta.file_type().is_socket() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(ServerError::Swapped(path.to_owned()));
    }
    Ok((meta.dev(), meta.ino()))
}

/// Runs `f` with the process umask set to `mask`, then restores it. Only at startup, before
/// any other thread creates files.
fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    use nix::sys::stat::{Mode, umask};
    // The umask is the process's: two binds at once (tests) must not restore each other's.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let old = umask(Mode::from_bits_truncate(mask));
    let out = f();
    umask(old);
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::SocketGroup;

    fn bind_strict(
        path: &Path,
        group: Option<&SocketGroup>,
        after_bind: impl FnOnce(),
    ) -> Result<Listener, ServerError> {
        bind_unix(path, Some(0o660), group, GroupChange::Required, after_bind).map(|(l, _)| l)
    }

    /// A group other than the process's own, to see a change of group.
    fn other_group() -> Option<SocketGroup> {
        let mine = nix::unistd::getegid().as_raw();
        ["nogroup", "daemon", "mail", "users", "adm"].iter().find_map(|name| {
            let g = nix::unistd::Group::from_name(name).ok().flatten()?;
            (g.gid.as_raw() != mine).then(|| SocketGroup { name: (*name).to_owned(), gid: g.gid.as_raw() })
        })
    }

    #[tokio::test]
    async fn the_socket_is_born_with_its_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.sock");
        let listener = bind_strict(&path, None, || {
            let mode = std::fs::symlink_metadata(dir.path().join("policy.sock"))
                .expect("bound")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o660, "right after bind, before any chmod");
        })
        .expect("bind");
        assert_eq!(std::fs::symlink_metadata(&path).expect("socket").permissions().mode() & 0o777, 0o660);
        drop(listener);
        assert!(!path.exists(), "removed on drop");
    }

    #[tokio::test]
    async fn a_path_swapped_for_a_symlink_is_refused_and_its_target_untouched() {
        let Some(group) = other_group() else {
            assert!(std::env::var_os("CI").is_none(), "CI machines have a nogroup group");
            eprintln!("SKIPPED: no second group to test with");
            return;
        };
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: changing a socket's group to {} needs root", group.name);
            assert!(std::env::var_os("CI").is_none(), "CI runs the suite as root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("shadow");
        std::fs::write(&victim, "secret").expect("victim");
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let before = std::fs::metadata(&victim).expect("victim");
        let path = dir.path().join("policy.sock");
        let swap = || {
            std::fs::remove_file(&path).expect("remove the socket");
            std::os::unix::fs::symlink(&victim, &path).expect("symlink");
        };
        let e = bind_strict(&path, Some(&group), swap).expect_err("swapped");
        assert!(matches!(e, ServerError::Swapped(_)), "{e}");
        let after = std::fs::metadata(&victim).expect("victim");
        assert_eq!((after.mode(), after.gid(), after.uid()), (before.mode(), before.gid(), before.uid()));
    }

    #[tokio::test]
    async fn the_group_is_set_on_the_socket() {
        let (Some(group), true) = (other_group(), nix::unistd::geteuid().is_root()) else {
            assert!(std::env::var_os("CI").is_none(), "CI runs the suite as root");
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.sock");
        let gid = group.gid;
        let _l = bind_strict(&path, Some(&group), || {}).expect("bind");
        let meta = std::fs::symlink_metadata(&path).expect("socket");
        assert_eq!((meta.gid(), meta.mode() & 0o777), (gid, 0o660));
    }
}
