//! Out-of-tree scheduler score plugin: spread pods over the values of a node label (zone).
