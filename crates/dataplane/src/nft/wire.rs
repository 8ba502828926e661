//! The nf_tables wire: a NETLINK_NETFILTER socket and batches of messages between
//! NFNL_MSG_BATCH_BEGIN and NFNL_MSG_BATCH_END, which the kernel applies as one transaction.
//! Every message asks for an ACK, so a refused batch names the message the kernel refused
//! (decoded back from the batch: "adding rule to ip t svc-a") and its errno. What goes into
//! the messages is `encode`'s job.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::error::{Error, Result};
use crate::netlink::{align, u16_at, u32_at, Attrs, NLA_F_NESTED, NLMSG_ERROR, NLM_F_ACK};
use crate::netlink::{attr_string, NLM_F_CREATE, NLM_F_REQUEST};
use crate::netlink::{error_code, messages, open_bound, recv_from_kernel, send_to_kernel};

const NETLINK_NETFILTER: libc::c_int = 12;
pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
pub(crate) const NLM_F_APPEND: u16 = 0x800;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
pub(super) const NLMSG_HDRLEN: usize = 16;

/// nf_tables message types (`enum nf_tables_msg_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum MsgType {
    NewTable = 0,
    DelTable = 2,
    NewChain = 3,
    DelChain = 5,
    NewRule = 6,
    DelRule = 8,
    NewSet = 9,
    DelSet = 11,
    NewSetElem = 12,
    DelSetElem = 14,
}

impl MsgType {
    fn from_u8(v: u8) -> Option<MsgType> {
        use MsgType::*;
        [
            NewTable, DelTable, NewChain, DelChain, NewRule, DelRule, NewSet, DelSet, NewSetElem,
            DelSetElem,
        ]
        .into_iter()
        .find(|t| *t as u8 == v)
    }

    /// The flags nft uses for this kind of message (create, append rules).
    fn flags(self) -> u16 {
        match self {
            MsgType::NewRule => NLM_F_CREATE | NLM_F_APPEND,
            MsgType::NewTable | MsgType::NewChain | MsgType::NewSet | MsgType::NewSetElem => {
                NLM_F_CREATE
            }
            _ => 0,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            MsgType::NewTable => "adding table",
            MsgType::DelTable => "deleting table",
            MsgType::NewChain => "adding chain",
            MsgType::DelChain => "deleting chain",
            MsgType::NewRule => "adding rule to chain",
            MsgType::DelRule => "flushing chain",
            MsgType::NewSet => "adding set",
            MsgType::DelSet => "deleting set",
            MsgType::NewSetElem => "adding elements to set",
            MsgType::DelSetElem => "deleting elements from set",
        }
    }
}

/// A batch under construction: messages appended in order, each with its family.
pub(crate) struct Batch {
    buf: Vec<u8>,
    /// Offset of each message after BATCH_BEGIN; message i has sequence number i + 1.
    starts: Vec<usize>,
    nest: Vec<usize>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    pub(crate) fn new() -> Batch {
        let mut b = Batch {
            buf: Vec::with_capacity(4096),
            starts: Vec::new(),
            nest: Vec::new(),
        };
        b.header(
            NFNL_MSG_BATCH_BEGIN,
            0,
            libc::AF_UNSPEC as u8,
            NFNL_SUBSYS_NFTABLES,
        );
        b
    }

    fn header(&mut self, ty: u16, flags: u16, family: u8, res_id: u16) {
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in end_msg
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf
            .extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // seq, set in finish
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        let at = self.buf.len() - NLMSG_HDRLEN - 4;
        let len = (self.buf.len() - at) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Starts a message; attributes follow until the next `msg` or `finish`.
    pub(crate) fn msg(&mut self, ty: MsgType, family: u8) -> &mut Self {
        self.end_msg();
        self.starts.push(self.buf.len());
        self.header(
            (NFNL_SUBSYS_NFTABLES << 8) | ty as u16,
            ty.flags() | NLM_F_ACK,
            family,
            0,
        );
        self
    }

    fn end_msg(&mut self) {
        if let Some(&at) = self.starts.last() {
            let len = (self.buf.len() - at) as u32;
            self.buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
        }
    }

    /// How many messages (without BEGIN and END).
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    pub(crate) fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    pub(crate) fn be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }

