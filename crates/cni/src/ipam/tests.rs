use super::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::os::unix::fs::symlink;

fn att(c: &str, i: &str) -> Attachment {
    Attachment {
        container_id: ContainerId::parse(c).unwrap(),
        ifname: IfName::parse(i).unwrap(),
    }
}

fn pool(cidr: &str) -> Pool {
    Pool::whole(cidr.parse().unwrap())
}

#[test]
fn default_range_skips_network_node_broadcast() {
    let p = pool("10.244.1.0/24");
    assert_eq!(p.start, Ipv4Addr::new(10, 244, 1, 2));
    assert_eq!(p.end, Ipv4Addr::new(10, 244, 1, 254));
    assert_eq!(p.size(), 253);
    assert_eq!(p.range_text(), ".2-.254");
    let small = pool("10.0.0.0/30");
    assert_eq!(small.size(), 1);
    assert_eq!(
        pool("10.244.0.0/16").range_text(),
        "10.244.0.2-10.244.255.254"
    );
}

#[test]
fn the_store_directory_is_root_only_and_closed_again_when_found_open() {
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let root = tempfile::tempdir().unwrap();
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = root.path().join("ipam");
    let store = Store::new(&data_dir, "net");
    store
        .lock()
        .unwrap()
        .allocate(&pool("10.244.1.0/24"), &att("c1", "eth0"), None)
        .unwrap();
    assert_eq!(mode(store.dir()), 0o700);
    assert_eq!(
        mode(&data_dir),
        0o700,
        "a missing dataDir is made root only too"
    );
    assert_eq!(
        mode(root.path()),
        0o755,
        "an existing parent is not the store's"
    );
    // An existing store open to others (an older weft's 0755): closed on the next run.
    fs::set_permissions(store.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let l = store.lock().unwrap();
    assert_eq!(mode(store.dir()), 0o700);
    assert_eq!(
        l.allocations().unwrap().len(),
        1,
        "its allocations are kept"
    );
}

#[test]
fn allocate_is_idempotent_round_robin_and_releases() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), "net");
    let p = pool("10.244.1.0/24");
    let l = store.lock().unwrap();
    let a = l.allocate(&p, &att("c1", "eth0"), None).unwrap();
    assert_eq!(
        a,
        Allocation {
            ip: Ipv4Addr::new(10, 244, 1, 2),
            existing: false
        }
    );
    let again = l.allocate(&p, &att("c1", "eth0"), None).unwrap();
    assert_eq!(
        again,
        Allocation {
            ip: a.ip,
            existing: true
        }
    );
    let b = l.allocate(&p, &att("c1", "eth1"), None).unwrap();
    assert_eq!(b.ip, Ipv4Addr::new(10, 244, 1, 3));
    assert_eq!(l.release(&att("c1", "eth0")).unwrap(), vec![a.ip]);
    assert!(l.release(&att("c1", "eth0")).unwrap().is_empty());
    assert!(l.release(&att("unknown", "eth0")).unwrap().is_empty());
    // Round-robin: .2 was freed but the next one is .4.
    let c = l.allocate(&p, &att("c2", "eth0"), None).unwrap();
    assert_eq!(c.ip, Ipv4Addr::new(10, 244, 1, 4));
    let content = fs::read_to_string(store.dir().join("10.244.1.4")).unwrap();
    assert_eq!(content, "c2\neth0\n10.244.1.4");
    assert_eq!(l.find(&att("c2", "eth0")).unwrap(), Some(c.ip));
    // The index is a second name of the allocation file, not a file of its own.
    let index = fs::metadata(l.index_path(&att("c2", "eth0"))).unwrap();
    let allocation = fs::metadata(store.dir().join("10.244.1.4")).unwrap();
    assert_eq!(index.ino(), allocation.ino());
    assert_eq!(allocation.nlink(), 2);
}

