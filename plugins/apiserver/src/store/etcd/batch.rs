//! Group commit on etcd: concurrent writes go to etcd as one transaction, each write a nested transaction with its own compare.
//!
//! etcd spends most of a write's cost per request (gRPC, raft proposal, fsync,
//! watch notification), so writes queued while earlier groups are in flight are
//! sent together. The outer transaction has no compare; each write is a nested
//! transaction (etcd 3.3 and later) whose compare decides it alone, and whose
//! answer is its own in the outer answer. A group's writes share one etcd revision
//! (their `resourceVersion`); etcd sends their events in one watch response.
//!
//! etcd refuses a transaction that writes one key twice, so a group holds
//! distinct keys: a write to a key already in the group waits for the next one.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use etcd_client::{KvClient, Txn, TxnOp, TxnOpResponse, TxnResponse};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tracing::warn;

use super::shared::Shared;
use super::{codec, describe, never_sent};
use crate::store::{Revision, StoreError};

/// Groups sent to etcd at once; a write arriving while they are in flight waits
/// for the next group.
const IN_FLIGHT: usize = 4;

/// Most writes in one group (etcd refuses more than `--max-txn-ops`, 128 by default).
const MAX_WRITES: usize = 64;

/// Most value bytes in one group (etcd refuses requests over `--max-request-bytes`,
/// 1.5 MiB by default); a larger write goes alone.
const MAX_BYTES: usize = 512 * 1024;

/// One write's transaction, waiting to be sent.
pub(super) struct Write {
    /// What it does (`create pods/default/a`), for messages.
    pub what: String,
    /// The etcd key the transaction writes (no two in one group).
    pub etcd_key: String,
    /// The write's own transaction.
    pub txn: Txn,
    /// Size of the value it puts.
    pub bytes: usize,
    /// Where its answer goes.
    pub reply: oneshot::Sender<Result<Answer, StoreError>>,
}

/// etcd's answer to one write.
#[derive(Debug)]
pub(super) struct Answer {
    /// The revision of the etcd transaction that carried the write (the write's
    /// revision when its compare held).
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
                && bytes + write.bytes <= MAX_BYTES
                && !keys.contains(&write.etcd_key));
        if !fits {
            return Some(write);
        }
        bytes += write.bytes;
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
        group
            .iter()
            .map(|write| TxnOp::txn(write.txn.clone()))
            .collect::<Vec<_>>(),
    );
    match commit(shared, kv.clone(), &what, txn).await {
        Ok(response) => {
            let revision = revision(shared, &response);
            let mut answers = response.op_responses().into_iter();
            for write in group {
                let answer = match answers.next() {
                    Some(TxnOpResponse::Txn(response)) => Ok(Answer { revision, response }),
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

/// Sends one write's own transaction and answers it.
async fn send_alone(shared: &Shared, kv: KvClient, write: Write) {
    let answer = match commit(shared, kv, &write.what, write.txn).await {
        Ok(response) => Ok(Answer {
            revision: revision(shared, &response),
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

/// The revision a transaction's answer reports, noted as reached by etcd.
fn revision(shared: &Shared, response: &TxnResponse) -> Revision {
    let revision = response
        .header()
        .map_or(0, |header| codec::revision(header.revision()));
    shared.reach(revision);
    revision
}
