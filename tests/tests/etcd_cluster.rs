//! The apiserver on a 3-member etcd cluster (loopback ports) keeps serving when one
//! member is killed during a write load, and loses no acknowledged write: a second
//! apiserver started afterwards on the surviving members lists every one of them.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kubernel_e2e::{free_ports, Cluster, ETCD_BIN};
use serde_json::Value;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// One member of a 3-member etcd cluster.
struct Member {
    child: Option<Child>,
    client: String,
    health: String,
    log: std::path::PathBuf,
}

impl Member {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts three etcd members that form one cluster and waits until all are healthy.
/// The ports are picked free but bound by etcd only later: when another test took
/// one in between, the cluster is started again on new ports (at most 3 times).
fn etcd_cluster(dir: &std::path::Path) -> Result<Vec<Member>> {
    for attempt in 1.. {
        match try_etcd_cluster(&dir.join(format!("attempt-{attempt}"))) {
            Err(e) if attempt < 3 && e.to_string().contains("address already in use") => {}
            result => return result,
        }
    }
    unreachable!("the third attempt returns")
}

fn try_etcd_cluster(dir: &std::path::Path) -> Result<Vec<Member>> {
    std::fs::create_dir_all(dir)?;
    let ports: Vec<(u16, u16, u16)> = free_ports(9)?
        .chunks(3)
        .map(|p| (p[0], p[1], p[2]))
        .collect();
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer, _))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect();
    let mut members = Vec::new();
    for (i, (client, peer, metrics)) in ports.iter().enumerate() {
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = dir.join(format!("m{i}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(ETCD_BIN)
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(dir.join(format!("m{i}")))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "kubernel-test"])
            .args([
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{metrics}"),
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {ETCD_BIN} (scripts/setup installs etcd-server)"))?;
        members.push(Member {
            child: Some(child),
            client: client_url,
            health: format!("http://127.0.0.1:{metrics}/health"),
            log,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for m in &mut members {
        loop {
            let healthy = ureq::get(&m.health)
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .is_some_and(|b| b.contains("\"true\""));
            if healthy {
                break;
            }
            let exited = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                bail!(
                    "etcd member {} exited or was not healthy within 30 s:\n{log}",
                    m.client
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(members)
}

fn apiserver_on(endpoints: &[&str]) -> Result<Cluster> {
    Cluster::start_on_etcd_members(endpoints, "etcd_request_timeout = \"2s\"\n")
}

fn create(c: &Cluster, name: &str) -> Result<u16> {
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"n":"{name}"}}}}"#
    );
    Ok(
        c.send("POST", CONFIGMAPS, "application/json", body.as_bytes())?
            .0,
    )
}

#[test]
fn killing_one_of_three_etcd_members_should_lose_no_acknowledged_write() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut members = etcd_cluster(dir.path())?;
    let endpoints: Vec<String> = members.iter().map(|m| m.client.clone()).collect();
    let refs: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let c = apiserver_on(&refs)?;

    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 150;
    let after_kill = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| -> Result<()> {
        for w in 0..WRITERS {
            let (c, acked, failed, stop) = (&c, acknowledged.clone(), failed.clone(), stop.clone());
            let (after_kill, killed) = (after_kill.clone(), killed.clone());
            s.spawn(move || {
                for i in 0..PER_WRITER {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let name = format!("w{w}-{i}");
                    match create(c, &name) {
                        Ok(201) => {
                            if killed.load(Ordering::SeqCst) {
                                after_kill.fetch_add(1, Ordering::SeqCst);
                            }
                            if let Ok(mut a) = acked.lock() {
                                a.insert(name);
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
        // Kill the member the apiserver lists first once a quarter of the load is in.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged.lock().map(|a| a.len()).unwrap_or(0) < WRITERS * PER_WRITER / 4 {
            if Instant::now() > deadline {
                stop.store(true, Ordering::SeqCst);
                bail!("the write load did not start");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        members[0].kill();
        killed.store(true, Ordering::SeqCst);
        Ok(())
    })?;

    let acked = acknowledged.lock().map(|a| a.clone()).unwrap_or_default();
    let after = after_kill.load(Ordering::SeqCst);
    println!(
        "acknowledged {} writes ({after} after the kill), {} failed",
        acked.len(),
        failed.load(Ordering::SeqCst)
    );
    assert!(
        after >= WRITERS * PER_WRITER / 4,
        "the cluster kept serving after the kill: only {after} writes acknowledged since"
    );
    assert!(create(&c, "after-the-load")? == 201, "writes work again");
    for _ in 0..10 {
        let (status, body) = c.get("/readyz")?;
        assert_eq!(status, 200, "ready with two of three members: {body}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // A fresh apiserver on the two survivors lists from etcd itself.
    let fresh = apiserver_on(&refs[1..])?;
    let (status, body) = fresh.get(CONFIGMAPS)?;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body)?;
    let stored: BTreeSet<String> = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    Ok(())
}