#[test]
fn stores_with_symlink_indexes_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), "net");
    let p = pool("10.244.1.0/24");
    let l = store.lock().unwrap();
    // As the plugin wrote them before the hard links: a two-line allocation, a symlink.
    let a = att("old", "eth0");
    fs::write(store.dir().join("10.244.1.7"), "old\neth0").unwrap();
    let index = l.index_path(&a);
    fs::create_dir_all(index.parent().unwrap()).unwrap();
    symlink("10.244.1.7", &index).unwrap();
    assert_eq!(l.find(&a).unwrap(), Some(Ipv4Addr::new(10, 244, 1, 7)));
    let again = l.allocate(&p, &a, None).unwrap();
    assert_eq!(again.ip, Ipv4Addr::new(10, 244, 1, 7));
    assert!(again.existing);
    assert_eq!(l.release(&a).unwrap(), vec![Ipv4Addr::new(10, 244, 1, 7)]);
    assert!(fs::symlink_metadata(&index).is_err());
    assert!(l.allocations().unwrap().is_empty());
}

#[test]
fn an_index_left_by_a_crashed_release_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), "net");
    let p = pool("10.244.1.0/24");
    let l = store.lock().unwrap();
    let a = att("a", "eth0");
    let ip = l
        .allocate(&p, &a, Some(Ipv4Addr::new(10, 244, 1, 9)))
        .unwrap()
        .ip;
    // A crash after the allocation file went, before the index did: the index still
    // names the address (its inode lives on through it).
    l.remove(ip).unwrap();
    assert_eq!(l.find(&a).unwrap(), None);
    // The address goes to someone else: still not a's.
    let b = att("b", "eth0");
    assert_eq!(l.allocate(&p, &b, Some(ip)).unwrap().ip, ip);
    assert_eq!(l.find(&a).unwrap(), None);
    assert_eq!(l.find(&b).unwrap(), Some(ip));
    // a's next ADD gets a fresh address and a fresh index.
    let again = l.allocate(&p, &a, None).unwrap();
    assert!(!again.existing);
    assert_ne!(again.ip, ip);
    assert_eq!(l.find(&a).unwrap(), Some(again.ip));
}

#[test]
fn requested_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), "net");
    let p = pool("10.244.1.0/24");
    let l = store.lock().unwrap();
    let want = Ipv4Addr::new(10, 244, 1, 77);
    assert_eq!(
        l.allocate(&p, &att("a", "eth0"), Some(want)).unwrap().ip,
        want
    );
    let e = l.allocate(&p, &att("b", "eth0"), Some(want)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "requested address 10.244.1.77 is already allocated to a/eth0"
    );
    let e = l
        .allocate(&p, &att("b", "eth0"), Some(Ipv4Addr::new(10, 244, 1, 1)))
        .unwrap_err();
    assert!(matches!(e, IpamError::RequestedOutOfRange { .. }), "{e}");
}

#[test]
fn stores_written_before_the_symlink_index_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), "net");
    let p = pool("10.244.1.0/24");
    let l = store.lock().unwrap();
    // As the plugin wrote them before: a regular index file, a cursor without padding.
    let a = att("old", "eth0");
    fs::write(store.dir().join("10.244.1.9"), "old\neth0").unwrap();
    let index = l.index_path(&a);
    fs::create_dir_all(index.parent().unwrap()).unwrap();
    fs::write(&index, "10.244.1.9").unwrap();
    fs::write(store.dir().join(LAST_RESERVED), "10.244.1.200").unwrap();
    assert_eq!(l.find(&a).unwrap(), Some(Ipv4Addr::new(10, 244, 1, 9)));
    // The cursor is read, then overwritten in place: nothing of the longer address stays.
    let b = l.allocate(&p, &att("new", "eth0"), None).unwrap();
    assert_eq!(b.ip, Ipv4Addr::new(10, 244, 1, 201));
    let c = l.allocate(&p, &att("newer", "eth0"), None).unwrap();
    assert_eq!(c.ip, Ipv4Addr::new(10, 244, 1, 202));
    let cursor = fs::read_to_string(store.dir().join(LAST_RESERVED)).unwrap();
    assert_eq!(cursor.trim(), "10.244.1.202");
    assert_eq!(l.release(&a).unwrap(), vec![Ipv4Addr::new(10, 244, 1, 9)]);
    assert!(!index.exists());
}

