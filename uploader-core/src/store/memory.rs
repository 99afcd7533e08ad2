//! An in-memory store for fast unit tests of the pipeline. It verifies checksums like S3 does
//! and keeps pending multipart uploads until they are completed or aborted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{
    Body, ListPage, ListedObject, ListedPart, ObjectMeta, ObjectStore, PartNumber, PartReceipt,
    PendingUpload, PutOptions, PutResult, ServiceErrorKind as Kind, StoreError, UploadId,
};
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::key::ObjectKey;

#[derive(Debug, Clone)]
struct Object {
    data: Bytes,
    etag: String,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
    modified: SystemTime,
}

/// Objects per listing page, as S3's default.
const PAGE: usize = 1000;

#[derive(Debug)]
struct Upload {
    key: String,
    opts: PutOptions,
    parts: BTreeMap<PartNumber, (Bytes, String)>,
    initiated: SystemTime,
}

/// Objects and pending uploads in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<String, Object>>,
    uploads: Mutex<HashMap<UploadId, Upload>>,
    next_id: AtomicU64,
}

fn err(operation: &'static str, status: u16, kind: Kind, code: &str) -> StoreError {
    StoreError::service(operation, status, kind, code)
}

fn etag_of(data: &[u8]) -> String {
    use md5::Digest as _;
    format!("\"{}\"", hex::encode(md5::Md5::digest(data)))
}

async fn read(operation: &'static str, body: Body) -> Result<Bytes, StoreError> {
    body.read_all()
        .await
        .map_err(|source| StoreError::Body { operation, source })
}

