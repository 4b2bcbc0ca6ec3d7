//! Device-mapper: tables with `[interpose]DEV`, the checks that keep a table
//! from looping into its own interposer, and the [`DeviceMapper`] trait with
//! its real implementation [`Dm`] over the `devicemapper` crate.

pub mod check;
pub mod mapper;
pub mod path;
pub mod real;
pub mod table;

pub use mapper::{DeviceMapper, DmDevice};
pub use path::InterposePath;
pub use real::Dm;
pub use table::{Arg, Table, TableLine};
