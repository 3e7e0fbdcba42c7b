//! The lease table in DynamoDB: the KCL's schema (hash key `leaseKey`, a string), so the
//! KCL's tooling and an operator's dashboards read it.
//!
//! Owns: the client (on a small tokio runtime of its own, like the other AWS clients), the
//! table's creation when it is missing — on-demand billing: a fleet's lease traffic is a few
//! small writes per shard per renew interval, spiky when workers come and go, which
//! provisioned capacity would either waste or throttle — or the check of its key schema when it
//! exists, and the conditional writes of [`LeaseTable`]. Each write names only the attributes
//! it sets, so attributes this version does not know (a newer KCL's, an operator's) stay.
//!
//! Bounds: one call per table operation (a scan pages through at most the table); calls are
//! blocking, from the engine's supervisor thread, never from a core; the SDK's own retries are
//! [`CALL_ATTEMPTS_MAX`].

use super::{attr, Lease, LeaseError, LeaseTable, TRIM_HORIZON};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use std::collections::{BTreeMap, HashMap};

/// Threads of the lease table's runtime: its calls come from one thread at a time.
pub const RUNTIME_THREADS: usize = 1;
/// Attempts per call, the SDK's retries included: a lease call that fails is tried again at the
/// next renew or take interval, so the SDK need not try long.
pub const CALL_ATTEMPTS_MAX: u32 = 2;
/// How long `ensure_table` waits for a table it created to become active.
pub const TABLE_ACTIVE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Where the table is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoTarget {
    pub table: String,
    /// Empty: the provider chain's region.
    pub region: String,
    /// A local or private endpoint (moto, a VPC endpoint); none: AWS's.
    pub endpoint: Option<String>,
}

pub struct DynamoLeases {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_dynamodb::Client,
    target: DynamoTarget,
}

type Item = HashMap<String, AttributeValue>;

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn num(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn strings(item: &Item, name: &str) -> Vec<String> {
    match item.get(name) {
        Some(AttributeValue::Ss(v)) => v.clone(),
        Some(AttributeValue::S(v)) => vec![v.clone()],
        _ => Vec::new(),
    }
}

const KNOWN: [&str; 8] = [
    attr::LEASE_KEY,
    attr::LEASE_OWNER,
    attr::LEASE_COUNTER,
    attr::CHECKPOINT,
    attr::CHECKPOINT_SUB,
    attr::OWNER_SWITCHES,
    attr::PARENT_SHARD_ID,
    attr::CHILD_SHARD_IDS,
];

fn lease_of(item: &Item) -> Option<Lease> {
    let key = item.get(attr::LEASE_KEY)?.as_s().ok()?.clone();
    Some(Lease {
        key,
        owner: item.get(attr::LEASE_OWNER).and_then(|v| v.as_s().ok()).cloned(),
        counter: num(item, attr::LEASE_COUNTER),
        checkpoint: item
            .get(attr::CHECKPOINT)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_else(|| TRIM_HORIZON.to_string()),
        checkpoint_sub: num(item, attr::CHECKPOINT_SUB),
        owner_switches: num(item, attr::OWNER_SWITCHES),
        parents: strings(item, attr::PARENT_SHARD_ID),
        children: strings(item, attr::CHILD_SHARD_IDS),
        other: item
            .iter()
            .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), format!("{v:?}")))
            .collect::<BTreeMap<_, _>>(),
    })
}

fn item_of(l: &Lease) -> Item {
    let mut item = HashMap::from([
        (attr::LEASE_KEY.to_string(), s(&l.key)),
        (attr::LEASE_COUNTER.to_string(), n(l.counter)),
        (attr::CHECKPOINT.to_string(), s(&l.checkpoint)),
        (attr::CHECKPOINT_SUB.to_string(), n(l.checkpoint_sub)),
        (attr::OWNER_SWITCHES.to_string(), n(l.owner_switches)),
    ]);
    if let Some(o) = &l.owner {
        item.insert(attr::LEASE_OWNER.to_string(), s(o));
    }
    if !l.parents.is_empty() {
        item.insert(attr::PARENT_SHARD_ID.to_string(), AttributeValue::Ss(l.parents.clone()));
    }
    if !l.children.is_empty() {
        item.insert(
            attr::CHILD_SHARD_IDS.to_string(),
            AttributeValue::Ss(l.children.clone()),
        );
    }
    item
}

