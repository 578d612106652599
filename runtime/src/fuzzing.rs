//! Entry points for the fuzz targets in `fuzz/` (not an API): each hands untrusted input
//! to the parsers the runtime runs on what LXD answers, on image archives and on backups,
//! and must return, not panic, whatever the input.

use crate::lxd::client::{Answer, LxdClient};

/// An LXD answer body, and what the backend reads from its metadata: instance records,
/// cluster members, images.
pub fn lxd_answer(body: &[u8]) {
    let status = hyper::StatusCode::OK;
    let Ok(answer) = LxdClient::answer("/1.0/instances", status, body) else {
        return;
    };
    let metadata = match answer {
        Answer::Sync(v) => v,
        Answer::Async { metadata, .. } => metadata,
    };
    let _ = crate::lxd::records::from_instance(&metadata);
    for instance in metadata.as_array().into_iter().flatten() {
        let _ = crate::lxd::records::from_instance(instance);
    }
    let _ = crate::lxd::placement::members(&metadata);
    let _ = crate::lxd::images::images_by_alias(&metadata);
}

/// An image archive (plain, gzip or zstd tar), checked as `image import` checks it.
pub fn image_archive(bytes: &[u8]) {
    let _ = crate::images::check_archive(bytes.to_vec());
}

/// What a backup's restore reads before installing it: GNU tar's listing (each line
/// checked for device nodes) and the inventory record `container.json`.
pub fn backup(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for line in text.lines() {
        let _ = crate::devices::listed_device(line);
    }
    if let Ok(record) = serde_json::from_slice::<crate::inventory::ContainerRecord>(bytes) {
        let _ = crate::names::validate_container_name(&record.name);
    }
}
