//! The zone's records in their wire form (RFC 1035 section 4.1.3), encoded once when the zone
//! is compiled, so that answering copies bytes instead of building and encoding records per
//! question. Each answer record starts with the owner as a compression pointer to the
//! question's name (offset 12, `0xC00C`): the owner is the name as asked, in the case asked.
//! Targets are written whole (RFC 2782 forbids compressing SRV targets; for PTR and CNAME it
//! only costs bytes). Names other than plain labels (an escaped dot, say) are not encoded:
//! their questions take the general path.

use super::{Data, Qtype};

/// The compression pointer to the question's name, right after the 12-byte header.
const TO_QUESTION: [u8; 2] = [0xC0, 0x0C];

/// One owner's records, each ready to follow the question, in one block (one memory access
/// per answer): the number of types, then per type its code, its record count ([`NO_WIRE`]
/// when one has no plain wire form) and its length in bytes, then the records, type by type.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sets(Box<[u8]>);

/// The count of a type whose records are left to the general path.
const NO_WIRE: u16 = u16::MAX;
/// Bytes per type in the table: code, count, length.
const ENTRY: usize = 8;

impl Sets {
    /// The sets of an owner's records, one per type, each in the records' order. One
    /// allocation per owner: this runs for every name on every compile.
    pub(crate) fn encode(list: &[Data], ttl: u32) -> Sets {
        // Seven kinds of data at most.
        let mut kinds = [Qtype::A; 8];
        let mut n = 0;
        for d in list {
            if n < kinds.len() && !kinds[..n].contains(&d.kind()) {
                kinds[n] = d.kind();
                n += 1;
            }
        }
        let mut out = Vec::with_capacity(1 + ENTRY * n + 48 * list.len());
        out.push(u8::try_from(n).unwrap_or(0));
        out.resize(1 + ENTRY * n, 0);
        for (i, kind) in kinds[..n].iter().enumerate() {
            let start = out.len();
            let mut count = 0usize;
            let mut whole = true;
            for d in list.iter().filter(|d| d.kind() == *kind) {
                whole &= answer(d, ttl, &mut out).is_some();
                count += 1;
            }
            let count = u16::try_from(count).ok().filter(|c| *c != NO_WIRE);
            let len = u32::try_from(out.len() - start).ok();
            let (count, len) = match (whole, count, len) {
                (true, Some(count), Some(len)) => (count, len),
                _ => {
                    out.truncate(start);
                    (NO_WIRE, 0)
                }
            };
            let entry = 1 + ENTRY * i;
            out[entry..entry + 2].copy_from_slice(&type_code(*kind).to_be_bytes());
            out[entry + 2..entry + 4].copy_from_slice(&count.to_be_bytes());
            out[entry + 4..entry + 8].copy_from_slice(&len.to_be_bytes());
        }
        Sets(out.into_boxed_slice())
    }

    /// The records of type `kind`: their count and bytes (none: `(0, [])`), or None when
    /// they have no plain wire form.
    pub(crate) fn get(&self, kind: Qtype) -> Option<(u16, &[u8])> {
        let b = &self.0;
        let n = usize::from(*b.first().unwrap_or(&0));
        let code = type_code(kind).to_be_bytes();
        let mut at = 1 + ENTRY * n;
        for entry in b.get(1..1 + ENTRY * n)?.chunks_exact(ENTRY) {
            let count = u16::from_be_bytes([entry[2], entry[3]]);
            let len = u32::from_be_bytes([entry[4], entry[5], entry[6], entry[7]]);
            let len = usize::try_from(len).ok()?;
            if entry[..2] == code {
                return match count {
                    NO_WIRE => None,
                    _ => Some((count, b.get(at..at + len)?)),
                };
            }
            at += len;
        }
        Some((0, &[]))
    }
}

/// The type code of a record type weft stores.
pub(crate) fn type_code(kind: Qtype) -> u16 {
    match kind {
        Qtype::A => 1,
        Qtype::Cname => 5,
        Qtype::Soa => 6,
        Qtype::Ptr => 12,
        Qtype::Txt => 16,
        Qtype::Aaaa => 28,
        Qtype::Srv => 33,
        Qtype::Any => 255,
        Qtype::Other(code) => code,
    }
}

/// The question type of a type code (None: one weft leaves to the general path).
pub(crate) fn qtype_of(code: u16) -> Option<Qtype> {
    Some(match code {
        1 => Qtype::A,
        5 => Qtype::Cname,
        6 => Qtype::Soa,
        12 => Qtype::Ptr,
        16 => Qtype::Txt,
        28 => Qtype::Aaaa,
        33 => Qtype::Srv,
        255 => Qtype::Any,
        _ => return None,
    })
}

/// `text` (absolute, plain labels) as uncompressed wire labels, lowercased when `lower`.
fn name(text: &str, lower: bool, out: &mut Vec<u8>) -> Option<()> {
    let start = out.len();
    let body = text.strip_suffix('.')?;
    if !body.is_empty() {
        for label in body.split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|l| (1..=63).contains(l))?;
            if label.contains('\\') {
                return None;
            }
            out.push(len);
            if lower {
                out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
            } else {
                out.extend_from_slice(label.as_bytes());
            }
        }
    }
    out.push(0);
    (out.len() - start <= 255).then_some(())
}

fn rdata(data: &Data, out: &mut Vec<u8>) -> Option<()> {
    match data {
        Data::A(ip) => out.extend_from_slice(&ip.octets()),
        Data::Aaaa(ip) => out.extend_from_slice(&ip.octets()),
        Data::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            out.extend_from_slice(&priority.to_be_bytes());
            out.extend_from_slice(&weight.to_be_bytes());
            out.extend_from_slice(&port.to_be_bytes());
            // As hickory writes it: SRV targets in lowercase (RFC 4034, 6840).
            name(target, true, out)?;
        }
        Data::Ptr(target) | Data::Cname(target) => name(target, false, out)?,
        Data::Txt(text) => {
            out.push(u8::try_from(text.len()).ok()?);
            out.extend_from_slice(text.as_bytes());
        }
        Data::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => {
            name(mname, false, out)?;
            name(rname, false, out)?;
            for n in [serial, refresh, retry, expire, minimum] {
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
    }
    Some(())
}

/// One record after its owner: type, class IN, TTL, RDATA with its length.
pub(crate) fn record(data: &Data, ttl: u32, out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(&type_code(data.kind()).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    let at = out.len();
    out.extend_from_slice(&[0, 0]);
    rdata(data, out)?;
    let len = u16::try_from(out.len() - at - 2).ok()?;
    out[at..at + 2].copy_from_slice(&len.to_be_bytes());
    Some(())
}

/// One record owned by the question's name.
pub(crate) fn answer(data: &Data, ttl: u32, out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(&TO_QUESTION);
    record(data, ttl, out)
}

/// A whole record: its owner `owner` written out, then the record.
pub(crate) fn full_record(owner: &str, data: &Data, ttl: u32) -> Option<Box<[u8]>> {
    let mut out = Vec::new();
    name(owner, false, &mut out)?;
    record(data, ttl, &mut out)?;
    Some(out.into_boxed_slice())
}