impl DynamoLeases {
    /// A client for `target` (`credentials` for tests; else the provider chain).
    pub fn connect(target: DynamoTarget, credentials: Option<(&str, &str)>) -> Result<DynamoLeases, String> {
        let rt = crate::aws::runtime("sluicegate-leases", RUNTIME_THREADS)
            .map_err(|e| format!("cannot start the lease table's runtime: {e}"))?;
        let sdk = crate::aws::sdk_config(&rt, &target.region, credentials);
        let mut b = aws_sdk_dynamodb::config::Builder::from(&sdk).retry_config(
            aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(CALL_ATTEMPTS_MAX),
        );
        if let Some(e) = &target.endpoint {
            b = b.endpoint_url(e);
        }
        let client = aws_sdk_dynamodb::Client::from_conf(b.build());
        Ok(DynamoLeases { rt, client, target })
    }

    fn describe_target(&self) -> String {
        format!(
            "table {:?} at {}",
            self.target.table,
            self.target.endpoint.as_deref().unwrap_or("DynamoDB")
        )
    }

    /// Create the table (on-demand) if it is missing; if it exists, check that its key is the
    /// KCL's (`leaseKey`, a string hash key, nothing else).
    pub fn ensure_table(&self) -> Result<(), String> {
        let table = &self.target.table;
        let described = self.rt.block_on(self.client.describe_table().table_name(table).send());
        match described {
            Ok(out) => {
                let keys = out.table().map(|t| t.key_schema()).unwrap_or_default();
                let ok = keys.len() == 1
                    && keys[0].attribute_name() == attr::LEASE_KEY
                    && keys[0].key_type() == &KeyType::Hash;
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "{}: its key is {:?}, not the lease table's (hash key {:?})",
                        self.describe_target(),
                        keys.iter().map(|k| k.attribute_name()).collect::<Vec<_>>(),
                        attr::LEASE_KEY
                    ))
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                self.create_table()
            }
            Err(e) => Err(format!("{}: {}", self.describe_target(), crate::aws::error_chain(&e))),
        }
    }

    fn create_table(&self) -> Result<(), String> {
        let table = &self.target.table;
        let key = KeySchemaElement::builder()
            .attribute_name(attr::LEASE_KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| e.to_string())?;
        let def = AttributeDefinition::builder()
            .attribute_name(attr::LEASE_KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| e.to_string())?;
        let created = self.rt.block_on(
            self.client
                .create_table()
                .table_name(table)
                .key_schema(key)
                .attribute_definitions(def)
                .billing_mode(BillingMode::PayPerRequest)
                .send(),
        );
        if let Err(e) = created {
            // Another worker created it first: fine.
            if !e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) {
                return Err(format!(
                    "creating {}: {}",
                    self.describe_target(),
                    crate::aws::error_chain(&e)
                ));
            }
        }
        let deadline = std::time::Instant::now() + TABLE_ACTIVE_WAIT_MAX;
        loop {
            let status = self
                .rt
                .block_on(self.client.describe_table().table_name(table).send())
                .ok()
                .and_then(|o| o.table().and_then(|t| t.table_status().cloned()));
            if status == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "{} is not active after {TABLE_ACTIVE_WAIT_MAX:?}",
                    self.describe_target()
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn unavailable<E: ProvideErrorMetadata + std::error::Error + 'static>(&self, e: &E) -> LeaseError {
        LeaseError::Unavailable(format!("{}: {}", self.describe_target(), crate::aws::error_chain(e)))
    }

    /// One conditional update: `set` assignments, an `increment`ed number and `remove`d
    /// attributes, if the counter is `counter` (and the owner `owner`); the counter moves by one.
    fn update(
        &self,
        key: &str,
        counter: u64,
        owner: Option<&str>,
        set: &[(&str, AttributeValue)],
        increment: Option<&str>,
        remove: &[&str],
    ) -> Result<u64, LeaseError> {
        let mut names = HashMap::from([("#c".to_string(), attr::LEASE_COUNTER.to_string())]);
        let mut values = HashMap::from([(":c".to_string(), n(counter)), (":n".to_string(), n(counter + 1))]);
        let mut condition = "#c = :c".to_string();
        if let Some(o) = owner {
            names.insert("#o".into(), attr::LEASE_OWNER.into());
            values.insert(":o".into(), s(o));
            condition.push_str(" AND #o = :o");
        }
        let mut update = "SET #c = :n".to_string();
        for (i, (name, v)) in set.iter().enumerate() {
            names.insert(format!("#s{i}"), name.to_string());
            values.insert(format!(":s{i}"), v.clone());
            update.push_str(&format!(", #s{i} = :s{i}"));
        }
        if let Some(name) = increment {
            names.insert("#inc".into(), name.to_string());
            values.insert(":zero".into(), n(0));
            values.insert(":one".into(), n(1));
            update.push_str(", #inc = if_not_exists(#inc, :zero) + :one");
        }
        for (i, name) in remove.iter().enumerate() {
            names.insert(format!("#r{i}"), name.to_string());
            update.push_str(if i == 0 { " REMOVE " } else { ", " });
            update.push_str(&format!("#r{i}"));
        }
        let r = self.rt.block_on(
            self.client
                .update_item()
                .table_name(&self.target.table)
                .key(attr::LEASE_KEY, s(key))
                .condition_expression(condition)
                .update_expression(update)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send(),
        );
        match r {
            Ok(_) => Ok(counter + 1),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(LeaseError::Lost(key.to_string()))
            }
            Err(e) => Err(self.unavailable(&e)),
        }
    }
}

