//! The `Message` trait: a typed request with a kind name and a reply type.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A typed message that plugins exchange through the kernel.
///
/// `KIND` is the routing key on the bus and the `kind` label of bus metrics; by
/// convention `<area>.<VerbNoun>` for commands (`echo.Add`) and past tense for
/// events. Messages are encoded with [`crate::codec`], which is not
/// self-describing: change a message only by appending fields or variants, or by
/// introducing a new kind.
pub trait Message: Serialize + DeserializeOwned {
    /// Routing key of this message.
    const KIND: &'static str;
    /// What a request of this message answers.
    type Reply: Serialize + DeserializeOwned;
}
