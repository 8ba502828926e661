//! What the server answered whom: for each answer carrying addresses, the client, the name it
//! asked for and the addresses it got, in a ring of the last [`CAPACITY`]. Served as JSON on
//! the metrics port (`GET /lookups?since=SEQ`); the node agents read it to put on a flow the
//! name its client looked up (`weft observe` shows `web.default.svc.cluster.local` beside the
//! Service's address, `example.org` beside an address outside the cluster).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use weft_view::ring::Ring;

/// Answers kept.
pub const CAPACITY: usize = 16_384;
/// Answers one `/lookups` reply carries at most (the newest when more).
const PAGE: usize = 4_096;
/// Addresses kept of one answer.
const ADDRESSES: usize = 16;
/// The path they are served on.
pub const PATH: &str = "/lookups";

/// One answer that carried addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// Its place in this server's ring (1, 2, ...).
    pub seq: u64,
    /// When it was answered, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub client: IpAddr,
    /// The name asked for, lowercase, without the final dot.
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// The ring.
pub struct Lookups {
    inner: Mutex<Ring<Lookup>>,
}

impl Default for Lookups {
    fn default() -> Lookups {
        Lookups {
            inner: Mutex::new(Ring::new(CAPACITY)),
        }
    }
}

impl Lookups {
    /// Keeps `reply` to `client`'s question for `name` when its answer carries addresses.
    /// On the DNS fast path: a full ring refills its oldest record's buffers, so nothing is
    /// allocated.
    pub fn note(&self, client: IpAddr, name: &str, reply: &[u8]) {
        let mut found = addresses(reply);
        let Some(first) = found.next() else {
            return;
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let time_ms = now_ms();
        let mut ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        ring.push_reusing(|old, seq| {
            let mut l = old.unwrap_or_else(|| Lookup {
                seq,
                time_ms,
                client,
                name: String::with_capacity(name.len()),
                addresses: Vec::with_capacity(1),
            });
            l.seq = seq;
            l.time_ms = time_ms;
            l.client = client;
            l.name.clear();
            l.name.push_str(name);
            l.name.make_ascii_lowercase();
            l.addresses.clear();
            l.addresses.push(first);
            l.addresses.extend(found.take(ADDRESSES - 1));
            l
        });
    }

    /// The answers after `seq`, oldest first, at most [`PAGE`] (the newest when more).
    pub fn since(&self, seq: u64) -> Vec<Lookup> {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        ring.since(seq, PAGE)
    }
}

/// Milliseconds since the Unix epoch from the kernel's coarse clock (a few ms behind at most,
/// read without a system call, cheaper than the precise one on the fast path).
fn now_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE)
        .ok()
        .and_then(|t| {
            let ms = i128::from(t.tv_sec()) * 1000 + i128::from(t.tv_nsec()) / 1_000_000;
            u64::try_from(ms).ok()
        })
        .unwrap_or(0)
}

