//! The wire side of rtnetlink: one NETLINK_ROUTE socket, message encoding (nlmsghdr, family
//! headers, nested rtattrs) and the request/ACK, dump and batch exchanges. Operations live in
//! `link.rs`, `addr.rs`, `route.rs`, `neigh.rs`; they build a [`Msg`] and call [`Netlink`].

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};

pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_ECHO: u16 = 0x8;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_REPLACE: u16 = 0x100;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLA_F_NESTED: u16 = 0x8000;
pub(crate) const NLMSG_HDRLEN: usize = 16;

/// Kernel replies to a dump arrive in chunks of at most a few pages; 64 KiB holds any one.
const RECV_BUF: usize = 64 * 1024;

/// A synchronous rtnetlink client. The socket is bound to the network namespace of the
/// thread that opened it, for its whole life: open one inside [`crate::NetNs::run`] to talk
/// to a pod's namespace from anywhere.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    /// The last datagram received. Its capacity is reserved once and never zeroed: the kernel
    /// writes what it sends, so a short-lived client touches only the pages it needs.
    buf: Vec<u8>,
    /// Requests queued inside [`Netlink::batch`], sent together when it ends.
    batch: Option<Batch>,
}

/// Change requests waiting to go out as one datagram.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// Each queued request's sequence number and what it does (for its error).
    requests: Vec<(u32, String)>,
}

