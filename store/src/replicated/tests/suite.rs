//! openraft's own storage test suite over the real fjall stores.

use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};
use tempfile::TempDir;

use super::*;

struct FjallBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for FjallBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        // A fresh database per test: the suite expects empty stores.
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let store = open(dir.path());
        let (log_store, state_machine) = store
            .replication(None)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, log_store, state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(FjallBuilder).expect("the openraft storage suite passes");
}
