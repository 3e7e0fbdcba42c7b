//! The files of `tuning/`: `check.sh` runs on this machine, reports every group and changes
//! nothing; every key of the sysctl file exists in this kernel and is one `check.sh` reports
//! or the guide explains; the systemd unit is well formed (and `systemd-analyze verify`
//! accepts it where systemd is installed) and says what the guide promises.

use std::path::Path;
use std::process::Command;

fn tuning(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning").join(name)
}

fn sysctl_keys() -> Vec<(String, String)> {
    std::fs::read_to_string(tuning("99-sluicegate.conf"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not key = value: {l}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

#[test]
fn check_sh_reports_every_group_and_changes_nothing() {
    let before: Vec<String> = sysctl_keys()
        .iter()
        .map(|(k, _)| std::fs::read_to_string(format!("/proc/sys/{}", k.replace('.', "/"))).unwrap_or_default())
        .collect();
    let out = Command::new("bash")
        .arg(tuning("check.sh"))
        .args(["/tmp", "2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for group in ["== CPU", "== memory", "== network", "== disk (/tmp)", "== summary:"] {
        assert!(text.contains(group), "{group} missing:\n{text}");
    }
    assert!(
        text.contains("memlock (ulimit -l, KiB)") && text.contains(">= 6144"),
        "{text}"
    );
    let after: Vec<String> = sysctl_keys()
        .iter()
        .map(|(k, _)| std::fs::read_to_string(format!("/proc/sys/{}", k.replace('.', "/"))).unwrap_or_default())
        .collect();
    assert_eq!(before, after, "check.sh changed a setting");
}

#[test]
fn every_sysctl_key_exists_and_is_checked_or_explained() {
    let check = std::fs::read_to_string(tuning("check.sh")).unwrap();
    let guide = std::fs::read_to_string(tuning("README.md")).unwrap();
    let keys = sysctl_keys();
    assert!(keys.len() >= 10);
    for (k, _) in keys {
        let proc = format!("/proc/sys/{}", k.replace('.', "/"));
        assert!(Path::new(&proc).exists(), "{k}: no such sysctl in this kernel");
        assert!(
            check.contains(&k) || guide.contains(&k),
            "{k}: neither checked nor explained"
        );
    }
}

#[test]
fn the_systemd_unit_is_well_formed_and_drains_on_stop() {
    let unit = std::fs::read_to_string(tuning("sluicegate.service")).unwrap();
    let mut section = String::new();
    let mut keys = Vec::new();
    for l in unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if l.starts_with('[') {
            assert!(l.ends_with(']'), "{l}");
            section = l.to_string();
        } else {
            let (k, _) = l.split_once('=').unwrap_or_else(|| panic!("not Key=value: {l}"));
            keys.push(format!("{section}{k}"));
        }
    }
    for k in [
        "[Service]ExecStart",
        "[Service]KillSignal",
        "[Service]TimeoutStopSec",
        "[Service]Restart",
        "[Service]LimitMEMLOCK",
        "[Service]CPUAffinity",
        "[Install]WantedBy",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} missing");
    }
    assert!(unit.contains("KillSignal=SIGTERM") && unit.contains("Restart=on-failure"));
    if Command::new("systemd-analyze").arg("--version").output().is_ok() {
        // Verify a copy whose ExecStart names the binary this test suite built.
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("sluicegate.service");
        let text = unit.replace("/usr/local/bin/sluicegate", env!("CARGO_BIN_EXE_sluicegate"));
        std::fs::write(&copy, text).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "systemd-analyze verify: {err}"
        );
    }
}
