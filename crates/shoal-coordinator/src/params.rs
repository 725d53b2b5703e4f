//! Validation of per-request N/W/R against the cluster and the operator's limits.

use serde::{Deserialize, Serialize};

/// The operator's defaults and bounds for N, W and R.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestDefaults {
    pub n: u8,
    pub w: u8,
    pub r: u8,
    /// The largest N a client may ask for, whatever the cluster size.
    pub max_n: u8,
}

impl Default for RequestDefaults {
    fn default() -> Self {
        Self {
            n: 3,
            w: 2,
            r: 2,
            max_n: 5,
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ParamError {
    #[error("{param} must be at least 1")]
    Zero { param: &'static str },
    #[error("{param} = {value} is larger than n = {n}")]
    OverN { param: &'static str, value: u8, n: u8 },
    #[error("n = {n} is larger than the {members} members of the cluster")]
    OverMembers { n: u8, members: usize },
    #[error("n = {n} is larger than the configured maximum max_n = {max_n}")]
    OverMax { n: u8, max_n: u8 },
}

impl ParamError {
    /// The request parameter at fault, for the error body.
    pub fn param(&self) -> &'static str {
        match self {
            ParamError::Zero { param } | ParamError::OverN { param, .. } => param,
            ParamError::OverMembers { .. } | ParamError::OverMax { .. } => "n",
        }
    }
}

/// Resolve a request's N and its quorum (`which` is "w" or "r"), filling in defaults, and check
/// `1 <= quorum <= n <= min(members, max_n)`.
pub fn resolve(
    defaults: &RequestDefaults,
    members: usize,
    n: Option<u8>,
    quorum: Option<u8>,
    which: &'static str,
) -> Result<(u8, u8), ParamError> {
    let n = n.unwrap_or(defaults.n.min(members.min(u8::MAX as usize) as u8).max(1));
    let default_q = if which == "w" { defaults.w } else { defaults.r };
    let q = quorum.unwrap_or(default_q.min(n));
    if n == 0 {
        return Err(ParamError::Zero { param: "n" });
    }
    if q == 0 {
        return Err(ParamError::Zero { param: which });
    }
    if n > defaults.max_n {
        return Err(ParamError::OverMax {
            n,
            max_n: defaults.max_n,
        });
    }
    if n as usize > members {
        return Err(ParamError::OverMembers { n, members });
    }
    if q > n {
        return Err(ParamError::OverN {
            param: which,
            value: q,
            n,
        });
    }
    Ok((n, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_bounds() {
        let d = RequestDefaults::default();
        assert_eq!(resolve(&d, 3, None, None, "w"), Ok((3, 2)));
        assert_eq!(
            resolve(&d, 1, None, None, "r"),
            Ok((1, 1)),
            "defaults shrink to a small cluster"
        );
        assert_eq!(
            resolve(&d, 3, Some(2), Some(3), "w"),
            Err(ParamError::OverN {
                param: "w",
                value: 3,
                n: 2
            })
        );
        assert_eq!(
            resolve(&d, 3, Some(3), Some(0), "r"),
            Err(ParamError::Zero { param: "r" })
        );
        assert_eq!(
            resolve(&d, 3, Some(0), Some(1), "r"),
            Err(ParamError::Zero { param: "n" })
        );
        assert_eq!(
            resolve(&d, 3, Some(4), Some(1), "r"),
            Err(ParamError::OverMembers { n: 4, members: 3 })
        );
        assert_eq!(
            resolve(&d, 9, Some(6), Some(1), "r"),
            Err(ParamError::OverMax { n: 6, max_n: 5 })
        );
        assert_eq!(
            resolve(&d, 3, Some(1), None, "w"),
            Ok((1, 1)),
            "default quorum never exceeds n"
        );
    }
}
