//! Group commit on etcd: concurrent writes go to etcd as one transaction, each write a nested transaction with its own compare.
//!
//! etcd spends most of a write's cost per request (gRPC, raft proposal, fsync,
//! watch notification), so writes queued while earlier groups are in flight are
//! sent together. The outer transaction has no compare; each write is a nested
//! transaction (etcd 3.3 and later) whose compare decides it alone, and whose
//! answer is its own in the outer answer. A group's writes share one etcd revision
//! and each has its own resourceVersion: the revision × 64 + its index (see
//! [`codec`]). A put's index is its place in the group, written into its value; a
//! delete's is the one after the previous write of the group that applied (0
//! for the first), which the watch feed derives the same way from the events of
//! the revision, as etcd sends them in one watch response and in order.
//!
//! etcd refuses a transaction that writes one key twice, so a group holds
//! distinct keys: a write to a key already in the group waits for the next one.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tracing::warn;

use super::shared::Shared;
use super::{codec, describe, never_sent};
use crate::store::{Revision, StoreError};

/// Groups sent to etcd at once; a write arriving while they are in flight waits
/// for the next group.
const IN_FLIGHT: usize = 4;

/// Most writes in one group (etcd refuses more than `--max-txn-ops`, 128 by default):
/// as many as a revision has resourceVersions.
const MAX_WRITES: usize = codec::PER_REVISION as usize;

/// Most value bytes in one group (etcd refuses requests over `--max-request-bytes`,
/// 1.5 MiB by default); a larger write goes alone.
const MAX_BYTES: usize = 512 * 1024;

/// One write, waiting to be sent.
pub(super) struct Write {
    /// What it does (`create pods/default/a`), for messages.
    pub what: String,
    /// The etcd key it writes (no two in one group).
    pub etcd_key: String,
    /// What it does to the key.
    pub change: Change,
    /// Where its answer goes.
    pub reply: oneshot::Sender<Result<Answer, StoreError>>,
}

/// What a write does to its key. Values come from [`codec::encode`].
pub(super) enum Change {
    /// Puts the value unless the key exists.
    Create(Vec<u8>),
    /// Puts the value if the key's resourceVersion is the expected one (or, with
    /// none, if the key exists); answers the previous key, or the current one
    /// when refused.
    Update(Vec<u8>, Option<Revision>),
    /// Deletes the key on the same condition; answers the deleted key, or the
    /// current one when refused.
    Delete(Option<Revision>),
}

impl Write {
    /// Size of the value it puts.
    fn bytes(&self) -> usize {
        match &self.change {
            Change::Create(value) | Change::Update(value, _) => value.len(),
            Change::Delete(_) => 0,
        }
    }

    /// Its own transaction, as the `index`th write of its group.
    pub(super) fn txn(&self, index: u64) -> Txn {
        let key = self.etcd_key.as_str();
        let indexed = |value: &Vec<u8>| {
            let mut value = value.clone();
            codec::set_index(&mut value, index);
            value
        };
        match &self.change {
            Change::Create(value) => Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, indexed(value), None)]),
            Change::Update(value, expected) => Txn::new()
                .when(expectation(key, *expected))
                .and_then([TxnOp::put(
                    key,
                    indexed(value),
                    Some(PutOptions::new().with_prev_key()),
                )])
                .or_else([TxnOp::get(key, None)]),
            Change::Delete(expected) => Txn::new()
                .when(expectation(key, *expected))
                .and_then([TxnOp::delete(
                    key,
                    Some(DeleteOptions::new().with_prev_key()),
                )])
                .or_else([TxnOp::get(key, None)]),
        }
    }
}

/// The condition of an update or delete: that the key's resourceVersion is
/// `expected` (its mod_revision is `expected / 64` and its value holds the index
/// `expected % 64`), or that the key exists. A compare of a value fails on a
/// missing key, so an expected resourceVersion never matches one.
fn expectation(etcd_key: &str, expected: Option<Revision>) -> Vec<Compare> {
    let Some(expected) = expected else {
        return vec![Compare::create_revision(etcd_key, CompareOp::Greater, 0)];
    };
    let index = expected % codec::PER_REVISION;
    let mut compares = vec![
        Compare::mod_revision(etcd_key, CompareOp::Equal, codec::etcd_revision(expected)),
        Compare::value(etcd_key, CompareOp::Less, codec::index_prefix(index + 1)),
    ];
    if index > 0 {
        compares.push(Compare::value(
            etcd_key,
            CompareOp::Greater,
            codec::index_prefix(index),
        ));
    }
    compares
}

/// etcd's answer to one write.
#[derive(Debug)]
pub(super) struct Answer {
    /// The write's resourceVersion, when its compare held.
    pub revision: Revision,
    /// The answer to the write's own transaction.
    pub response: TxnResponse,
}

/// Takes queued writes and sends them in groups, at most [`IN_FLIGHT`] at a time,
/// until every sender is dropped. Writes whose caller stopped waiting (its request
/// timed out) are not sent.
pub(super) async fn run(shared: Arc<Shared>, kv: KvClient, mut writes: mpsc::Receiver<Write>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut sending = JoinSet::new();
    let mut waiting: VecDeque<Write> = VecDeque::new();
    loop {
        while sending.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match waiting.pop_front() {
            Some(write) => write,
            None => match writes.recv().await {
                Some(write) => write,
                None => break,
            },
        };
        let group = gather(first, &mut waiting, &mut writes);
        if group.is_empty() {
            continue;
        }
        let (shared, kv) = (shared.clone(), kv.clone());
        sending.spawn(async move {
            send(&shared, kv, group).await;
            drop(slot);
        });
    }
    while sending.join_next().await.is_some() {}
}

