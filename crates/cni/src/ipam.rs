//! Built-in IPAM: hands out IPv4 addresses from the node's pod range and remembers them on
//! disk, so allocations survive plugin exits and agent restarts.
//!
//! Layout under `<dataDir>/<network>/` (host-local's, so operators know it): one file per
//! allocated address, named by the address, holding `containerID\nifname` as host-local's do,
//! then the address itself on a third line; `last_reserved_ip` for round-robin (a freed address
//! is not handed out again right away); `lock`, held with `flock` for each whole
//! read-modify-write, which makes concurrent plugin runs safe; and
//! `by-attachment/<sha256 of containerID/ifname>`, a second name (hard link) of the allocation
//! file, so ADD, DEL and CHECK find an attachment's address by reading one file instead of every
//! allocation.
//!
//! Every ADD writes this store on the node's disk, so the writes are shaped for it: an ADD
//! creates one inode (the allocation file; the index is only a directory entry, which is why
//! the file carries its address), and `last_reserved_ip` is overwritten in place at a fixed
//! width (truncating it would free its block and allocate a new one on every ADD). Creating an
//! inode is the expensive part: on ext4 without a journal, the allocator walks past every
//! recently deleted inode of the group first.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use weft_dataplane::IpNet;

use crate::config::Attachment;
use crate::env::{ContainerId, IfName};

const LOCK_FILE: &str = "lock";
const LAST_RESERVED: &str = "last_reserved_ip";
/// One name per attachment for its allocation file, so lookups by attachment read one file.
const INDEX_DIR: &str = "by-attachment";

/// The addresses the IPAM may hand out: `start..=end` inside `subnet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub subnet: IpNet,
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

fn v4(ip: std::net::IpAddr) -> u32 {
    match ip {
        std::net::IpAddr::V4(a) => u32::from(a),
        std::net::IpAddr::V6(_) => 0,
    }
}

impl Pool {
    /// The default range of an IPv4 subnet: network+2 ..= broadcast-1 (network+1 is the
    /// node's). Callers ensure the subnet is IPv4 and at most /30.
    pub fn whole(subnet: IpNet) -> Pool {
        let net = v4(subnet.network().addr());
        let bcast = net | (u32::MAX >> subnet.prefix().min(32));
        Pool {
            subnet,
            start: Ipv4Addr::from(net.saturating_add(2)),
            end: Ipv4Addr::from(bcast.saturating_sub(1)),
        }
    }

    /// Whether `ip` could ever be a pod address of this subnet (ignores rangeStart/End).
    pub fn usable(&self, ip: Ipv4Addr) -> bool {
        let whole = Pool::whole(self.subnet);
        whole.start <= ip && ip <= whole.end
    }

    /// Whether `ip` is in this pool's range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }

    pub fn size(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// `.2-.254` when both ends share the network's first three octets, else full addresses.
    pub fn range_text(&self) -> String {
        let net = v4(self.subnet.network().addr()) >> 8;
        if u32::from(self.start) >> 8 == net && u32::from(self.end) >> 8 == net {
            format!(".{}-.{}", self.start.octets()[3], self.end.octets()[3])
        } else {
            format!("{}-{}", self.start, self.end)
        }
    }
}

/// IPAM failures.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no free address in {subnet} (range {range}): {used} of {size} allocated")]
    Exhausted {
        subnet: IpNet,
        range: String,
        used: u32,
        size: u32,
    },
    #[error("requested address {ip} is already allocated to {owner}")]
    RequestedTaken { ip: Ipv4Addr, owner: String },
    #[error("requested address {ip} is outside the range {range} of {subnet}")]
    RequestedOutOfRange {
        ip: Ipv4Addr,
        subnet: IpNet,
        range: String,
    },
    #[error("IPAM store {}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> IpamError + 'a {
    move |source| IpamError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// The result of an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub ip: Ipv4Addr,
    /// The attachment already held this address (a repeated ADD).
    pub existing: bool,
}