impl LeaseTable for DynamoLeases {
    fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .rt
                .block_on(
                    self.client
                        .scan()
                        .table_name(&self.target.table)
                        .consistent_read(true)
                        .set_exclusive_start_key(start.take())
                        .send(),
                )
                .map_err(|e| self.unavailable(&e))?;
            out.extend(page.items().iter().filter_map(lease_of));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn get(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        let r = self
            .rt
            .block_on(
                self.client
                    .get_item()
                    .table_name(&self.target.table)
                    .key(attr::LEASE_KEY, s(key))
                    .consistent_read(true)
                    .send(),
            )
            .map_err(|e| self.unavailable(&e))?;
        Ok(r.item().and_then(lease_of))
    }

    fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let r = self.rt.block_on(
            self.client
                .put_item()
                .table_name(&self.target.table)
                .set_item(Some(item_of(lease)))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", attr::LEASE_KEY)
                .send(),
        );
        match r {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    fn take(&self, key: &str, counter: u64, owner: &str) -> Result<u64, LeaseError> {
        // A take is always a change of owner: a worker takes only leases it does not hold.
        self.update(
            key,
            counter,
            None,
            &[(attr::LEASE_OWNER, s(owner))],
            Some(attr::OWNER_SWITCHES),
            &[],
        )
    }

    fn renew(&self, key: &str, counter: u64, owner: &str) -> Result<u64, LeaseError> {
        self.update(key, counter, Some(owner), &[], None, &[])
    }

    fn release(&self, key: &str, counter: u64, owner: &str) -> Result<(), LeaseError> {
        self.update(key, counter, Some(owner), &[], None, &[attr::LEASE_OWNER])
            .map(|_| ())
    }

    fn checkpoint(&self, key: &str, counter: u64, owner: &str, checkpoint: &str) -> Result<u64, LeaseError> {
        self.update(
            key,
            counter,
            Some(owner),
            &[
                (attr::CHECKPOINT, s(checkpoint)),
                (attr::CHECKPOINT_SUB, n(0)),
                (attr::OWNER_SWITCHES, n(0)),
            ],
            None,
            &[],
        )
    }
}
