//! The three parties of replicated sharing.  Party `i` holds components
//! `(x_i, x_{i+1})` of `x = x_0 + x_1 + x_2`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Party(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("party index {0} is not 0, 1 or 2")]
pub struct InvalidParty(pub u8);

impl Party {
    pub const ALL: [Party; 3] = [Party(0), Party(1), Party(2)];

    pub fn new(index: u8) -> Result<Self, InvalidParty> {
        if index < 3 {
            Ok(Party(index))
        } else {
            Err(InvalidParty(index))
        }
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The party whose first component is this party's second one.
    pub fn next(self) -> Party {
        Party((self.0 + 1) % 3)
    }

    /// The party whose second component is this party's first one.
    pub fn prev(self) -> Party {
        Party((self.0 + 2) % 3)
    }
}

impl TryFrom<u8> for Party {
    type Error = InvalidParty;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        Party::new(v)
    }
}

impl From<Party> for u8 {
    fn from(p: Party) -> u8 {
        p.0
    }
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_form_a_cycle() {
        for p in Party::ALL {
            assert_eq!(p.next().prev(), p);
            assert_ne!(p.next(), p);
            assert_ne!(p.prev(), p);
            assert_ne!(p.next(), p.prev());
        }
        assert_eq!(Party::new(3), Err(InvalidParty(3)));
    }
}