    pub(crate) fn be64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }

    pub(crate) fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let len = (5 + s.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// Opens a nested attribute, closed by [`Batch::end`].
    pub(crate) fn nest(&mut self, ty: u16) -> &mut Self {
        self.nest.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub(crate) fn end(&mut self) -> &mut Self {
        if let Some(at) = self.nest.pop() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The batch ready to send: END appended and sequence numbers set (BEGIN is 0, message i
    /// is i + 1, END is len + 1).
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.end_msg();
        let n = self.starts.len();
        let end = self.buf.len();
        self.header(
            NFNL_MSG_BATCH_END,
            0,
            libc::AF_UNSPEC as u8,
            NFNL_SUBSYS_NFTABLES,
        );
        for (i, &at) in self.starts.iter().chain([&end]).enumerate() {
            self.buf[at + 8..at + 12].copy_from_slice(&(i as u32 + 1).to_ne_bytes());
        }
        debug_assert_eq!(self.starts.len(), n);
        self.buf
    }
}

/// The message at sequence number `seq` of a finished batch, described for an error.
fn describe(batch: &[u8], seq: u32) -> String {
    let mut rest = batch;
    while rest.len() >= NLMSG_HDRLEN + 4 {
        let len = u32_at(rest, 0) as usize;
        if len < NLMSG_HDRLEN + 4 || len > rest.len() {
            break;
        }
        if u32_at(rest, 8) == seq {
            let ty = u16_at(rest, 4);
            let family = match rest[NLMSG_HDRLEN] {
                2 => "ip",
                10 => "ip6",
                1 => "inet",
                _ => "?",
            };
            let Some(t) = MsgType::from_u8((ty & 0xff) as u8).filter(|_| ty >> 8 == 10) else {
                return format!("the batch (message type {ty:#x})");
            };
            let mut names = Vec::new();
            for (a, data) in Attrs::new(&rest[NLMSG_HDRLEN + 4..len]) {
                // Table (1) and then the object's name: chain/rule chain (2 or 3), set (2).
                let wanted = match t {
                    MsgType::NewTable | MsgType::DelTable => a == 1,
                    MsgType::NewChain | MsgType::DelChain => a == 1 || a == 3,
                    _ => a == 1 || a == 2,
                };
                if wanted {
                    names.push(attr_string(data));
                }
            }
            return format!("{} {family} {}", t.verb(), names.join(" "));
        }
        rest = &rest[align(len).min(rest.len())..];
    }
    format!("the batch (message {seq})")
}

/// A NETLINK_NETFILTER socket in the network namespace of the thread that opened it.
pub(crate) struct Socket {
    pub(super) fd: OwnedFd,
    rcvbuf: usize,
    sndbuf: usize,
    /// The last datagram received (dumps in `dump` read into it too).
    pub(super) buf: Vec<u8>,
}

fn setsockopt_int(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> bool {
    // SAFETY: setsockopt with a valid int option value of the size passed.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

impl Socket {
    pub(crate) fn open() -> Result<Socket> {
        let fd = open_bound(NETLINK_NETFILTER, "NETLINK_NETFILTER")?;
        // ACKs carry only the refused message's header, not all of it; best effort.
        setsockopt_int(&fd, libc::SOL_NETLINK, NETLINK_CAP_ACK, 1);
        setsockopt_int(&fd, libc::SOL_NETLINK, NETLINK_EXT_ACK, 1);
        // A kernel that never answers must not hang the agent.
        let tv = libc::timeval {
            tv_sec: 30,
            tv_usec: 0,
        };
        // SAFETY: SO_RCVTIMEO with a valid timeval of the size passed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(Socket {
            fd,
            rcvbuf: 0,
            sndbuf: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends `batch` and checks the kernel's answer to every message. On refusal the kernel
    /// has applied nothing; the error names the first refused message.
    pub(crate) fn send(&mut self, batch: Batch, op: &str) -> Result<()> {
        let count = batch.len();
        if count == 0 {
            return Ok(());
        }
        let bytes = batch.finish();
        // Big batches (whole loads) need room to be sent at once and for every ACK, which the
        // kernel delivers together after the batch; FORCE works for root past rmem_max.
        let want_snd = bytes.len() + 64 * 1024;
        if want_snd > self.sndbuf {
            setsockopt_int(
                &self.fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                want_snd as i32,
            );
            self.sndbuf = want_snd;
        }
        let want_rcv = (count + 2) * 1024 + 256 * 1024;
        if want_rcv > self.rcvbuf {
            setsockopt_int(
                &self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                want_rcv as i32,
            );
            self.rcvbuf = want_rcv;
        }
        send_to_kernel(&self.fd, &bytes)
            .map_err(|e| Error::os(format!("{op}: sending the batch"), e))?;
        self.acks(&bytes, count, op)
    }

    /// Reads one answer per message (1..=count). The first refusal wins; a refusal of the
    /// batch itself (seq 0: the commit failed) ends the exchange at once.
    fn acks(&mut self, batch: &[u8], count: usize, op: &str) -> Result<()> {
        let mut pending = count;
        let mut first: Option<(u32, i32)> = None;
        let mut seen = vec![false; count + 2];
        while pending > 0 {
            let n = match recv_from_kernel(&self.fd, &mut self.buf) {
                Ok(n) => n,
                Err(_) if first.is_some() => break,
                Err(e) => {
                    return Err(Error::os(format!("{op}: reading the kernel's answers"), e));
                }
            };
            for message in messages(&self.buf[..n]) {
                let (ty, seq, payload) = message
                    .map_err(|len| Error::protocol(op, format!("bad message length {len}")))?;
                let Some(code) = error_code(payload).filter(|_| ty == NLMSG_ERROR) else {
                    continue;
                };
                if seq == 0 || seq as usize > count {
                    // The batch as a whole (BEGIN/END, or the commit) was refused.
                    if code != 0 {
                        first = first.or(Some((seq, code)));
                        pending = 0;
                        break;
                    }
                    continue;
                }
                if !std::mem::replace(&mut seen[seq as usize], true) {
                    pending -= 1;
                }
                if code != 0 && first.is_none_or(|(s, _)| seq < s) {
                    first = Some((seq, code));
                }
            }
        }
        match first {
            None => Ok(()),
            Some((seq, code)) => Err(Error::NftBatch {
                op: op.to_string(),
                message: seq as usize,
                count,
                what: describe(batch, seq),
                source: std::io::Error::from_raw_os_error(-code),
            }),
        }
    }
}

/// What the kernel says about a table: its handle (new for every re-creation) and comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableInfo {
    pub(crate) handle: u64,
    pub(crate) comment: Option<String>,
}

impl Socket {
    /// NFT_MSG_GETTABLE for one table; None when it does not exist.
    pub(crate) fn get_table(&mut self, family: u8, name: &str) -> Result<Option<TableInfo>> {
        let op = || format!("reading table {name}");
        let mut m = Vec::with_capacity(64);
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | 1).to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        m.extend_from_slice(&0x7fff_fff0u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[family, 0, 0, 0]);
        let alen = (5 + name.len()) as u16;
        m.extend_from_slice(&alen.to_ne_bytes());
        m.extend_from_slice(&1u16.to_ne_bytes());
        m.extend_from_slice(name.as_bytes());
        m.push(0);
        m.resize(align(m.len()), 0);
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        send_to_kernel(&self.fd, &m).map_err(|e| Error::os(op(), e))?;
        let mut info = None;
        loop {
            let n = recv_from_kernel(&self.fd, &mut self.buf).map_err(|e| Error::os(op(), e))?;
            for message in messages(&self.buf[..n]) {
                let (ty, seq, payload) = message
                    .map_err(|len| Error::protocol(op(), format!("bad message length {len}")))?;
                if seq != 0x7fff_fff0 {
                    continue;
                }
                if ty == NLMSG_ERROR {
                    let code = error_code(payload).unwrap_or(0);
                    return match code {
                        0 => Ok(info),
                        c if -c == libc::ENOENT => Ok(None),
                        c => Err(Error::errno(op(), -c)),
                    };
                }
                if payload.len() < 4 {
                    continue;
                }
                let mut t = TableInfo {
                    handle: 0,
                    comment: None,
                };
                for (a, data) in Attrs::new(&payload[4..]) {
                    match a {
                        4 if data.len() == 8 => {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(data);
                            t.handle = u64::from_be_bytes(b);
                        }
                        // nft's user data: TLVs of (type, len); type 0 is the comment.
                        6 if data.len() >= 2 && data[0] == 0 => {
                            let end = (2 + usize::from(data[1])).min(data.len());
                            t.comment = Some(attr_string(&data[2..end]));
                        }
                        _ => {}
                    }
                }
                info = Some(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_framing_sequences_and_description() {
        let mut b = Batch::new();
        b.msg(MsgType::NewTable, 2).str(1, "t").be32(2, 0);
        b.msg(MsgType::NewChain, 2).str(1, "t").str(3, "c");
        let bytes = b.finish();
        // BEGIN (20) + table (20 + 8 + 8) + chain (20 + 8 + 8) + END (20).
        assert_eq!(bytes.len(), 20 + 36 + 36 + 20);
        assert_eq!(u16_at(&bytes, 4), NFNL_MSG_BATCH_BEGIN);
        assert_eq!(&bytes[16..20], &[0, 0, 0, 10]);
        assert_eq!(u32_at(&bytes, 20), 36);
        assert_eq!(u16_at(&bytes, 24), 0x0a00);
        assert_eq!(u16_at(&bytes, 26), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE);
        assert_eq!(u32_at(&bytes, 28), 1);
        assert_eq!(u32_at(&bytes, 56 + 8), 2);
        assert_eq!(u16_at(&bytes, 92 + 4), NFNL_MSG_BATCH_END);
        assert_eq!(u32_at(&bytes, 92 + 8), 3);
        assert_eq!(describe(&bytes, 2), "adding chain ip t c");
        assert_eq!(describe(&bytes, 1), "adding table ip t");
    }
}
