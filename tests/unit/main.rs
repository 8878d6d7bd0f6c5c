//! The unit tier beside `cargo test --bins`: checks of the source tree and the documentation
//! that need no root and no binary.

mod layout;
