//! The schema registry in the lake: `_schemas/<table>/v<N>.json`.
//!
//! At start, each table's schema is registered: if the newest stored version equals it, that
//! version is used; otherwise it is stored as the next version. Versions are never rewritten,
//! so every Parquet file's `sluicegate.schema_version` (and its audit row) names a schema that
//! still exists. Inferred schemas are stored as version 1 and reused on later starts.

use super::layout::Layout;
use crate::extract::schema::SchemaFile;
use crate::store::ObjectStore;

/// Versions stored for `table`, ascending.
pub fn versions(store: &dyn ObjectStore, layout: &Layout, table: &str) -> Result<Vec<u32>, String> {
    let dir = layout.schemas_dir(table);
    let keys = store.list(&dir).map_err(|e| e.to_string())?;
    let mut v: Vec<u32> = keys
        .iter()
        .filter_map(|k| {
            k.strip_prefix(&dir)?
                .strip_prefix('v')?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// The newest stored version of `table`, if any.
pub fn latest(store: &dyn ObjectStore, layout: &Layout, table: &str) -> Result<Option<(u32, SchemaFile)>, String> {
    let Some(&v) = versions(store, layout, table)?.last() else {
        return Ok(None);
    };
    let key = layout.schema(table, v);
    let bytes = store
        .get(&key)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{key} was listed but cannot be read"))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{key} is not UTF-8"))?;
    let file = SchemaFile::from_json(&text).map_err(|e| format!("{key}: {e}"))?;
    Ok(Some((v, file)))
}

/// Register `file` for `table`; returns its version.
pub fn register(store: &dyn ObjectStore, layout: &Layout, table: &str, file: &SchemaFile) -> Result<u32, String> {
    let next = match latest(store, layout, table)? {
        Some((v, stored)) if &stored == file => return Ok(v),
        Some((v, _)) => v + 1,
        None => 1,
    };
    store
        .put(&layout.schema(table, next), file.to_json().as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::schema::{ColumnFile, ColumnType};
    use crate::store::LocalDirStore;

    #[test]
    fn versions_advance_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path(), false).unwrap();
        let layout = Layout::new("p");
        let a = SchemaFile {
            columns: vec![ColumnFile::new("a", ColumnType::Int64)],
        };
        let mut b = a.clone();
        b.columns.push(ColumnFile::new("b", ColumnType::String));
        assert_eq!(register(&store, &layout, "t", &a).unwrap(), 1);
        assert_eq!(register(&store, &layout, "t", &a).unwrap(), 1);
        assert_eq!(register(&store, &layout, "t", &b).unwrap(), 2);
        assert_eq!(register(&store, &layout, "t", &a).unwrap(), 3);
        assert_eq!(versions(&store, &layout, "t").unwrap(), vec![1, 2, 3]);
        assert_eq!(latest(&store, &layout, "t").unwrap().unwrap(), (3, a));
        assert!(dir.path().join("p/_schemas/t/v2.json").exists());
    }
}