/// A group starting with `first`: the writes that waited for a later group, then
/// queued ones, up to the group's limits. A write that does not fit waits.
fn gather(
    first: Write,
    waiting: &mut VecDeque<Write>,
    writes: &mut mpsc::Receiver<Write>,
) -> Vec<Write> {
    let mut group = Vec::new();
    let mut keys = HashSet::new();
    let mut bytes = 0;
    let mut offer = |write: Write, group: &mut Vec<Write>| -> Option<Write> {
        if write.reply.is_closed() {
            return None;
        }
        let fits = group.is_empty()
            || (group.len() < MAX_WRITES
                && bytes + write.bytes() <= MAX_BYTES
                && !keys.contains(&write.etcd_key));
        if !fits {
            return Some(write);
        }
        bytes += write.bytes();
        keys.insert(write.etcd_key.clone());
        group.push(write);
        None
    };
    let mut rest = offer(first, &mut group)
        .into_iter()
        .collect::<VecDeque<_>>();
    for write in waiting.drain(..) {
        rest.extend(offer(write, &mut group));
    }
    while group.len() < MAX_WRITES && rest.len() < MAX_WRITES {
        let Ok(write) = writes.try_recv() else { break };
        rest.extend(offer(write, &mut group));
    }
    *waiting = rest;
    group
}

/// Sends one group and answers its writes. A group etcd refuses as a whole (an
/// etcd configured with a lower `--max-txn-ops`, say) is sent again write by write.
pub(super) async fn send(shared: &Shared, kv: KvClient, mut group: Vec<Write>) {
    if group.len() == 1 {
        if let Some(write) = group.pop() {
            send_alone(shared, kv, write).await;
        }
        return;
    }
    let what = format!("{} writes ({}, ...)", group.len(), group[0].what);
    let txn = Txn::new().and_then(
        (0..)
            .zip(&group)
            .map(|(index, write)| TxnOp::txn(write.txn(index)))
            .collect::<Vec<_>>(),
    );
    match commit(shared, kv.clone(), &what, txn).await {
        Ok(response) => {
            let raw = revision(shared, &response);
            let mut answers = response.op_responses().into_iter();
            let mut last_applied = None;
            for (index, write) in (0..).zip(group) {
                let answer = match answers.next() {
                    Some(TxnOpResponse::Txn(response)) => {
                        let index = match write.change {
                            Change::Delete(_) => last_applied.map_or(0, |last| last + 1),
                            Change::Create(_) | Change::Update(..) => index,
                        };
                        if response.succeeded() {
                            last_applied = Some(index);
                        }
                        Ok(Answer {
                            revision: codec::resource_version(raw, index),
                            response,
                        })
                    }
                    _ => Err(shared.unavailable(
                        &what,
                        format!("etcd's answer lacks the one to {}", write.what),
                    )),
                };
                let _ = write.reply.send(answer);
            }
        }
        Err(failure) if failure.refused => {
            warn!(etcd = %shared.endpoints, writes = group.len(), error = %failure.error, "etcd refused a group of writes; sending them one by one");
            let alone = group
                .into_iter()
                .map(|write| send_alone(shared, kv.clone(), write));
            futures::future::join_all(alone).await;
        }
        Err(failure) => {
            for write in group {
                let _ = write.reply.send(Err(failure.error.clone()));
            }
        }
    }
}

/// Sends one write's own transaction (the only write of its revision: index 0)
/// and answers it.
async fn send_alone(shared: &Shared, kv: KvClient, write: Write) {
    let answer = match commit(shared, kv, &write.what, write.txn(0)).await {
        Ok(response) => Ok(Answer {
            revision: codec::resource_version(revision(shared, &response), 0),
            response,
        }),
        Err(failure) => Err(failure.error),
    };
    let _ = write.reply.send(answer);
}

/// Why a transaction failed; `refused` when etcd answered that it is invalid (so
/// the same writes may pass in smaller transactions).
struct Failure {
    /// The error the writes answer.
    error: StoreError,
    /// etcd refused the request as invalid.
    refused: bool,
}

/// Runs one transaction within the request timeout, trying another member when
/// the chosen one could not be reached.
async fn commit(
    shared: &Shared,
    mut kv: KvClient,
    what: &str,
    txn: Txn,
) -> Result<TxnResponse, Failure> {
    let timeout = shared.request_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut attempts = 0;
    let (reason, refused) = loop {
        attempts += 1;
        match tokio::time::timeout_at(deadline, kv.txn(txn.clone())).await {
            Ok(Ok(response)) => return Ok(response),
            // The client balances over every endpoint, a dead member's too: a
            // request that could not even connect was never sent, so another
            // member may take it.
            Ok(Err(err)) if never_sent(&err) && attempts < 2 * shared.members() => continue,
            Ok(Err(err)) => break (describe(&err), invalid(&err)),
            Err(_) => break (format!("no answer within {timeout:?}"), false),
        }
    };
    Err(Failure {
        error: shared.unavailable(what, reason),
        refused,
    })
}

/// Whether etcd refused a request as invalid (too many operations, too large).
fn invalid(err: &etcd_client::Error) -> bool {
    matches!(err, etcd_client::Error::GRpcStatus(status) if format!("{:?}", status.code()) == "InvalidArgument")
}

/// The etcd revision a transaction's answer reports, noted as reached by etcd.
fn revision(shared: &Shared, response: &TxnResponse) -> i64 {
    let revision = response.header().map_or(0, |header| header.revision());
    shared.reach(codec::complete(revision));
    revision
}
