//! The go-plugin process protocol, in one place: magic cookie, protocol version
//! negotiation, the private socket directory, the handshake line, signals and the
//! orderly exit.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::logging;
use super::PluginError;

pub(crate) const MAGIC_COOKIE_KEY: &str = "NOMAD_PLUGIN_MAGIC_COOKIE";
pub(crate) const MAGIC_COOKIE_VALUE: &str =
    "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255";

/// go-plugin's own protocol version (handshake field 1).
const CORE_PROTOCOL_VERSION: u32 = 1;
/// The Nomad plugin API protocol (handshake field 2); Nomad accepts only 2.
pub(crate) const APP_PROTOCOL_VERSION: u32 = 2;

pub(crate) const PROTOCOL_VERSIONS_ENV: &str = "PLUGIN_PROTOCOL_VERSIONS";
const SOCKET_DIR_ENV: &str = "PLUGIN_UNIX_SOCKET_DIR";
const SOCKET_GROUP_ENV: &str = "PLUGIN_UNIX_SOCKET_GROUP";

const SOCKET_FILE: &str = "plugin.sock";
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// How long in-flight calls get to finish once an exit was asked for. The agent kills the
/// plugin 2 s after `GRPCController.Shutdown`; long-lived streams never finish on their
/// own, so they are cut after this.
pub(crate) const EXIT_GRACE: Duration = Duration::from_millis(1000);

/// Whether the Nomad agent launched this process (its magic cookie is in the environment).
pub fn is_launched_by_nomad() -> bool {
    std::env::var_os(MAGIC_COOKIE_KEY).is_some_and(|value| value == MAGIC_COOKIE_VALUE)
}

/// Picks the app protocol version from the agent's `PLUGIN_PROTOCOL_VERSIONS`. Unset
/// means the agent did not negotiate: go-plugin then uses the plugin's own version.
pub(crate) fn negotiate_protocol(offered: Option<&str>) -> Result<u32, PluginError> {
    let Some(offered) = offered.filter(|text| !text.trim().is_empty()) else {
        return Ok(APP_PROTOCOL_VERSION);
    };
    let accepted = offered
        .split(',')
        .any(|version| version.trim().parse::<u32>() == Ok(APP_PROTOCOL_VERSION));
    if accepted {
        Ok(APP_PROTOCOL_VERSION)
    } else {
        Err(PluginError::IncompatibleProtocol {
            offered: offered.to_string(),
        })
    }
}

/// The line that tells the agent where to connect: `1|2|unix|<path>|grpc`.
pub(crate) fn handshake_line(app_version: u32, socket: &Path) -> String {
    format!(
        "{CORE_PROTOCOL_VERSION}|{app_version}|unix|{}|grpc\n",
        socket.display()
    )
}

/// The plugin's listening socket inside a private directory that is removed (with the
/// socket) when this value is dropped.
pub(crate) struct PluginSocket {
    dir: tempfile::TempDir,
}

impl PluginSocket {
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join(SOCKET_FILE)
    }

    /// Creates the private directory in `PLUGIN_UNIX_SOCKET_DIR` (or the temp dir) and
    /// listens on a socket in it. With `PLUGIN_UNIX_SOCKET_GROUP`, the directory and socket
    /// are handed to that group, as go-plugin does.
    pub(crate) async fn listen() -> Result<(PluginSocket, UnixListener), PluginError> {
        let base = std::env::var_os(SOCKET_DIR_ENV)
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let group = std::env::var_os(SOCKET_GROUP_ENV).filter(|g| !g.is_empty());
        let prepared = tokio::task::spawn_blocking(move || private_dir(&base, group.as_ref()))
            .await
            .map_err(|e| PluginError::SocketDir {
                dir: PathBuf::new(),
                source: std::io::Error::other(e),
            })??;
        let (dir, gid) = prepared;
        let path = dir.path().join(SOCKET_FILE);
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(PluginError::SocketPathTooLong { path });
        }
        let listener = UnixListener::bind(&path).map_err(|source| PluginError::Listen {
            path: path.clone(),
            source,
        })?;
        if let Some(gid) = gid {
            let socket = path.clone();
            tokio::task::spawn_blocking(move || share_with_group(&socket, gid, 0o660))
                .await
                .map_err(|e| PluginError::SocketGroup {
                    path: path.clone(),
                    reason: e.to_string(),
                })??;
        }
        Ok((PluginSocket { dir }, listener))
    }
}

type PreparedDir = (tempfile::TempDir, Option<nix::unistd::Gid>);