fn verify(operation: &'static str, data: &[u8], c: Option<&Checksum>) -> Result<(), StoreError> {
    match c {
        Some(c) if Checksum::of_bytes(c.algorithm(), data) != *c => {
            Err(err(operation, 400, Kind::BadDigest, "BadDigest"))
        }
        _ => Ok(()),
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Number of stored objects.
    pub fn len(&self) -> usize {
        self.objects.lock().unwrap().len()
    }

    /// Whether no object is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<_> = self.objects.lock().unwrap().keys().cloned().collect();
        k.sort();
        k
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put(
        &self,
        key: &ObjectKey,
        body: Body,
        opts: &PutOptions,
    ) -> Result<PutResult, StoreError> {
        const OP: &str = "PutObject";
        let data = read(OP, body).await?;
        verify(OP, &data, opts.checksum.as_ref())?;
        let etag = etag_of(&data);
        let mut objects = self.objects.lock().unwrap();
        if opts.if_none_match && objects.contains_key(key.as_str()) {
            return Err(err(OP, 412, Kind::PreconditionFailed, "PreconditionFailed"));
        }
        objects.insert(
            key.as_str().to_owned(),
            Object {
                data,
                etag: etag.clone(),
                content_type: opts.content_type.clone(),
                metadata: opts.metadata.clone(),
                modified: SystemTime::now(),
            },
        );
        Ok(PutResult { etag: Some(etag) })
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        opts: &PutOptions,
    ) -> Result<UploadId, StoreError> {
        let id = UploadId::new(format!(
            "mem-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        ));
        self.uploads.lock().unwrap().insert(
            id.clone(),
            Upload {
                key: key.as_str().to_owned(),
                opts: opts.clone(),
                parts: BTreeMap::new(),
                initiated: SystemTime::now(),
            },
        );
        Ok(id)
    }

    async fn upload_part(
        &self,
        _key: &ObjectKey,
        upload_id: &UploadId,
        part_number: PartNumber,
        body: Body,
        checksum: Option<&Checksum>,
    ) -> Result<PartReceipt, StoreError> {
        const OP: &str = "UploadPart";
        let data = read(OP, body).await?;
        verify(OP, &data, checksum)?;
        let etag = etag_of(&data);
        let mut uploads = self.uploads.lock().unwrap();
        let upload = uploads
            .get_mut(upload_id)
            .ok_or_else(|| err(OP, 404, Kind::NoSuchUpload, "NoSuchUpload"))?;
        upload.parts.insert(part_number, (data, etag.clone()));
        Ok(PartReceipt {
            part_number,
            etag,
            checksum: checksum.cloned(),
        })
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: &[PartReceipt],
    ) -> Result<PutResult, StoreError> {
        const OP: &str = "CompleteMultipartUpload";
        let upload = self
            .uploads
            .lock()
            .unwrap()
            .remove(upload_id)
            .ok_or_else(|| err(OP, 404, Kind::NoSuchUpload, "NoSuchUpload"))?;
        let mut data = BytesMut::new();
        let mut digests = Vec::new();
        for p in parts {
            match upload.parts.get(&p.part_number) {
                Some((bytes, etag)) if *etag == p.etag => {
                    data.extend_from_slice(bytes);
                    digests.extend(hex::decode(etag.trim_matches('"')).expect("our own ETags"));
                }
                _ => return Err(err(OP, 400, Kind::InvalidPart, "InvalidPart")),
            }
        }
        // S3's multipart ETag: the MD5 of the parts' MD5s, then the part count.
        let etag = format!("\"{}-{}\"", &etag_of(&digests)[1..33], parts.len());
        let mut objects = self.objects.lock().unwrap();
        if upload.opts.if_none_match && objects.contains_key(key.as_str()) {
            return Err(err(OP, 412, Kind::PreconditionFailed, "PreconditionFailed"));
        }
        objects.insert(
            upload.key,
            Object {
                data: data.freeze(),
                etag: etag.clone(),
                content_type: upload.opts.content_type,
                metadata: upload.opts.metadata,
                modified: SystemTime::now(),
            },
        );
        Ok(PutResult { etag: Some(etag) })
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &UploadId) -> Result<(), StoreError> {
        self.uploads
            .lock()
            .unwrap()
            .remove(upload_id)
            .map(|_| ())
            .ok_or_else(|| {
                err(
                    "AbortMultipartUpload",
                    404,
                    Kind::NoSuchUpload,
                    "NoSuchUpload",
                )
            })
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.objects.lock().unwrap().get(key).map(|o| ObjectMeta {
            size: o.data.len() as u64,
            etag: Some(o.etag.clone()),
            content_type: o.content_type.clone(),
            metadata: o.metadata.clone(),
            checksum: None,
            last_modified: Some(o.modified),
        }))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|o| o.data.clone()))
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        let mut v: Vec<_> = self
            .uploads
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, u)| u.key.starts_with(prefix))
            .map(|(id, u)| PendingUpload {
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated: Some(u.initiated),
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(v)
    }

    async fn list_parts(
        &self,
        _key: &str,
        upload_id: &UploadId,
    ) -> Result<Vec<ListedPart>, StoreError> {
        let uploads = self.uploads.lock().unwrap();
        let upload = uploads
            .get(upload_id)
            .ok_or_else(|| err("ListParts", 404, Kind::NoSuchUpload, "NoSuchUpload"))?;
        Ok(upload
            .parts
            .iter()
            .map(|(n, (data, etag))| ListedPart {
                part_number: *n,
                size: data.len() as u64,
                etag: Some(etag.clone()),
                crc32c: Some(Checksum::of_bytes(ChecksumAlgorithm::Crc32c, data)),
            })
            .collect())
    }

    async fn list_objects_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ListPage, StoreError> {
        let objects = self.objects.lock().unwrap();
        let mut keys: Vec<&String> = objects
            .keys()
            .filter(|k| k.starts_with(prefix) && after.as_ref().is_none_or(|a| *k > a))
            .collect();
        keys.sort();
        let more = keys.len() > PAGE;
        keys.truncate(PAGE);
        let page: Vec<ListedObject> = keys
            .into_iter()
            .map(|k| {
                let o = &objects[k];
                ListedObject {
                    key: k.clone(),
                    size: o.data.len() as u64,
                    etag: Some(o.etag.clone()),
                    last_modified: Some(o.modified),
                    ..ListedObject::default()
                }
            })
            .collect();
        let next = more.then(|| page.last().map(|o| o.key.clone())).flatten();
        Ok(ListPage {
            objects: page,
            next,
        })
    }

    async fn delete_object(&self, key: &str) -> Result<(), StoreError> {
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyPrefix;

    #[tokio::test]
    async fn listing_pages_by_a_thousand_and_stays_under_the_prefix() {
        let s = MemoryStore::new();
        let p = KeyPrefix::new("p").unwrap();
        for i in 0..1001 {
            let k = ObjectKey::derive(&p, &format!("{i:04}")).unwrap();
            s.put(
                &k,
                Body::Bytes(Bytes::from_static(b"x")),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        }
        let other = ObjectKey::derive(&KeyPrefix::new("pq").unwrap(), "a").unwrap();
        s.put(&other, Body::Bytes(Bytes::new()), &PutOptions::default())
            .await
            .unwrap();
        let first = s.list_objects_page("p/", None).await.unwrap();
        assert_eq!(first.objects.len(), 1000);
        let second = s.list_objects_page("p/", first.next).await.unwrap();
        assert_eq!(second.objects.len(), 1);
        assert_eq!(second.objects[0].key, "p/1000");
        assert_eq!(second.next, None);
        assert_eq!(crate::store::list_all(&s, "p/").await.unwrap().len(), 1001);
    }
}
