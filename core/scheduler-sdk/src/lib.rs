//! C ABI and SDK for out-of-tree scheduler framework plugins (.so files).
