//! Dots: the unique name of one write event.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One write event: the `counter`-th write coordinated by `actor`.
///
/// Actors are node ids (such as `"n1"`). Only the node named by `actor`
/// ever mints dots for it, and it always picks a counter above every counter
/// of its own it has seen, so a dot names exactly one write cluster-wide.
/// Counters start at 1; 0 means "nothing seen" in a [`VersionVector`] and is
/// never a valid dot.
///
/// The derived ordering (actor, then counter) is only a canonical sort order
/// for sibling sets; it says nothing about causality.
///
/// [`VersionVector`]: crate::VersionVector
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dot {
    pub actor: String,
    pub counter: u64,
}

impl Dot {
    /// Builds a dot. Does not check `counter >= 1`; sets that arrive from
    /// outside are checked by `SiblingSet::validate`.
    pub fn new(actor: impl Into<String>, counter: u64) -> Self {
        Dot {
            actor: actor.into(),
            counter,
        }
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.actor, self.counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_actor_then_counter() {
        let mut dots = vec![Dot::new("n2", 1), Dot::new("n1", 7), Dot::new("n1", 2)];
        dots.sort();
        assert_eq!(dots, vec![Dot::new("n1", 2), Dot::new("n1", 7), Dot::new("n2", 1)]);
    }

    #[test]
    fn displays_as_actor_colon_counter() {
        assert_eq!(Dot::new("n3", 42).to_string(), "n3:42");
    }

    #[test]
    fn named_msgpack_round_trip() {
        let dot = Dot::new("n1", 9);
        let bytes = rmp_serde::to_vec_named(&dot).unwrap();
        assert_eq!(rmp_serde::from_slice::<Dot>(&bytes).unwrap(), dot);
    }
}
