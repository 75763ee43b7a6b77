//! Postfix's log, read (`replay --input maillog`; the sweep and the bounce breaker will read it
//! through the same parser): each line's stamp and program ([`stamp`]), what it says about a
//! queued message ([`event`]), the lines of one message joined ([`messages`]), and the inputs
//! read and merged by time ([`read`]). Nothing here decides anything.

pub mod event;
pub mod messages;
pub mod read;
pub mod stamp;

pub use event::{Event, Status};
pub use messages::{Delivery, Message, Origin};
pub use read::{Log, Source, read};
