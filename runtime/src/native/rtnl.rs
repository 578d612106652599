//! A small synchronous rtnetlink client for the single-threaded supervisor: the links
//! and addresses a container's network needs (a bridge, a veth pair whose peer is
//! created directly in the container's network namespace, an address, up), over
//! `netlink-sys` with messages from `netlink-packet-route`. The kernel's answers are
//! errno values, so "already exists" is `Errno::EEXIST`, not a localized message.
//!
//! A socket works in the network namespace it was created in: [`Rtnl::open`] in the
//! caller's; open it in a child that joined another namespace to act there.

use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;
use std::net::{IpAddr, Ipv4Addr};

/// A netlink route socket in the namespace it was opened in.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

/// An I/O error's errno, or `EIO` when it has none.
fn errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

impl Rtnl {
    /// Opens a route socket in the caller's network namespace.
    pub fn open() -> Result<Self, Errno> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(errno)?;
        socket.bind_auto().map_err(errno)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(errno)?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Sends `message` and waits for the kernel's answer: `Ok(Some(reply))` for a
    /// message, `Ok(None)` for an acknowledgement, the errno for a refusal.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Option<RouteNetlinkMessage>, Errno> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0).map_err(errno)?;
        let mut reply = None;
        loop {
            let (bytes, _) = self.socket.recv_from_full().map_err(errno)?;
            if let Some(end) = self.answer(&bytes, &mut reply)? {
                return end.map(|()| reply);
            }
        }
    }

    /// Reads one datagram of answers to the current request: a message is kept in
    /// `reply`; the acknowledgement (or refusal) that ends the answer is returned.
    fn answer(
        &self,
        mut bytes: &[u8],
        reply: &mut Option<RouteNetlinkMessage>,
    ) -> Result<Option<Result<(), Errno>>, Errno> {
        while !bytes.is_empty() {
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                .map_err(|_| Errno::EBADMSG)?;
            let len = (message.header.length as usize).max(16);
            bytes = bytes.get(len.next_multiple_of(4)..).unwrap_or_default();
            if message.header.sequence_number != self.seq {
                continue;
            }
            match message.payload {
                NetlinkPayload::Error(e) => {
                    return Ok(Some(match e.code {
                        None => Ok(()),
                        Some(code) => Err(Errno::from_raw(-code.get())),
                    }))
                }
                NetlinkPayload::InnerMessage(m) => *reply = Some(m),
                NetlinkPayload::Done(_) => return Ok(Some(Ok(()))),
                _ => {}
            }
        }
        Ok(None)
    }

    /// The index of the link `name`.
    pub fn index(&mut self, name: &str) -> Result<u32, Errno> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(RouteNetlinkMessage::GetLink(m), 0)? {
            Some(RouteNetlinkMessage::NewLink(link)) => Ok(link.header.index),
            _ => Err(Errno::ENODEV),
        }
    }

    /// Creates a link; `EEXIST` if one of that name exists.
    fn create(&mut self, link: LinkMessage) -> Result<(), Errno> {
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.request(RouteNetlinkMessage::NewLink(link), flags)
            .map(drop)
    }

    /// Creates the bridge `name`.
    pub fn add_bridge(&mut self, name: &str) -> Result<(), Errno> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.create(m)
    }

    /// Creates the veth pair `name` (here) and `peer`, the peer created directly in the
    /// network namespace `peer_netns`.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
    ) -> Result<(), Errno> {
        let mut other = LinkMessage::default();
        other.attributes.push(LinkAttribute::IfName(peer.into()));
        other
            .attributes
            .push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(other))),
        ]));
        self.create(m)
    }

    /// Sets link `index` up, and attaches it to the bridge `master` when given.
    pub fn set_up(&mut self, index: u32, master: Option<u32>) -> Result<(), Errno> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        if let Some(master) = master {
            m.attributes.push(LinkAttribute::Controller(master));
        }
        self.request(RouteNetlinkMessage::SetLink(m), 0).map(drop)
    }

    /// Adds `address/prefix` to link `index`; `EEXIST` if it has it.
    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> Result<(), Errno> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes
            .push(AddressAttribute::Local(IpAddr::V4(address)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(address)));
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.request(RouteNetlinkMessage::NewAddress(m), flags)
            .map(drop)
    }

    /// Adds the default route through `gateway` on link `index` (main table).
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), Errno> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Oif(index));
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.request(RouteNetlinkMessage::NewRoute(m), flags)
            .map(drop)
    }
}

/// `Ok` for success and for `EEXIST` (the thing is there already).
pub fn existing_is_fine(r: Result<(), Errno>) -> Result<(), Errno> {
    match r {
        Err(Errno::EEXIST) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a network namespace of its own (a forked child), so the host's links are
    /// never touched.
    fn in_new_netns(job: impl FnOnce() -> Result<(), Errno>) {
        if crate::test_needs_root("rtnl") {
            return;
        }
        super::super::forked::job_in_child(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(super::super::error::NativeError::sys("unshare"))?;
            job().map_err(super::super::error::NativeError::sys("rtnl"))
        })
        .unwrap();
    }

    #[test]
    fn links_and_addresses_are_made_and_existing_ones_are_eexist() {
        in_new_netns(|| {
            let mut nl = Rtnl::open()?;
            let lo = nl.index("lo")?;
            nl.set_up(lo, None)?;
            nl.add_bridge("br-t")?;
            assert_eq!(nl.add_bridge("br-t"), Err(Errno::EEXIST));
            let br = nl.index("br-t")?;
            let addr = Ipv4Addr::new(10, 9, 0, 1);
            nl.add_address(br, addr, 24)?;
            assert_eq!(nl.add_address(br, addr, 24), Err(Errno::EEXIST));
            existing_is_fine(nl.add_address(br, addr, 24))?;
            assert_eq!(nl.index("absent0"), Err(Errno::ENODEV));
            let here = std::fs::File::open("/proc/self/ns/net").map_err(errno)?;
            use std::os::fd::AsFd;
            nl.add_veth("vt0", "vt0c", here.as_fd())?;
            let v = nl.index("vt0")?;
            nl.set_up(v, Some(br))?;
            let inner = nl.index("vt0c")?;
            nl.set_up(inner, None)?;
            nl.add_address(inner, Ipv4Addr::new(10, 9, 0, 2), 24)?;
            nl.add_default_route(inner, addr)?;
            assert_eq!(nl.add_default_route(inner, addr), Err(Errno::EEXIST));
            Ok(())
        });
    }
}
