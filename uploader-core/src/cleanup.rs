//! Cleanup: find and abort multipart uploads left behind by crashed or killed clients.

use std::time::{Duration, SystemTime};

use crate::store::{ObjectStore, PendingUpload, ServiceErrorKind, StoreError};

/// One pending upload and what happened to it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CleanupEntry {
    /// The key the upload writes.
    pub key: String,
    /// Its upload id.
    pub upload_id: String,
    /// Age in seconds, when the server reports the initiation time.
    pub age_secs: Option<u64>,
    /// `aborted`, `would_abort` (dry run), `kept_young`, or `failed: <reason>`.
    pub action: String,
}

/// Lists multipart uploads under `prefix` and aborts those older than `older_than` (all of
/// them for a zero duration; uploads without an initiation time count as old). With `dry_run`
/// nothing is aborted.
pub async fn cleanup(
    store: &dyn ObjectStore,
    prefix: &str,
    older_than: Duration,
    dry_run: bool,
) -> Result<Vec<CleanupEntry>, StoreError> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    for PendingUpload {
        key,
        upload_id,
        initiated,
    } in store.list_multipart_uploads(prefix).await?
    {
        let age = initiated.and_then(|t| now.duration_since(t).ok());
        let old = age.is_none_or(|a| a >= older_than);
        let action = if !old {
            "kept_young".to_owned()
        } else if dry_run {
            "would_abort".to_owned()
        } else {
            match store.abort_multipart(&key, &upload_id).await {
                Ok(()) => "aborted".to_owned(),
                Err(e) if e.kind() == Some(ServiceErrorKind::NoSuchUpload) => "aborted".to_owned(),
                Err(e) => format!("failed: {e}"),
            }
        };
        out.push(CleanupEntry {
            key,
            upload_id: upload_id.to_string(),
            age_secs: age.map(|a| a.as_secs()),
            action,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{KeyPrefix, ObjectKey};
    use crate::store::{MemoryStore, PutOptions};

    #[tokio::test]
    async fn aborts_old_uploads_and_keeps_young_ones_and_dry_run_touches_nothing() {
        let store = MemoryStore::new();
        let k = ObjectKey::derive(&KeyPrefix::new("p").unwrap(), "x").unwrap();
        store
            .create_multipart(&k, &PutOptions::default())
            .await
            .unwrap();
        let young = cleanup(&store, "p/", Duration::from_secs(3600), false)
            .await
            .unwrap();
        assert_eq!(young[0].action, "kept_young");
        let dry = cleanup(&store, "p/", Duration::ZERO, true).await.unwrap();
        assert_eq!(dry[0].action, "would_abort");
        assert_eq!(store.list_multipart_uploads("p/").await.unwrap().len(), 1);
        let done = cleanup(&store, "p/", Duration::ZERO, false).await.unwrap();
        assert_eq!(done[0].action, "aborted");
        assert!(store.list_multipart_uploads("p/").await.unwrap().is_empty());
    }
}
