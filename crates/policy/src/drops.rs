//! The agent's drop log: every packet the policy table drops and logs to NFLOG group
//! [`NFLOG_GROUP`] becomes one info line in the agent's log, naming what dropped it (from the
//! rule's prefix) and the packet (from its headers):
//!
//! ```text
//! policy drop: ingress default/deny-db 10.244.1.4:40312 -> 10.244.0.3:5432 tcp
//! policy drop: spoofed source 10.244.1.9:5000 -> 10.244.0.3:53 udp
//! ```
//!
//! so `kubectl logs -n kube-system <the node's weft-agent pod>` says which policy dropped a
//! connection. Every logged drop is written: the table's log rules are rate-limited already
//! (10 a second per drop chain, bursts of 20), so the log cannot be flooded through them.
//! A thread of its own reads the group in the agent's network namespace (the node's).

use std::time::Duration;

use weft_dataplane::nflog::{Logged, Nflog, NflogError};

use crate::compile::NFLOG_GROUP;

/// Bytes of each dropped packet the kernel copies: the IPv4 header with options (up to 60)
/// and the start of the transport header, where the ports are.
const COPY_RANGE: u16 = 128;
/// How long to wait before trying the group again when it cannot be bound or read.
const RETRY: Duration = Duration::from_secs(10);
/// What the compiler's drop prefixes start with (`compile::drop_prefix` and the drop chains).
const PREFIX: &str = "weft drop ";
/// What refusals' prefixes start with (`weft_proxy`'s `REJECT_*`, `weft_net::REJECT_NO_ROUTE`).
const REJECT_PREFIX: &str = "weft reject ";

/// What happened to a logged packet, and what did it (the prefix past weft's own start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Dropped by the policy table: `ingress default/deny-db`, `spoofed source`...
    Dropped(&'a str),
    /// Refused by the Service table (`no endpoints`, `no such port`) or for want of a route
    /// (`no route`).
    Rejected(&'a str),
}

/// The outcome a record's prefix names; None for a prefix that is not weft's: someone else's
/// rule logging to our group.
pub fn outcome(record: &Logged) -> Option<Outcome<'_>> {
    let p = &record.prefix;
    p.strip_prefix(PREFIX)
        .map(Outcome::Dropped)
        .or_else(|| p.strip_prefix(REJECT_PREFIX).map(Outcome::Rejected))
}

/// The log line of one logged packet: `policy drop: <what> <packet>` or `reject: <what>
/// <packet>` (the Service table's `no endpoints` and `no such port`, the egress table's `no
/// route`).
pub fn line(record: &Logged) -> Option<String> {
    let packet = match &record.packet {
        Ok(p) => p.to_string(),
        Err(e) => format!("({e})"),
    };
    Some(match outcome(record)? {
        Outcome::Dropped(what) => format!("policy drop: {what} {packet}"),
        Outcome::Rejected(what) => format!("reject: {what} {packet}"),
    })
}

