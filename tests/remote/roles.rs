//! An id names bytes, not a role (src/repo/reach.rs): a file may hold exactly the bytes of
//! another file's chunk-list node (a container can write one on purpose). Push and fetch
//! carry what the list reaches even when the other side already holds those bytes as a plain
//! chunk; before, both skipped the list and a clone lacked the big file's pages.

use super::{laptop_and_dir_remote, same_tree, Host, Vars};
use crate::support::{noise, write};
use dvol::store::{ListEntry, ListNode, ObjectId};

const CHUNK: usize = 8192;

/// A page-aligned file (stored in 8 KiB chunks under one list node) and that node's bytes.
fn file_and_its_list_node() -> (Vec<u8>, Vec<u8>) {
    let data = noise(41, 20 * CHUNK);
    let entries = data
        .chunks(CHUNK)
        .map(|c| ListEntry {
            id: ObjectId::hash(c),
            len: CHUNK as u64,
        })
        .collect();
    let node = postcard::to_stdvec(&ListNode { level: 0, entries }).unwrap();
    (data, node)
}

#[test]
fn remote_carries_a_list_whose_bytes_it_already_holds_as_a_chunk() {
    let (_remote, url, laptop, live) = laptop_and_dir_remote();
    let url = url.as_str();
    let vars = Vars::new();
    let (data, node) = file_and_its_list_node();
    write(&live.join("node-bytes"), &node);
    laptop.commit("a file equal to a list node");
    laptop.ok(&["remote", "add", "origin", url]);
    laptop.ok(&["push"]);
    let qa = Host::new(&vars);
    qa.ok(&["clone", url, "db"]);

    write(&live.join("big"), &data);
    laptop.commit("the file whose list node that is");
    laptop.ok(&["push"]);
    // Fetch: qa holds the node's bytes as a chunk already.
    qa.ok(&["pull"]);
    same_tree(&live, &qa.live());
    assert!(qa.ok(&["fsck"]).contains("no problems"));
    // Push: the remote held them as a chunk too.
    let prod = Host::new(&vars);
    prod.ok(&["clone", url, "db"]);
    same_tree(&live, &prod.live());
    let report = laptop.ok(&["fsck", "--remote", "origin"]);
    assert!(report.contains("no problems"), "{report}");
}
