//! The agent's I/O with the kernel: a request socket for dumps and changes, and a socket
//! subscribed to the link, address and route multicast groups for notifications.
//!
//! Both sockets are opened in the calling thread's network namespace, which is the pod's when
//! the agent runs as a sidecar (and a test's namespace in the tests).

pub mod decode;
pub mod messages;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::NetlinkMessage;
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use rtnetlink::{Handle, MulticastGroup};

use crate::observed::{Change, Observed};
use crate::plan::Action;

pub use decode::Event;

/// Receive buffer of the notification socket. Applying thousands of items produces as many
/// notifications in a burst; a large buffer makes overruns (and the resyncs they force) rare.
const NOTIFY_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// A netlink failure.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel refused a request.
    #[error("{operation}: {message} (errno {errno})")]
    Kernel {
        /// What was asked (`add address 10.1.0.2/24 on index 3`).
        operation: String,
        /// The positive errno.
        errno: i32,
        /// The errno's text (`No such device`).
        message: String,
    },
    /// The request could not be made or answered (socket closed, undecodable answer).
    #[error("{operation}: {source}")]
    Transport {
        /// What was asked.
        operation: String,
        /// The library's error.
        source: rtnetlink::Error,
    },
    /// A socket could not be opened or configured.
    #[error("opening a netlink socket: {0}")]
    Socket(#[from] std::io::Error),
}

impl NetlinkError {
    /// The kernel's errno, for kernel refusals.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    fn from_rtnetlink(operation: impl Into<String>, error: rtnetlink::Error) -> Self {
        let operation = operation.into();
        match &error {
            rtnetlink::Error::NetlinkError(message) if message.raw_code() != 0 => {
                let errno = -message.raw_code();
                NetlinkError::Kernel {
                    operation,
                    errno,
                    message: errno_text(errno),
                }
            }
            _ => NetlinkError::Transport {
                operation,
                source: error,
            },
        }
    }
}

/// The text of an errno without the " (os error N)" suffix std adds.
fn errno_text(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// Kernel notifications, in the order the kernel sent them.
pub struct Notifications {
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
}

impl Notifications {
    /// The next notification; `None` when the socket is gone.
    pub async fn next(&mut self) -> Option<Event> {
        self.messages
            .next()
            .await
            .map(|(message, _)| decode::event(&message))
    }

    /// A notification that is already queued, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.messages
            .try_recv()
            .ok()
            .map(|(message, _)| decode::event(&message))
    }
}

/// The request side: dumps and changes.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    protocol: u8,
}

/// Opens the notification socket first, then the request socket, so that nothing that happens
/// after the first dump can be missed. Must be called within a tokio runtime (the sockets'
/// drivers are spawned on it). `protocol` marks the routes and addresses the agent adds.
pub fn connect(protocol: u8) -> Result<(Netlink, Notifications), NetlinkError> {
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ];
    let (mut watch, _, messages) = rtnetlink::new_multicast_connection(&groups)?;
    watch
        .socket_mut()
        .socket_mut()
        .set_rx_buf_sz(NOTIFY_BUFFER_BYTES)?;
    tokio::spawn(watch);
    let (connection, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(connection);
    Ok((Netlink { handle, protocol }, Notifications { messages }))
}