impl Netlink {
    /// Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        Self::open_protocol(libc::NETLINK_ROUTE, "NETLINK_ROUTE")
    }

    /// Opens a socket of another netlink protocol (NETLINK_NETFILTER for ctnetlink): the
    /// framing, ACKs and dumps are the same, only the message types differ.
    pub(crate) fn open_protocol(protocol: libc::c_int, name: &str) -> Result<Self> {
        let fd = open_bound(protocol, name)?;
        // Strict checking makes the kernel honour filters in dump requests (and reject
        // malformed headers instead of guessing); best effort on old kernels.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int option value.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_GET_STRICT_CHK,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(Netlink {
            fd,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
            batch: None,
        })
    }

    /// Runs `f` with every change request it makes (adding, replacing, deleting, setting)
    /// queued instead of sent, then sends them all in one datagram and reads their
    /// acknowledgements together: one round trip instead of one per request.
    ///
    /// The kernel applies the requests in order and acknowledges each on its own; a refused
    /// request does not stop the ones after it, so the batch is not atomic. The first refusal
    /// is returned, named after its request; callers undo a failed batch as a whole. Inside
    /// `f`, a change's `execute()` returning `Ok` means only that it was queued, and lookups
    /// (`link_get`, dumps) fail: their answers would come after the batch is sent. When `f`
    /// fails, nothing is sent.
    ///
    /// ```no_run
    /// # use weft_dataplane::{IfIndex, IpNet, Netlink, Scope};
    /// # fn f(nl: &mut Netlink, eth0: IfIndex) -> weft_dataplane::Result<()> {
    /// nl.batch(|nl| {
    ///     nl.addr_add(eth0, "10.244.1.5/32".parse()?).execute()?;
    ///     nl.route_add("169.254.1.1/32".parse()?).oif(eth0).scope(Scope::Link).execute()
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn batch<T>(&mut self, f: impl FnOnce(&mut Netlink) -> Result<T>) -> Result<T> {
        if self.batch.is_some() {
            // Already batching: the outer batch sends these too.
            return f(self);
        }
        self.batch = Some(Batch::default());
        let out = f(self);
        let batch = self.batch.take().unwrap_or_default();
        let out = out?;
        self.send_batch(batch)?;
        Ok(out)
    }

    /// Sends a request that changes state and waits for the kernel's ACK (or queues it, in a
    /// [`Netlink::batch`]).
    pub(crate) fn request(&mut self, mut msg: Msg, op: impl FnOnce() -> String) -> Result<()> {
        if let Some(batch) = self.batch.as_mut() {
            self.seq = self.seq.wrapping_add(1);
            msg.finish(NLM_F_ACK, self.seq);
            batch.bytes.extend_from_slice(&msg.buf);
            batch.requests.push((self.seq, op()));
            return Ok(());
        }
        self.exchange(msg, NLM_F_ACK, op).map(|_| ())
    }

    /// Sends a request that changes state with NLM_F_ECHO and returns what the kernel echoes
    /// of it before the ACK (the new object, where the kernel echoes: for links since Linux
    /// 6.3; nothing on older kernels).
    pub(crate) fn request_echo(
        &mut self,
        msg: Msg,
        op: impl FnOnce() -> String,
    ) -> Result<Vec<Vec<u8>>> {
        let op = op();
        self.no_batch(&op)?;
        self.exchange(msg, NLM_F_ACK | NLM_F_ECHO, || op)
    }

    /// Sends a non-dump GET and returns the single answer (kernel errors such as ENODEV pass through).
    pub(crate) fn get(&mut self, msg: Msg, op: impl FnOnce() -> String) -> Result<Vec<u8>> {
        let op = op();
        self.no_batch(&op)?;
        let mut replies = self.exchange(msg, NLM_F_ACK, || op.clone())?;
        replies
            .pop()
            .ok_or_else(|| Error::protocol(op, "no answer to a get request"))
    }

    /// Sends a dump request and returns every answer's payload (after the nlmsghdr).
    pub(crate) fn dump(&mut self, msg: Msg, op: impl FnOnce() -> String) -> Result<Vec<Vec<u8>>> {
        if self.batch.is_some() {
            return Err(Self::in_batch(op()));
        }
        self.exchange(msg, NLM_F_DUMP, op)
    }

    fn no_batch(&self, op: &str) -> Result<()> {
        match self.batch {
            Some(_) => Err(Self::in_batch(op.to_string())),
            None => Ok(()),
        }
    }

    fn in_batch(op: String) -> Error {
        Error::protocol(op, "a lookup cannot be part of a batch of changes")
    }

    /// Sends the queued requests as one datagram and waits until each is acknowledged.
    fn send_batch(&mut self, batch: Batch) -> Result<()> {
        let Some((_, first)) = batch.requests.first() else {
            return Ok(());
        };
        send_to_kernel(&self.fd, &batch.bytes).map_err(|e| Error::os(first.clone(), e))?;
        let mut acked = vec![false; batch.requests.len()];
        let mut left = batch.requests.len();
        let mut refused: Option<Error> = None;
        while left > 0 {
            recv_datagram(&self.fd, &mut self.buf)
                .map_err(|e| Error::os(format!("{first} (receive)"), e))?;
            for message in messages(&self.buf) {
                let (ty, seq, payload) = message.map_err(|len| {
                    Error::protocol(first.clone(), format!("bad message length {len}"))
                })?;
                let Some(i) = batch.requests.iter().position(|(s, _)| *s == seq) else {
                    // A late answer to an earlier request on this socket: not ours to read.
                    continue;
                };
                let Some(code) = error_code(payload).filter(|_| ty == NLMSG_ERROR) else {
                    continue;
                };
                if std::mem::replace(&mut acked[i], true) {
                    continue;
                }
                left -= 1;
                if code != 0 && refused.is_none() {
                    refused = Some(Error::errno(batch.requests[i].1.clone(), -code));
                }
            }
        }
        refused.map_or(Ok(()), Err)
    }

    fn exchange(
        &mut self,
        mut msg: Msg,
        flags: u16,
        op: impl FnOnce() -> String,
    ) -> Result<Vec<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        msg.finish(flags, seq);
        let bytes = msg.buf;
        // The label is only built on failure: formatting costs more than the syscall.
        let mut op = Some(op);
        let mut label = move || op.take().map(|f| f()).unwrap_or_default();

        send_to_kernel(&self.fd, &bytes).map_err(|e| Error::os(label(), e))?;

        let mut out = Vec::new();
        loop {
            recv_datagram(&self.fd, &mut self.buf)
                .map_err(|e| Error::os(format!("{} (receive)", label()), e))?;
            for message in messages(&self.buf) {
                let (ty, mseq, payload) = message
                    .map_err(|len| Error::protocol(label(), format!("bad message length {len}")))?;
                if mseq != seq {
                    // A late answer to an earlier request on this socket: not ours to read.
                    continue;
                }
                match ty {
                    NLMSG_ERROR => {
                        if payload.len() < 4 {
                            return Err(Error::protocol(label(), "short NLMSG_ERROR"));
                        }
                        let code =
                            i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                        if code == 0 {
                            return Ok(out);
                        }
                        return Err(Error::errno(label(), -code));
                    }
                    NLMSG_DONE => {
                        if payload.len() >= 4 {
                            let code = i32::from_ne_bytes([
                                payload[0], payload[1], payload[2], payload[3],
                            ]);
                            if code < 0 {
                                return Err(Error::errno(label(), -code));
                            }
                        }
                        return Ok(out);
                    }
                    // Every request asks for an ACK (or is a dump ending in DONE), so data
                    // messages are always followed by a terminator: keep reading.
                    _ => out.push(payload.to_vec()),
                }
            }
        }
    }
}

