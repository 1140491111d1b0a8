//! Files and folders only the node's own user may read: log segments, the spool, the index
//! and daily text files hold what clients did (client ids, topics, addresses), so they are
//! made 0600 (folders 0700) like the rest of a node's state, whatever the umask.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `dir` and its missing parents, the ones created with mode 0700. A folder that is
/// already there keeps its mode (the operator chose it).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// Options that create a file with mode 0600 (an existing file keeps its mode).
pub fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
}

/// Opens `path` to append, creating it 0600; a file already there that others may read (made
/// by an older version, or by hand) is made 0600 too, as it will hold the same events.
pub fn open_private_append(path: &Path) -> io::Result<std::fs::File> {
    let file = private_file().create(true).append(true).open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(file)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn new_files_and_folders_are_private_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        create_private_dir(&dir).unwrap(); // again: already there
        let file = dir.join("f");
        private_file()
            .create(true)
            .append(true)
            .open(&file)
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn a_file_others_may_read_is_made_private_when_opened_to_append() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("old.seg");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_private_append(&file).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
