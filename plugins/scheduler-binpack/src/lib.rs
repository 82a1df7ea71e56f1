//! Out-of-tree scheduler score plugin: bin packing (MostAllocated-like).