/// One network's allocation directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(data_dir: &Path, network: &str) -> Store {
        Store {
            dir: data_dir.join(network),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory if needed (root only, as is any it finds open to others) and takes
    /// the exclusive lock; it is released when the returned guard drops (or the process exits).
    pub fn lock(&self) -> Result<Locked<'_>, IpamError> {
        let path = self.dir.join(LOCK_FILE);
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        };
        // The directory exists after the first ADD: only a missing one costs the mkdirs. It
        // is 0700 from the start (missing parents too): it maps pod addresses to containers.
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.dir)
                    .map_err(io_err(&self.dir, "creating directory"))?;
                open()
            }
            other => other,
        }
        .map_err(io_err(&path, "opening lock file"))?;
        keep_private(&self.dir)?;
        loop {
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(io_err(&path, "locking")(e));
            }
        }
        Ok(Locked {
            store: self,
            _lock: file,
        })
    }
}

/// Closes `dir` to group and others if it is open to them (made by an older weft, which left it
/// 0755, or by hand): one stat per run when it is already right.
fn keep_private(dir: &Path) -> Result<(), IpamError> {
    let mode = fs::metadata(dir)
        .map_err(io_err(dir, "reading directory mode"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err(dir, "making directory root only"))?;
    }
    Ok(())
}

/// The store with its lock held: every read-modify-write goes through this.
pub struct Locked<'a> {
    store: &'a Store,
    _lock: File,
}

fn parse_owner(content: &str) -> Option<Attachment> {
    let mut lines = content.lines();
    let cid = ContainerId::parse(lines.next()?.trim())?;
    let ifname = IfName::parse(lines.next()?.trim())?;
    Some(Attachment {
        container_id: cid,
        ifname,
    })
}

/// Makes `index` a second name of the allocation file `allocation`. The index directory exists
/// after the first ADD, and an entry left by a crash (or by an older store's layout) is
/// replaced.
fn write_index(allocation: &Path, index: &Path) -> io::Result<()> {
    match fs::hard_link(allocation, index) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = index.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::hard_link(allocation, index)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(index)?;
            fs::hard_link(allocation, index)
        }
        other => other,
    }
}

/// What an index entry says: the store's current layout names the allocation file itself
/// (owner and address, and which inode it is); older stores' entries name only the address.
enum IndexEntry {
    Allocation {
        owner: Option<Attachment>,
        ip: Ipv4Addr,
        inode: (u64, u64),
    },
    Address(Ipv4Addr),
}

/// Reads the index entry at `path`; None when there is none (or it says nothing usable).
fn read_index(path: &Path) -> io::Result<Option<IndexEntry>> {
    // O_NOFOLLOW: an older store's symlink entry fails with ELOOP and is read with readlink.
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            let target = fs::read_link(path)?;
            return Ok(target
                .to_str()
                .and_then(|t| t.trim().parse().ok())
                .map(IndexEntry::Address));
        }
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let meta = file.metadata()?;
    let mut lines = text.lines();
    Ok(match (lines.next(), lines.next(), lines.next()) {
        // An older store's regular index file: just the address.
        (Some(ip), None, None) => ip.trim().parse().ok().map(IndexEntry::Address),
        (Some(_), Some(_), Some(ip)) => ip.trim().parse().ok().map(|ip| IndexEntry::Allocation {
            owner: parse_owner(&text),
            ip,
            inode: (meta.dev(), meta.ino()),
        }),
        _ => None,
    })
}

/// Width `last_reserved_ip` is written at: the longest IPv4 address.
const LAST_RESERVED_WIDTH: usize = "255.255.255.255".len();

