//! Network set-up inside a container's own network namespace.

use super::error::NativeError;
use super::rtnl::Rtnl;

/// Brings the loopback interface up in the current network namespace.
pub fn loopback_up() -> Result<(), NativeError> {
    let mut nl = Rtnl::open().map_err(NativeError::sys("netlink socket"))?;
    let lo = nl.index("lo").map_err(NativeError::sys("link lo"))?;
    nl.set_up(lo, None)
        .map_err(NativeError::sys("cannot set lo up"))
}