/// Starts the thread that logs the tables' drops and refusals, for as long as the process
/// lives; each is also handed to `also` with what happened (the flow log).
pub fn spawn(
    also: impl Fn(&Logged, Outcome<'_>) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("policy-drops".into())
        .spawn(move || run(NFLOG_GROUP, &also))
}

/// Binds `group` and logs what it reads; a group that cannot be bound or read is tried again
/// after [`RETRY`] (warned once, then at debug level, until it works again).
fn run(group: u16, also: &dyn Fn(&Logged, Outcome<'_>)) {
    let mut warned = false;
    loop {
        match Nflog::bind(group, COPY_RANGE) {
            Ok(log) => {
                tracing::info!("logging policy drops from NFLOG group {group}");
                warned = false;
                let e = follow(log, also);
                tracing::warn!("policy drops are not logged for now: {e}");
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!("policy drops are not logged (retrying every {RETRY:?}): {e}");
            }
            Err(e) => tracing::debug!("policy drops: {e}"),
        }
        std::thread::sleep(RETRY);
    }
}

/// Logs every record of `log` until it fails.
fn follow(mut log: Nflog, also: &dyn Fn(&Logged, Outcome<'_>)) -> NflogError {
    loop {
        match log.recv() {
            Ok(records) => {
                for record in records {
                    match record {
                        Ok(r) => match line(&r) {
                            Some(text) => {
                                tracing::info!("{text}");
                                if let Some(o) = outcome(&r) {
                                    also(&r, o);
                                }
                            }
                            None => tracing::debug!(
                                "NFLOG group {}: a packet with prefix {:?}, not the policy table's",
                                r.group,
                                r.prefix
                            ),
                        },
                        Err(e) => tracing::warn!("an NFLOG message that does not parse: {e}"),
                    }
                }
            }
            // The socket is still good; the kernel said it had to discard records.
            Err(e @ NflogError::Overrun { .. }) => tracing::warn!("{e}"),
            Err(e) => return e,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use weft_dataplane::nflog::{Packet, PacketError, Transport};
    use weft_dataplane::IfIndex;
    use weft_view::NsName;

    use super::*;
    use crate::compile::drop_prefix;
    use crate::spec::Direction;

    fn record(prefix: &str, packet: Result<Packet, PacketError>) -> Logged {
        Logged {
            group: NFLOG_GROUP,
            family: 2,
            hook: 4,
            prefix: prefix.to_string(),
            indev: Some(IfIndex(3)),
            outdev: Some(IfIndex(5)),
            mark: None,
            packet,
        }
    }

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Packet {
        Packet {
            src: Ipv4Addr::from(src).into(),
            dst: Ipv4Addr::from(dst).into(),
            protocol: 6,
            transport: Transport::Ports {
                src: sport,
                dst: dport,
            },
        }
    }

    #[test]
    fn a_drop_names_its_policies_and_the_packet() {
        let prefix = drop_prefix(Direction::Ingress, &[NsName::new("default", "deny-db")]);
        let r = record(
            &prefix,
            Ok(tcp([10, 244, 1, 4], 40312, [10, 244, 0, 3], 5432)),
        );
        assert_eq!(
            line(&r).unwrap(),
            "policy drop: ingress default/deny-db 10.244.1.4:40312 -> 10.244.0.3:5432 tcp"
        );
        // Several isolating policies: all of them, as the prefix lists them.
        let both = [NsName::new("a", "x"), NsName::new("b", "y")];
        let r = record(
            &drop_prefix(Direction::Egress, &both),
            Ok(tcp([10, 244, 0, 3], 1, [10, 96, 0, 10], 53)),
        );
        assert!(line(&r)
            .unwrap()
            .starts_with("policy drop: egress a/x,b/y 10.244.0.3:1 -> "));
    }

    #[test]
    fn the_pod_networks_own_drops_and_unreadable_packets() {
        let r = record("weft drop spoofed source", Err(PacketError::NoPayload));
        assert_eq!(
            line(&r).unwrap(),
            "policy drop: spoofed source (no packet copied)"
        );
        // Not the policy table's prefix: not a policy drop.
        assert_eq!(
            line(&record("someone else", Err(PacketError::NoPayload))),
            None
        );
    }

    #[test]
    fn the_service_tables_refusals_are_rejections() {
        let r = record(
            "weft reject no endpoints",
            Ok(tcp([10, 244, 1, 4], 40000, [10, 96, 0, 20], 80)),
        );
        assert_eq!(outcome(&r), Some(Outcome::Rejected("no endpoints")));
        assert_eq!(
            line(&r).unwrap(),
            "reject: no endpoints 10.244.1.4:40000 -> 10.96.0.20:80 tcp"
        );
        let dropped = record("weft drop spoofed source", Err(PacketError::NoPayload));
        assert_eq!(outcome(&dropped), Some(Outcome::Dropped("spoofed source")));
    }
}