fn private_dir(base: &Path, group: Option<&OsString>) -> Result<PreparedDir, PluginError> {
    let dir_error = |source| PluginError::SocketDir {
        dir: base.to_path_buf(),
        source,
    };
    // Only the agent's user may reach the socket.
    let dir = tempfile::Builder::new()
        .prefix("plugin")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(base)
        .map_err(dir_error)?;
    let Some(group) = group else {
        return Ok((dir, None));
    };
    let gid = resolve_group(group).map_err(|reason| PluginError::SocketGroup {
        path: dir.path().to_path_buf(),
        reason,
    })?;
    share_with_group(dir.path(), gid, 0o750)?;
    Ok((dir, Some(gid)))
}

fn resolve_group(group: &OsString) -> Result<nix::unistd::Gid, String> {
    let text = group
        .to_str()
        .ok_or_else(|| format!("group {group:?} is not valid UTF-8"))?;
    if let Ok(gid) = text.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(gid));
    }
    match nix::unistd::Group::from_name(text) {
        Ok(Some(found)) => Ok(found.gid),
        Ok(None) => Err(format!("no group named {text:?}")),
        Err(e) => Err(format!("cannot look up group {text:?}: {e}")),
    }
}

fn share_with_group(path: &Path, gid: nix::unistd::Gid, mode: u32) -> Result<(), PluginError> {
    let fail = |reason: String| PluginError::SocketGroup {
        path: path.to_path_buf(),
        reason,
    };
    nix::unistd::chown(path, None, Some(gid)).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail(e.to_string()))
}

/// Prints the handshake and then points fd 1 at /dev/null: the agent only drains stdout
/// afterwards, and a stray write after the agent died would otherwise fail with EPIPE.
pub(crate) fn announce(app_version: u32, socket: &Path) -> Result<(), PluginError> {
    let line = handshake_line(app_version, socket);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(PluginError::Handshake)?;
    drop(stdout);
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        let _ = nix::unistd::dup2(null.as_raw_fd(), libc::STDOUT_FILENO);
    }
    Ok(())
}

/// SIGINT reaches the plugin whenever an operator presses Ctrl-C on a foreground agent;
/// the agent then shuts the plugin down itself, so the signal is only logged. SIGTERM
/// asks for the same orderly exit as `GRPCController.Shutdown`.
pub(crate) fn watch_signals(exit: CancellationToken) -> Result<(), PluginError> {
    let mut interrupts = signal(SignalKind::interrupt()).map_err(PluginError::Signals)?;
    let mut terminations = signal(SignalKind::terminate()).map_err(PluginError::Signals)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = interrupts.recv() => {
                    logging::debug("ignoring SIGINT; the agent shuts plugins down itself", &[]);
                }
                Some(()) = terminations.recv() => {
                    logging::info("SIGTERM received, exiting", &[]);
                    exit.cancel();
                }
                () = exit.cancelled() => break,
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_negotiation() {
        assert_eq!(negotiate_protocol(None).unwrap(), 2);
        assert_eq!(negotiate_protocol(Some("")).unwrap(), 2);
        assert_eq!(negotiate_protocol(Some("2")).unwrap(), 2);
        assert_eq!(negotiate_protocol(Some("1, 2,3")).unwrap(), 2);
        let err = negotiate_protocol(Some("1,3")).unwrap_err();
        assert!(
            matches!(err, PluginError::IncompatibleProtocol { ref offered } if offered == "1,3")
        );
        assert!(err.to_string().contains("1,3"));
        assert!(negotiate_protocol(Some("x")).is_err());
    }

    #[test]
    fn handshake_line_format() {
        let line = handshake_line(2, Path::new("/tmp/pluginAbc/plugin.sock"));
        assert_eq!(line, "1|2|unix|/tmp/pluginAbc/plugin.sock|grpc\n");
        let fields: Vec<&str> = line.trim().split('|').collect();
        assert_eq!(fields.len(), 5);
    }

    #[tokio::test]
    async fn socket_lives_in_a_private_dir_removed_on_drop() {
        let base = tempfile::tempdir().unwrap();
        std::env::set_var(SOCKET_DIR_ENV, base.path());
        let (socket, listener) = PluginSocket::listen().await.unwrap();
        std::env::remove_var(SOCKET_DIR_ENV);
        let dir = socket.path().parent().unwrap().to_path_buf();
        assert_eq!(dir.parent().unwrap(), base.path());
        assert!(dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("plugin"));
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        tokio::net::UnixStream::connect(socket.path())
            .await
            .unwrap();
        drop(listener);
        drop(socket);
        assert!(!dir.exists());
    }
}