/// Opens `last_reserved_ip` for reading and overwriting (one open serves both in an ADD).
fn open_last_reserved(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// The address `last_reserved_ip` holds, if it holds one (padded or not).
fn read_last_reserved(file: &File) -> Option<Ipv4Addr> {
    let mut buf = [0u8; 64];
    let n = file.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// Overwrites `last_reserved_ip` in place, padded with spaces to a fixed width, so whatever was
/// there before (an address, so never longer) is covered without truncating the file.
fn write_last_reserved(file: &File, ip: Ipv4Addr) -> io::Result<()> {
    let text = format!("{:<width$}", ip.to_string(), width = LAST_RESERVED_WIDTH);
    file.write_all_at(text.as_bytes(), 0)
}

fn owner_text(o: &Option<Attachment>) -> String {
    match o {
        Some(a) => format!("{}/{}", a.container_id.as_str(), a.ifname.as_str()),
        None => "an unreadable allocation".to_string(),
    }
}

impl Locked<'_> {
    /// Every allocation on disk: address and owner (None if the file is unreadable/corrupt).
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, Option<Attachment>)>, IpamError> {
        let dir = &self.store.dir;
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir, "listing"))? {
            let entry = entry.map_err(io_err(dir, "listing"))?;
            let name = entry.file_name();
            let Some(ip) = name.to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            let path = entry.path();
            let owner = match fs::read_to_string(&path) {
                Ok(c) => parse_owner(&c),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path, "reading allocation")(e)),
            };
            out.push((ip, owner));
        }
        out.sort_by_key(|(ip, _)| *ip);
        Ok(out)
    }

    /// The address held by `att`, if any: its index entry read, checked against the allocation
    /// it names (an entry a crash left stale is ignored).
    pub fn find(&self, att: &Attachment) -> Result<Option<Ipv4Addr>, IpamError> {
        let path = self.index_path(att);
        let entry = read_index(&path).map_err(io_err(&path, "reading attachment index"))?;
        match entry {
            // Still the allocation file of that address (not one a crash between releasing
            // the address and removing the index left behind, since reallocated or gone).
            Some(IndexEntry::Allocation { owner, ip, inode }) if owner.as_ref() == Some(att) => {
                let current = self.store.dir.join(ip.to_string());
                match fs::symlink_metadata(&current) {
                    Ok(m) if (m.dev(), m.ino()) == inode => Ok(Some(ip)),
                    Ok(_) => Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_err(&current, "reading allocation")(e)),
                }
            }
            Some(IndexEntry::Address(ip)) if self.owner(ip)?.as_ref() == Some(att) => Ok(Some(ip)),
            _ => Ok(None),
        }
    }

    /// Who holds `ip`: None when it is free. A corrupt allocation file counts as held, by nobody
    /// we can name, so it is never handed out twice.
    fn owner(&self, ip: Ipv4Addr) -> Result<Option<Attachment>, IpamError> {
        let path = self.store.dir.join(ip.to_string());
        match fs::read_to_string(&path) {
            Ok(c) => Ok(parse_owner(&c)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, "reading allocation")(e)),
        }
    }

    fn is_taken(&self, ip: Ipv4Addr) -> bool {
        fs::symlink_metadata(self.store.dir.join(ip.to_string())).is_ok()
    }

    /// The index entry of an attachment: named by a hash, since container IDs and interface
    /// names may hold characters that do not belong in one file name together.
    fn index_path(&self, att: &Attachment) -> PathBuf {
        let digest = Sha256::digest(
            format!("{}/{}", att.container_id.as_str(), att.ifname.as_str()).as_bytes(),
        );
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.store.dir.join(INDEX_DIR).join(hex)
    }

    /// Allocates an address to `att`: the one it already holds, else `requested`, else the
    /// next free one after the last handed out (round-robin through the range).
    pub fn allocate(
        &self,
        pool: &Pool,
        att: &Attachment,
        requested: Option<Ipv4Addr>,
    ) -> Result<Allocation, IpamError> {
        if let Some(ip) = self.find(att)? {
            return Ok(Allocation { ip, existing: true });
        }
        let last = self.store.dir.join(LAST_RESERVED);
        let cursor =
            open_last_reserved(&last).map_err(io_err(&last, "opening last reserved address"))?;
        let ip = match requested {
            Some(ip) => {
                if !pool.contains(ip) {
                    return Err(IpamError::RequestedOutOfRange {
                        ip,
                        subnet: pool.subnet,
                        range: pool.range_text(),
                    });
                }
                if self.is_taken(ip) {
                    return Err(IpamError::RequestedTaken {
                        ip,
                        owner: owner_text(&self.owner(ip)?),
                    });
                }
                ip
            }
            None => self.next_free(pool, read_last_reserved(&cursor))?,
        };
        self.write(ip, att)?;
        write_last_reserved(&cursor, ip)
            .map_err(io_err(&last, "recording last reserved address"))?;
        Ok(Allocation {
            ip,
            existing: false,
        })
    }

    /// Round-robin: the first address after the last one handed out that has no allocation
    /// file. Usually the first candidate, so this is one `stat`, not a scan of the range.
    fn next_free(&self, pool: &Pool, last: Option<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
        let (start, end) = (u32::from(pool.start), u32::from(pool.end));
        let size = end - start + 1;
        let last = last.map(u32::from).filter(|l| (start..=end).contains(l));
        // Start right after the last reservation, wrapping around the range.
        let first = last.map_or(start, |l| if l == end { start } else { l + 1 });
        for i in 0..size {
            let cand = start + (first - start + i) % size;
            if !self.is_taken(Ipv4Addr::from(cand)) {
                return Ok(Ipv4Addr::from(cand));
            }
        }
        let used = self
            .allocations()?
            .iter()
            .filter(|(ip, _)| pool.contains(*ip))
            .count() as u32;
        Err(IpamError::Exhausted {
            subnet: pool.subnet,
            range: pool.range_text(),
            used,
            size,
        })
    }

    fn write(&self, ip: Ipv4Addr, att: &Attachment) -> Result<(), IpamError> {
        let path = self.store.dir.join(ip.to_string());
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path, "recording allocation"))?;
        let body = format!(
            "{}\n{}\n{ip}",
            att.container_id.as_str(),
            att.ifname.as_str()
        );
        if let Err(e) = f.write_all(body.as_bytes()) {
            let _ = fs::remove_file(&path);
            return Err(io_err(&path, "recording allocation")(e));
        }
        let index = self.index_path(att);
        if let Err(e) = write_index(&path, &index) {
            let _ = fs::remove_file(&path);
            return Err(io_err(&index, "recording attachment index")(e));
        }
        Ok(())
    }

    fn remove_index(&self, att: &Attachment) -> Result<(), IpamError> {
        let path = self.index_path(att);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_err(&path, "removing attachment index")(e))
            }
            _ => Ok(()),
        }
    }

    fn remove(&self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let path = self.store.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path, "releasing allocation")(e)),
        }
    }

    /// Releases whatever `att` holds; releasing nothing is fine (DEL is idempotent).
    pub fn release(&self, att: &Attachment) -> Result<Vec<Ipv4Addr>, IpamError> {
        let mut freed = Vec::new();
        if let Some(ip) = self.find(att)? {
            self.remove(ip)?;
            freed.push(ip);
        }
        self.remove_index(att)?;
        Ok(freed)
    }

    /// GC: releases every allocation whose owner is not in `valid`, returning what was freed
    /// (owner None: the allocation file was unreadable).
    pub fn retain(
        &self,
        valid: &HashSet<Attachment>,
    ) -> Result<Vec<(Ipv4Addr, Option<Attachment>)>, IpamError> {
        let mut freed = Vec::new();
        for (ip, owner) in self.allocations()? {
            if owner.as_ref().is_some_and(|o| valid.contains(o)) {
                continue;
            }
            self.remove(ip)?;
            if let Some(att) = &owner {
                self.remove_index(att)?;
            }
            freed.push((ip, owner));
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests;
