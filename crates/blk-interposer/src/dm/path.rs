//! `[interpose]DEV`: the table argument that means "the device DEV itself,
//! beneath the interposer".

use std::fmt;
use std::path::{Path, PathBuf};

/// The marker in front of the interposed device in a table argument.
pub const MARKER: &str = "[interpose]";

/// The device of an `[interpose]DEV` argument: a path (`/dev/vdb`, a
/// `/dev/disk/by-id/...` symlink) or a `MAJ:MIN`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InterposePath(PathBuf);

impl InterposePath {
    /// `Some` when `arg` is `[interpose]DEV` with a non-empty DEV.
    /// `Some(Err)` for a bare `[interpose]`.
    pub fn from_arg(arg: &str) -> Option<Result<InterposePath, &'static str>> {
        let rest = arg.strip_prefix(MARKER)?;
        Some(if rest.is_empty() {
            Err("`[interpose]` needs a device right after it, e.g. `[interpose]/dev/sdX`")
        } else {
            Ok(InterposePath(PathBuf::from(rest)))
        })
    }

    /// An `[interpose]` argument for `dev`.
    pub fn new(dev: impl Into<PathBuf>) -> Self {
        InterposePath(dev.into())
    }

    /// The device as written, without the marker.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl fmt::Display for InterposePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MARKER}{}", self.0.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_marker() {
        let p = InterposePath::from_arg("[interpose]/dev/vdb")
            .unwrap()
            .unwrap();
        assert_eq!(p.path(), Path::new("/dev/vdb"));
        assert_eq!(p.to_string(), "[interpose]/dev/vdb");
        assert!(InterposePath::from_arg("/dev/vdb").is_none());
        assert!(InterposePath::from_arg("[interpose]").unwrap().is_err());
    }
}
