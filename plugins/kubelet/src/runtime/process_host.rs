//! Host-side helpers of the process runtime: the shell wrapper a container starts
//! through (join its cgroups, bind-mount its volumes, change directory, exec), the
//! executable lookup behind `StartError`, mount points under a pod directory, and the
//! removal of a container's log files.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Mount;

/// The mount points of this mount namespace (`/proc/self/mountinfo`, field 5).
fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .collect()
}

/// True when `dir` is a mount point (e.g. an emptyDir's tmpfs).
pub fn is_mount_point(dir: &Path) -> bool {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    mount_points().contains(&dir)
}

/// Unmounts (lazily) every mount below `dir` before the directory is removed.
pub(super) fn unmount_below(dir: &Path) {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut below: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&dir))
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in below {
        match Command::new("umount").arg("-l").arg(&m).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                tracing::warn!(mount = %m.display(), error = %String::from_utf8_lossy(&out.stderr).trim(), "unmounting a pod volume failed")
            }
            Err(e) => {
                tracing::warn!(mount = %m.display(), error = %e, "unmounting a pod volume failed")
            }
        }
    }
}

/// Removes a container's log file and every file named after it (rotated logs, their
/// time marks).
pub(super) fn remove_logs(log: &Path) {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return;
    };
    let name = name.to_string_lossy();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(name.as_ref()) {
            if let Err(err) = std::fs::remove_file(e.path()) {
                tracing::debug!(file = %e.path().display(), error = %err, "removing a container log failed");
            }
        }
    }
}

/// True when `program` names an executable file, directly or through `path_var`.
pub(super) fn executable_exists(program: &str, path_var: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return is_exec(Path::new(program));
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .any(|d| is_exec(&Path::new(d).join(program)))
}

/// Quotes `s` for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The shell script that starts a container: join its cgroups, bind-mount each host
/// path at its container path (in its new mount namespace), change to the working
/// directory, exec the command.
pub(super) fn wrapper_script(
    cgroups: &[PathBuf],
    mounts: &[Mount],
    working_dir: Option<&str>,
) -> String {
    let mut script = String::from("set -e\n");
    for dir in cgroups {
        let procs = dir.join("cgroup.procs");
        script.push_str(&format!(
            "echo $$ > {}\n",
            sh_quote(&procs.to_string_lossy())
        ));
    }
    for m in mounts {
        let target = sh_quote(&m.container_path);
        let source = sh_quote(&m.host_path.to_string_lossy());
        if m.host_path.is_dir() {
            script.push_str(&format!("mkdir -p {target}\n"));
        } else {
            script.push_str(&format!(
                "mkdir -p \"$(dirname {target})\"; [ -e {target} ] || : > {target}\n"
            ));
        }
        script.push_str(&format!("mount --bind {source} {target}\n"));
        if m.read_only {
            script.push_str(&format!("mount -o remount,bind,ro {target}\n"));
        }
    }
    if let Some(w) = working_dir {
        script.push_str(&format!("cd {}\n", sh_quote(w)));
    }
    script.push_str("exec \"$@\"\n");
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn wrapper_script_should_quote_paths() {
        let mounts = [Mount {
            host_path: PathBuf::from("/nonexistent/it's"),
            container_path: "/etc/conf d".into(),
            read_only: true,
        }];
        let script = wrapper_script(&[], &mounts, Some("/w"));
        assert!(
            script.contains("mount --bind '/nonexistent/it'\\''s' '/etc/conf d'"),
            "{script}"
        );
        assert!(
            script.contains("mount -o remount,bind,ro '/etc/conf d'"),
            "{script}"
        );
        assert!(script.ends_with("cd '/w'\nexec \"$@\"\n"), "{script}");
    }
}