/// A netlink socket of `protocol` (named `name` in errors), bound with a kernel-assigned port.
pub(crate) fn open_bound(protocol: libc::c_int, name: &str) -> Result<OwnedFd> {
    open_bound_groups(protocol, name, 0)
}

/// [`open_bound`], also joined to the multicast `groups` (a bit mask: group N is bit N-1), so
/// the kernel's events of those groups arrive on it.
pub(crate) fn open_bound_groups(protocol: libc::c_int, name: &str, groups: u32) -> Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the returned fd is checked before being owned.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if raw < 0 {
        return Err(Error::last_os(format!("opening {name} socket")));
    }
    // SAFETY: raw is a fresh, valid fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_nl is plain old data; zero is a valid value (pid 0: kernel assigns).
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa.nl_groups = groups;
    // SAFETY: sa is a valid sockaddr_nl of the size we pass.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(Error::last_os(format!("binding {name} socket")));
    }
    Ok(fd)
}

/// Sends one datagram to the kernel on netlink socket `fd`, again when a signal interrupts.
pub(crate) fn send_to_kernel(fd: &OwnedFd, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: the kernel's address is the zeroed sockaddr_nl with the family set.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    loop {
        // SAFETY: bytes and sa are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                bytes.as_ptr() as *const libc::c_void,
                bytes.len(),
                0,
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n >= 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Reads one datagram from netlink socket `fd` into `buf`, again when a signal interrupts;
/// returns its length.
pub(crate) fn recv_from_kernel(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: buf is a valid writable buffer of its length.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Reads one datagram from netlink socket `fd` into `buf`'s reserved capacity (its length
/// becomes the datagram's), again when a signal interrupts. Unlike [`recv_from_kernel`] the
/// buffer need not be initialised, so a large one costs only the pages the kernel writes.
pub(crate) fn recv_datagram(fd: &OwnedFd, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    let spare = buf.spare_capacity_mut();
    let (ptr, cap) = (spare.as_mut_ptr(), spare.len());
    loop {
        // SAFETY: ptr is valid for writes of cap bytes (buf's spare capacity).
        let n = unsafe { libc::recv(fd.as_raw_fd(), ptr as *mut libc::c_void, cap, 0) };
        if n >= 0 {
            // SAFETY: the kernel initialised the first n <= cap bytes.
            unsafe { buf.set_len(n as usize) };
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Several datagrams read in one system call (`recvmmsg`), each into a slot of its own: for
/// multicast streams, where the kernel sends every event as its own datagram and one `recv`
/// per event would cost a system call each.
pub(crate) struct Datagrams {
    buf: Vec<u8>,
    slot: usize,
    /// The received datagrams' lengths (None: longer than its slot, so cut short).
    lens: Vec<Option<usize>>,
}

impl Datagrams {
    /// Room for `count` datagrams of at most `slot` bytes each.
    pub(crate) fn new(count: usize, slot: usize) -> Datagrams {
        Datagrams {
            buf: vec![0; count * slot],
            slot,
            lens: Vec::with_capacity(count),
        }
    }

    /// Receives as many datagrams as are queued and fit, waiting for the first unless `flags`
    /// has `MSG_DONTWAIT` (then `WouldBlock` when none is queued).
    pub(crate) fn recv(&mut self, fd: &OwnedFd, flags: libc::c_int) -> std::io::Result<()> {
        let count = self.buf.len() / self.slot;
        let mut iovs: Vec<libc::iovec> = self
            .buf
            .chunks_exact_mut(self.slot)
            .map(|chunk| libc::iovec {
                iov_base: chunk.as_mut_ptr() as *mut libc::c_void,
                iov_len: chunk.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain data; all-zero is a valid value (no name, no control).
        let mut headers: Vec<libc::mmsghdr> =
            (0..count).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (h, iov) in headers.iter_mut().zip(iovs.iter_mut()) {
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
        }
        self.lens.clear();
        let n = loop {
            // SAFETY: headers holds `count` entries, each pointing at one iovec over a distinct
            // slot of buf, all alive for the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd.as_raw_fd(),
                    headers.as_mut_ptr(),
                    count as libc::c_uint,
                    flags | libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(err);
            }
        };
        for h in &headers[..n] {
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.lens.push((!truncated).then_some(h.msg_len as usize));
        }
        Ok(())
    }

    /// The datagrams of the last [`Datagrams::recv`], in order (None: one cut short).
    pub(crate) fn iter(&self) -> impl Iterator<Item = Option<&[u8]>> + '_ {
        self.lens
            .iter()
            .enumerate()
            .map(|(i, len)| len.map(|len| &self.buf[i * self.slot..i * self.slot + len]))
    }
}

/// The netlink messages of one received datagram, as `(type, seq, payload)`; a header whose
/// length does not fit the datagram is an `Err` with that length (and ends the iteration).
pub(crate) fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

pub(crate) struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = std::result::Result<(u16, u32, &'a [u8]), usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32_at(self.rest, 0) as usize;
        if len < NLMSG_HDRLEN || len > self.rest.len() {
            self.rest = &[];
            return Some(Err(len));
        }
        let ty = u16_at(self.rest, 4);
        let seq = u32_at(self.rest, 8);
        let payload = &self.rest[NLMSG_HDRLEN..len];
        self.rest = &self.rest[align(len).min(self.rest.len())..];
        Some(Ok((ty, seq, payload)))
    }
}

/// The error code an NLMSG_ERROR payload carries (0: an acknowledgement), if it has one.
pub(crate) fn error_code(payload: &[u8]) -> Option<i32> {
    payload
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

pub(crate) fn align(len: usize) -> usize {
    (len + 3) & !3
}

pub(crate) fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_ne_bytes([b[o], b[o + 1]])
}

pub(crate) fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// A netlink request under construction: header, family header, then attributes.
pub(crate) struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    /// Starts a message of `ty` with `flags` (REQUEST/ACK/DUMP are added on send).
    pub(crate) fn new(ty: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // pid: 0, the kernel fills it in
        Msg { buf }
    }

    fn finish(&mut self, extra_flags: u16, seq: u32) {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        let flags = u16_at(&self.buf, 6) | NLM_F_REQUEST | extra_flags;
        self.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
    }

    /// Appends raw family-header bytes (ifinfomsg, ifaddrmsg, ...); they are 4-byte multiples.
    pub(crate) fn header(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    pub(crate) fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    pub(crate) fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// A NUL-terminated string attribute, as the kernel expects for names.
    pub(crate) fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v)
    }

    /// Opens a nested attribute; close it with [`Msg::end_nest`] passing the returned offset.
    pub(crate) fn begin_nest(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    pub(crate) fn end_nest(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// The bytes encoded so far (length and sequence not yet patched in): attribute encoders
    /// reuse a message to build a nest's contents, and decoders' tests read them back.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn pad(&mut self) {
        self.buf.resize(align(self.buf.len()), 0);
    }
}

/// Iterates the rtattrs of a payload: yields (type without flag bits, data).
pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(rest: &'a [u8]) -> Self {
        Attrs { rest }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 4 {
            return None;
        }
        let len = u16_at(self.rest, 0) as usize;
        let ty = u16_at(self.rest, 2) & !(NLA_F_NESTED | 0x4000);
        if len < 4 || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let data = &self.rest[4..len];
        self.rest = &self.rest[align(len).min(self.rest.len())..];
        Some((ty, data))
    }
}

/// Decodes a NUL-terminated (or not) string attribute.
pub(crate) fn attr_string(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

pub(crate) fn attr_u32(data: &[u8]) -> Option<u32> {
    (data.len() >= 4).then(|| u32_at(data, 0))
}

/// Decodes an address attribute of a known family into an IpAddr.
pub(crate) fn attr_ip(data: &[u8]) -> Option<std::net::IpAddr> {
    match data.len() {
        4 => Some(std::net::Ipv4Addr::new(data[0], data[1], data[2], data[3]).into()),
        16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(data);
            Some(std::net::Ipv6Addr::from(b).into())
        }
        _ => None,
    }
}

pub(crate) fn ip_bytes(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    }
}

pub(crate) fn family(ip: std::net::IpAddr) -> u8 {
    if ip.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IpNet, ScopedNetNs};

    #[test]
    fn nested_attrs_roundtrip() {
        let mut m = Msg::new(16, 0);
        m.header(&[0u8; 16]);
        m.attr_str(3, "eth0");
        let n = m.begin_nest(18);
        m.attr_str(1, "veth");
        m.end_nest(n);
        m.finish(NLM_F_ACK, 7);
        assert_eq!(u32_at(&m.buf, 0) as usize, m.buf.len());
        assert_eq!(u32_at(&m.buf, 8), 7);
        let attrs: Vec<_> = Attrs::new(&m.buf[32..]).collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attr_string(attrs[0].1), "eth0");
        assert_eq!(attrs[1].0, 18);
        let inner: Vec<_> = Attrs::new(attrs[1].1).collect();
        assert_eq!(attr_string(inner[0].1), "veth");
    }

    /// Needs root: a namespace of its own, removed on drop.
    #[test]
    fn a_batch_goes_out_at_once_and_reports_its_first_refusal() {
        let ns = ScopedNetNs::create_unique("wdp-batch").unwrap();
        let mut nl = ns.run(Netlink::open).unwrap().unwrap();
        let lo = nl.link_get("lo").unwrap().unwrap().index;
        let a: IpNet = "10.9.8.7/32".parse().unwrap();
        let b: IpNet = "10.9.8.8/32".parse().unwrap();
        let has =
            |nl: &mut Netlink, n: IpNet| nl.addrs(Some(lo)).unwrap().iter().any(|x| x.local == n);
        nl.batch(|nl| {
            nl.link_set(lo).up().execute()?;
            nl.addr_add(lo, a).execute()
        })
        .unwrap();
        assert!(nl.link_get("lo").unwrap().unwrap().admin_up);
        assert!(has(&mut nl, a));
        // The kernel refuses the first (it exists) and still applies the second.
        let err = nl
            .batch(|nl| {
                nl.addr_add(lo, a).execute()?;
                nl.addr_add(lo, b).execute()
            })
            .unwrap_err();
        assert!(err.is_exists(), "{err}");
        assert!(err.to_string().contains("10.9.8.7/32"), "{err}");
        assert!(has(&mut nl, b));
        // A lookup cannot be part of a batch; a batch that fails before its end sends nothing.
        let err = nl
            .batch(|nl| {
                nl.link_set(lo).down().execute()?;
                nl.link_get("lo").map(|_| ())
            })
            .unwrap_err();
        assert!(err.to_string().contains("batch"), "{err}");
        assert!(nl.link_get("lo").unwrap().unwrap().admin_up);
        nl.batch(|_| Ok(())).unwrap();
        // The socket is in step after all of it.
        assert!(has(&mut nl, a));
    }
}
