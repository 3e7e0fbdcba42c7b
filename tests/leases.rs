//! The lease protocol against a real DynamoDB endpoint (moto's server on 127.0.0.1): the table
//! created in the KCL's shape, two workers sharing six shards, a steal refused to the worker it
//! was stolen from, a crashed worker's leases taken after an expiry judged on the taker's own
//! clock, a graceful release, and an attribute we do not know left as it was.

mod support;

use sluicegate::clock::ManualClock;
use sluicegate::coordination::dynamodb::{DynamoLeases, DynamoTarget};
use sluicegate::coordination::{Coordinator, Lease, LeaseError, LeaseTable, LeaseTiming};
use std::time::Duration;
use support::moto::Moto;

const D: Duration = Duration::from_secs(10);

fn table(moto: &Moto, name: &str) -> DynamoLeases {
    let t = DynamoLeases::connect(
        DynamoTarget {
            table: name.into(),
            region: "us-east-1".into(),
            endpoint: Some(moto.endpoint()),
        },
        Some(("testing", "testing")),
    )
    .unwrap();
    t.ensure_table().unwrap();
    t
}

/// One call of boto3's DynamoDB client against moto: what an operator's tool does to the table.
fn boto3(moto: &Moto, call: &str) {
    let py = format!(
        "import boto3; boto3.client('dynamodb', endpoint_url='{}', region_name='us-east-1', \
         aws_access_key_id='testing', aws_secret_access_key='testing').{call}",
        moto.endpoint()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &py])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn owners(t: &dyn LeaseTable, who: &str) -> usize {
    t.list()
        .unwrap()
        .iter()
        .filter(|l| l.owner.as_deref() == Some(who))
        .count()
}

#[test]
fn two_workers_share_six_shards_through_a_dynamodb_lease_table() {
    let moto = Moto::start();
    let t = table(&moto, "sluicegate-leases");
    // A second start finds the table and checks its key.
    table(&moto, "sluicegate-leases");
    for s in 0..6 {
        assert!(t.create(&Lease::new(&format!("shardId-{s:012}"), &[])).unwrap());
    }
    assert!(!t.create(&Lease::new("shardId-000000000000", &[])).unwrap());
    // An operator's attribute on one item, written by boto3: never clobbered.
    boto3(
        &moto,
        "update_item(TableName='sluicegate-leases', Key={'leaseKey': {'S': 'shardId-000000000003'}}, \
         UpdateExpression='SET operatorNote = :n', ExpressionAttributeValues={':n': {'S': 'keep me'}})",
    );

    let timing = LeaseTiming::from_duration(D);
    let (c1, c2) = (ManualClock::new(0), ManualClock::new(0));
    c2.advance_ns(5_000_000_000_000); // another host: another origin
    let mut w1 = Coordinator::new("w1", timing);
    let mut w2 = Coordinator::new("w2", timing);

    // Alone, w1 takes its share: all six.
    assert_eq!(w1.take(&t, &c1).unwrap().gained.len(), 6);
    assert_eq!(owners(&t, "w1"), 6);
    // w2 joins: nothing is free, so it steals one per listing until both hold three.
    for _ in 0..5 {
        w2.take(&t, &c2).unwrap();
        w1.renew(&t, &c1);
    }
    assert_eq!((owners(&t, "w1"), owners(&t, "w2")), (3, 3));
    assert_eq!(w1.valid(&c1).len(), 3, "w1 let go of what was stolen");

    // Fencing: a checkpoint with a counter from before a steal is refused.
    let (key, held) = w2.valid(&c2).into_iter().next().unwrap();
    let stale = held.counter;
    let fresh = t
        .checkpoint(
            &key,
            stale,
            "w2",
            "49590338271490256608559692538361571095921575989136588898",
        )
        .unwrap();
    w2.checkpointed(&key, fresh);
    assert_eq!(t.checkpoint(&key, stale, "w2", "1"), Err(LeaseError::Lost(key.clone())));
    assert_eq!(
        t.checkpoint(&key, fresh, "w1", "1"),
        Err(LeaseError::Lost(key.clone())),
        "not the owner"
    );

    // w1 dies. w2 first sees its counters, then, a lease duration later on its own clock, takes
    // them all (its share grows as w1's leases expire).
    w2.take(&t, &c2).unwrap();
    c2.advance_ns(D.as_nanos() as u64);
    w2.renew(&t, &c2);
    for _ in 0..3 {
        w2.take(&t, &c2).unwrap();
    }
    assert_eq!(owners(&t, "w2"), 6);
    // Every lease changed owner since its last checkpoint counts it (KCL's statistic).
    let all = t.list().unwrap();
    assert!(
        all.iter().filter(|l| l.key != key).all(|l| l.owner_switches >= 1),
        "{all:?}"
    );
    let l = t.get("shardId-000000000003").unwrap().unwrap();
    assert!(
        l.other.get("operatorNote").is_some_and(|v| v.contains("keep me")),
        "{:?}",
        l.other
    );

    // A graceful stop releases everything: no owner left.
    w2.release_all(&t);
    assert_eq!(owners(&t, "w2"), 0);
    assert!(t.list().unwrap().iter().all(|l| l.owner.is_none()));
}

#[test]
fn a_table_with_another_key_is_refused_with_its_name_and_endpoint() {
    let moto = Moto::start();
    boto3(
        &moto,
        "create_table(TableName='not-leases', KeySchema=[{'AttributeName': 'id', 'KeyType': 'HASH'}], \
         AttributeDefinitions=[{'AttributeName': 'id', 'AttributeType': 'S'}], BillingMode='PAY_PER_REQUEST')",
    );
    let t = DynamoLeases::connect(
        DynamoTarget {
            table: "not-leases".into(),
            region: "us-east-1".into(),
            endpoint: Some(moto.endpoint()),
        },
        Some(("testing", "testing")),
    )
    .unwrap();
    let e = t.ensure_table().unwrap_err();
    assert!(e.contains("table \"not-leases\" at http://127.0.0.1:"), "{e}");
    assert!(
        e.contains("[\"id\"], not the lease table's (hash key \"leaseKey\")"),
        "{e}"
    );
}
