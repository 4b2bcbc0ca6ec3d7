//! Checked newtypes: device numbers, sectors, ABI versions.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::abi::RawDevno;

/// A block device number, shown as `MAJ:MIN` (the form dm tables accept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevNo {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl DevNo {
    /// A device number from its two halves.
    pub const fn new(major: u32, minor: u32) -> Self {
        DevNo { major, minor }
    }

    /// `0:0`, which the ABI uses for "none".
    pub const fn is_none(self) -> bool {
        self.major == 0 && self.minor == 0
    }

    /// From a libc `dev_t` (`st_rdev`).
    pub fn from_dev_t(dev: u64) -> Self {
        DevNo::new(
            nix::sys::stat::major(dev) as u32,
            nix::sys::stat::minor(dev) as u32,
        )
    }

    /// To a libc `dev_t` (for `mknod`).
    pub fn to_dev_t(self) -> u64 {
        nix::sys::stat::makedev(self.major.into(), self.minor.into())
    }
}

impl From<RawDevno> for DevNo {
    fn from(r: RawDevno) -> Self {
        DevNo::new(r.major, r.minor)
    }
}

impl From<DevNo> for RawDevno {
    fn from(d: DevNo) -> Self {
        RawDevno {
            major: d.major,
            minor: d.minor,
        }
    }
}

impl fmt::Display for DevNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Parse error of [`DevNo`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a device number MAJ:MIN")]
pub struct ParseDevNoError(pub String);

impl FromStr for DevNo {
    type Err = ParseDevNoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDevNoError(s.to_string());
        let (maj, min) = s.split_once(':').ok_or_else(err)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(maj) || !digits(min) {
            return Err(err());
        }
        Ok(DevNo::new(
            maj.parse().map_err(|_| err())?,
            min.parse().map_err(|_| err())?,
        ))
    }
}

impl Serialize for DevNo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A count of 512-byte sectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Sectors(pub u64);

impl Sectors {
    /// Size in bytes, saturating.
    pub fn bytes(self) -> u64 {
        self.0.saturating_mul(512)
    }
}

impl fmt::Display for Sectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Sectors {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Sectors)
    }
}

/// An ABI version triple (`major.minor.patch`), compared like dm-ioctl's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Incompatible when different.
    pub major: u32,
    /// Backward-compatible additions.
    pub minor: u32,
    /// Compatible both ways.
    pub patch: u32,
}

impl Version {
    /// The version this library was built with (from the uapi header).
    pub const OURS: Version = Version {
        major: crate::abi::VERSION_MAJOR,
        minor: crate::abi::VERSION_MINOR,
        patch: crate::abi::VERSION_PATCH,
    };

    /// From the header's `version[3]`.
    pub const fn from_array(v: [u32; 3]) -> Self {
        Version {
            major: v[0],
            minor: v[1],
            patch: v[2],
        }
    }

    /// To the header's `version[3]`.
    pub const fn to_array(self) -> [u32; 3] {
        [self.major, self.minor, self.patch]
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devno_round_trips() {
        let d: DevNo = "253:12".parse().unwrap();
        assert_eq!(d, DevNo::new(253, 12));
        assert_eq!(d.to_string(), "253:12");
        assert_eq!(DevNo::from_dev_t(d.to_dev_t()), d);
        for bad in ["", "1", "1:", ":2", "a:b", "1:2:3", "-1:2", "1 :2"] {
            assert!(bad.parse::<DevNo>().is_err(), "{bad}");
        }
    }

    #[test]
    fn version_displays_dotted() {
        assert_eq!(Version::from_array([1, 2, 3]).to_string(), "1.2.3");
        assert_eq!(Version::OURS.to_array(), [1, 1, 0]);
    }
}