#[test]
fn a_stale_index_entry_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), "net");
    let p = pool("10.244.1.0/24");
    let l = store.lock().unwrap();
    let a = att("c", "eth0");
    // A crash between the index and the allocation: the entry names a free address.
    let index = l.index_path(&a);
    fs::create_dir_all(index.parent().unwrap()).unwrap();
    symlink("10.244.1.50", &index).unwrap();
    assert_eq!(l.find(&a).unwrap(), None);
    let got = l.allocate(&p, &a, None).unwrap();
    assert_eq!(got.ip, Ipv4Addr::new(10, 244, 1, 2));
    assert_eq!(l.find(&a).unwrap(), Some(got.ip));
}

#[test]
fn exhaustion_message_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), "net");
    let p = pool("10.244.1.0/24");
    let l = store.lock().unwrap();
    for i in 0..253 {
        l.allocate(&p, &att(&format!("c{i}"), "eth0"), None)
            .unwrap();
    }
    let e = l.allocate(&p, &att("late", "eth0"), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no free address in 10.244.1.0/24 (range .2-.254): 253 of 253 allocated"
    );
    // A corrupt file counts as allocated but is collected by GC.
    fs::write(store.dir().join("10.244.1.254"), "garbage").unwrap();
    let valid: HashSet<Attachment> = (0..10).map(|i| att(&format!("c{i}"), "eth0")).collect();
    let freed = l.retain(&valid).unwrap();
    assert_eq!(freed.len(), 243);
    assert!(freed.iter().any(|(_, o)| o.is_none()));
    assert_eq!(l.allocations().unwrap().len(), 10);
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(u8),
    Release(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..10).prop_map(Op::Alloc),
        (0u8..10).prop_map(Op::Release)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Random interleavings never give one address to two attachments, repeated
    /// allocations are stable, and exhaustion happens only when the range is full.
    #[test]
    fn never_double_allocates(ops in proptest::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "net");
        // /29: range .2-.6, five addresses for ten attachments.
        let p = pool("10.9.0.0/29");
        let mut model: HashMap<u8, Ipv4Addr> = HashMap::new();
        for op in ops {
            let l = store.lock().unwrap();
            match op {
                Op::Alloc(k) => {
                    let a = att(&format!("c{k}"), "eth0");
                    match l.allocate(&p, &a, None) {
                        Ok(got) => {
                            if let Some(prev) = model.get(&k) {
                                prop_assert_eq!(*prev, got.ip);
                                prop_assert!(got.existing);
                            }
                            prop_assert!(p.contains(got.ip));
                            for (other, ip) in &model {
                                if *other != k {
                                    prop_assert_ne!(*ip, got.ip);
                                }
                            }
                            model.insert(k, got.ip);
                        }
                        Err(IpamError::Exhausted { .. }) => {
                            prop_assert_eq!(model.len() as u32, p.size());
                            prop_assert!(!model.contains_key(&k));
                        }
                        Err(e) => prop_assert!(false, "unexpected {}", e),
                    }
                }
                Op::Release(k) => {
                    let freed = l.release(&att(&format!("c{k}"), "eth0")).unwrap();
                    prop_assert_eq!(freed, model.remove(&k).into_iter().collect::<Vec<_>>());
                }
            }
            let on_disk: HashMap<Ipv4Addr, Option<Attachment>> =
                l.allocations().unwrap().into_iter().collect();
            prop_assert_eq!(on_disk.len(), model.len());
        }
    }
}