impl Netlink {
    /// The agent's route and address protocol number.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Reads all links, addresses and routes.
    pub async fn dump(&self) -> Result<Observed, NetlinkError> {
        let mut observed = Observed::default();
        let mut links = self.handle.link().get().execute();
        while let Some(message) = links
            .try_next()
            .await
            .map_err(|e| NetlinkError::from_rtnetlink("dump links", e))?
        {
            if let Some(link) = decode::link(&message) {
                observed.apply(Change::Link(link));
            }
        }
        let mut addresses = self.handle.address().get().execute();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(|e| NetlinkError::from_rtnetlink("dump addresses", e))?
        {
            if let Some(addr) = decode::address(&message) {
                observed.apply(Change::Address(addr));
            }
        }
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut filter = RouteMessage::default();
            filter.header.address_family = family;
            let mut routes = self.handle.route().get(filter).execute();
            while let Some(message) = routes
                .try_next()
                .await
                .map_err(|e| NetlinkError::from_rtnetlink("dump routes", e))?
            {
                if let Some(route) = decode::route(&message) {
                    observed.apply(Change::Route(route));
                }
            }
        }
        Ok(observed)
    }

    /// Performs one action. Addresses and routes are created exclusively (`EEXIST` when one is
    /// already there, see [`crate::plan::on_exists`]); only a route the agent created is ever
    /// replaced (`NLM_F_REPLACE`).
    pub async fn execute(&self, action: &Action) -> Result<(), NetlinkError> {
        let operation = describe(action);
        let result = match action {
            Action::CreateVlan {
                name,
                parent,
                vlan_id,
                mtu,
            } => {
                let message = messages::create_vlan(name, *parent, *vlan_id, *mtu);
                self.handle.link().add(message).execute().await
            }
            Action::SetLink { index, mtu } => {
                let message = messages::set_link(*index, *mtu);
                self.handle.link().set(message).execute().await
            }
            Action::DeleteLink { index } => self.handle.link().del(*index).execute().await,
            Action::AddAddress { index, net } => {
                let mut request = self
                    .handle
                    .address()
                    .add(*index, net.addr(), net.prefix_len());
                *request.message_mut() = messages::address(*index, *net, self.protocol);
                // Exclusive: an address that appeared since the last read answers EEXIST, so
                // the agent never claims (and later removes) an address it did not add.
                request.execute().await
            }
            Action::DeleteAddress { index, net } => {
                let message: AddressMessage = messages::address(*index, *net, self.protocol);
                self.handle.address().del(message).execute().await
            }
            Action::AddRoute(spec) => {
                // rtnetlink's add is NLM_F_CREATE | NLM_F_EXCL: never over someone's route
                // (and never appended to it as an IPv6 multipath next hop).
                let message = messages::route(spec);
                self.handle.route().add(message).execute().await
            }
            Action::ReplaceRoute(spec) => {
                let message = messages::route(spec);
                self.handle.route().add(message).replace().execute().await
            }
            Action::DeleteRoute(spec) => {
                let message = messages::route(spec);
                self.handle.route().del(message).execute().await
            }
        };
        result.map_err(|e| NetlinkError::from_rtnetlink(operation, e))
    }
}

/// A short text for logs and error messages.
pub fn describe(action: &Action) -> String {
    match action {
        Action::CreateVlan {
            name,
            parent,
            vlan_id,
            ..
        } => format!("create VLAN {name} (id {vlan_id}) on link index {parent}"),
        Action::SetLink { index, mtu } => match mtu {
            Some(mtu) => format!("set link index {index} up with MTU {mtu}"),
            None => format!("set link index {index} up"),
        },
        Action::DeleteLink { index } => format!("delete link index {index}"),
        Action::AddAddress { index, net } => format!("add address {net} on link index {index}"),
        Action::DeleteAddress { index, net } => {
            format!("delete address {net} from link index {index}")
        }
        Action::AddRoute(spec) => format!(
            "add route {} table {} metric {}",
            spec.id.destination, spec.id.table, spec.id.metric
        ),
        Action::ReplaceRoute(spec) => format!(
            "replace route {} table {} metric {}",
            spec.id.destination, spec.id.table, spec.id.metric
        ),
        Action::DeleteRoute(spec) => format!(
            "delete route {} table {} metric {}",
            spec.id.destination, spec.id.table, spec.id.metric
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_text_drops_the_os_error_suffix() {
        assert_eq!(errno_text(19), "No such device");
        assert_eq!(errno_text(101), "Network is unreachable");
    }
}