/// The A and AAAA addresses in the answer section of the DNS message `reply`, in order (none,
/// or those before the point where it cannot be read).
pub fn addresses(reply: &[u8]) -> impl Iterator<Item = IpAddr> + '_ {
    let counts = u16_at(reply, 4).zip(u16_at(reply, 6));
    // Past the questions.
    let mut at = counts.and_then(|(questions, _)| {
        (0..questions).try_fold(12, |at, _| skip_name(reply, at).map(|end| end + 4))
    });
    let mut left = counts.map_or(0, |(_, answers)| answers);
    std::iter::from_fn(move || {
        while left > 0 {
            left -= 1;
            let end = skip_name(reply, at?)?;
            let (kind, len) = (u16_at(reply, end)?, u16_at(reply, end + 8)?);
            let data = end + 10;
            let rdata = reply.get(data..data + usize::from(len))?;
            at = Some(data + usize::from(len));
            match (kind, rdata.len()) {
                (1, 4) => {
                    return <[u8; 4]>::try_from(rdata)
                        .ok()
                        .map(|b| Ipv4Addr::from(b).into())
                }
                (28, 16) => {
                    return <[u8; 16]>::try_from(rdata)
                        .ok()
                        .map(|b| Ipv6Addr::from(b).into())
                }
                _ => {}
            }
        }
        None
    })
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Where the name starting at `at` ends (labels, then a zero or a compression pointer).
fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *b.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l if l & 0xC0 == 0 => at += 1 + usize::from(l),
            // Extended label types (RFC 6891 obsoleted them): unreadable.
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::respond;
    use crate::zone::{Zone, ZoneConfig};
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::rdata::{A, CNAME};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use proptest::prelude::*;

    fn reply_with(records: Vec<Record>) -> Vec<u8> {
        let mut m = Message::new();
        m.add_query(Query::query(
            Name::from_ascii("www.example.org.").unwrap(),
            RecordType::A,
        ));
        m.add_answers(records);
        m.to_vec().unwrap()
    }

    #[test]
    fn the_answers_addresses_are_read_through_a_cname_chain() {
        let www = Name::from_ascii("www.example.org.").unwrap();
        let web = Name::from_ascii("web.example.org.").unwrap();
        let reply = reply_with(vec![
            Record::from_rdata(www, 30, RData::CNAME(CNAME(web.clone()))),
            Record::from_rdata(web.clone(), 30, RData::A(A::new(203, 0, 113, 10))),
            Record::from_rdata(web, 30, RData::A(A::new(203, 0, 113, 11))),
        ]);
        assert_eq!(
            addresses(&reply).collect::<Vec<_>>(),
            [
                "203.0.113.10".parse::<IpAddr>().unwrap(),
                "203.0.113.11".parse().unwrap()
            ]
        );
        // Truncated anywhere: what was read whole, never a panic.
        for cut in 0..reply.len() {
            assert!(addresses(&reply[..cut]).count() <= 2);
        }
    }

    #[test]
    fn the_zones_own_answers_are_kept_and_negative_ones_are_not() {
        let web: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}
        }))
        .unwrap();
        let zone = Zone::compile(ZoneConfig::default(), &[&web], &[], 1);
        let ask = |name: &str| {
            let mut m = Message::new();
            m.set_recursion_desired(true);
            m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
            respond(Some(&zone), &m.to_vec().unwrap(), true).unwrap()
        };
        let lookups = Lookups::default();
        let client: IpAddr = "10.244.1.5".parse().unwrap();
        lookups.note(
            client,
            "Web.Default.svc.cluster.local.",
            &ask("Web.Default.svc.cluster.local."),
        );
        lookups.note(
            client,
            "nothere.default.svc.cluster.local.",
            &ask("nothere.default.svc.cluster.local."),
        );
        let kept = lookups.since(0);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].name, "web.default.svc.cluster.local");
        assert_eq!(kept[0].addresses, ["10.96.0.20".parse::<IpAddr>().unwrap()]);
        assert_eq!((kept[0].seq, kept[0].client), (1, client));
        assert!(lookups.since(1).is_empty());
    }

    #[test]
    fn the_ring_keeps_the_newest() {
        let reply = reply_with(vec![Record::from_rdata(
            Name::from_ascii("www.example.org.").unwrap(),
            30,
            RData::A(A::new(203, 0, 113, 10)),
        )]);
        let lookups = Lookups::default();
        for _ in 0..CAPACITY + 3 {
            lookups.note("10.244.1.5".parse().unwrap(), "www.example.org.", &reply);
        }
        let page = lookups.since(0);
        assert_eq!(page.len(), PAGE);
        assert_eq!(page.last().unwrap().seq, (CAPACITY + 3) as u64);
        assert_eq!(lookups.since((CAPACITY + 2) as u64).len(), 1);
        assert_eq!(lookups.inner.lock().unwrap().len(), CAPACITY);
    }

    #[test]
    fn at_most_sixteen_addresses_of_an_answer_are_kept() {
        let www = Name::from_ascii("www.example.org.").unwrap();
        let reply = reply_with(
            (0..20)
                .map(|i| Record::from_rdata(www.clone(), 30, RData::A(A::new(203, 0, 113, i))))
                .collect(),
        );
        assert_eq!(addresses(&reply).count(), 20);
        let lookups = Lookups::default();
        lookups.note("10.244.1.5".parse().unwrap(), "www.example.org.", &reply);
        let kept = lookups.since(0);
        assert_eq!(kept[0].addresses.len(), ADDRESSES);
        assert_eq!(
            kept[0].addresses[15],
            "203.0.113.15".parse::<IpAddr>().unwrap()
        );
    }

    proptest! {
        /// Whatever bytes come back from upstream: no panic, and never more addresses than
        /// the message has room for; kept, never more than the bound.
        #[test]
        fn any_bytes_are_read_safely(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            prop_assert!(addresses(&bytes).count() <= bytes.len() / 14);
            let lookups = Lookups::default();
            lookups.note("10.244.1.5".parse().unwrap(), "x.", &bytes);
            prop_assert!(lookups.since(0).iter().all(|l| l.addresses.len() <= ADDRESSES));
        }
    }
}
