//! Where vipnas finds its data files (`models/`, `boards/`): under the current
//! directory in a checkout, else where an installation put them, beside the
//! binary's prefix (`/usr/bin/vipnas` → `/usr/share/vipnas/`, the Debian
//! package's layout). So `vipnas run` and `vipnas predict --board rpi4` work
//! from any directory on a board that installed the package.

use std::path::{Path, PathBuf};

/// `rel` itself when it is absolute or exists; else `PREFIX/share/vipnas/rel`
/// when that exists; else `rel` (whose error then names the path asked for).
pub fn data_path(rel: &Path) -> PathBuf {
    if rel.is_absolute() || rel.exists() {
        return rel.to_path_buf();
    }
    std::env::current_exe().ok().and_then(|exe| installed(&exe, rel)).unwrap_or_else(|| rel.to_path_buf())
}

fn installed(exe: &Path, rel: &Path) -> Option<PathBuf> {
    let p = exe.parent()?.parent()?.join("share/vipnas").join(rel);
    p.exists().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_wins_then_the_installation() {
        let prefix = tempfile::tempdir().unwrap();
        let exe = prefix.path().join("bin/vipnas");
        let model = prefix.path().join("share/vipnas/models/m");
        std::fs::create_dir_all(&model).unwrap();
        assert_eq!(installed(&exe, Path::new("models/m")), Some(model));
        assert_eq!(installed(&exe, Path::new("models/other")), None);
        // The tests run in the checkout: its boards/ is found as given.
        assert_eq!(data_path(Path::new("boards")), PathBuf::from("boards"));
        assert_eq!(data_path(Path::new("no/such/dir")), PathBuf::from("no/such/dir"));
    }
}
