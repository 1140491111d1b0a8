//! The event index: a tantivy index of collected events, derived from the segment files.
//!
//! Each document is one [`Event`]: its time (µs, fast field, the sort key of every search),
//! node and class (exact, fast), the keyword fields a broker puts in its events ([`KEYWORDS`]:
//! client, user, peer, topic, packet type, filter; exact match), sequence and boot epoch, the
//! tokenized `text` (message and every field value: the default search field), and the event
//! itself, postcard-encoded and stored, so a hit prints exactly as a redirect line does.
//!
//! Adding is not idempotent by itself: the same event added twice is two documents. The
//! [`Indexer`](crate::indexer::Indexer) guarantees each segment record is added once: its
//! read position is saved as the payload of the very tantivy commit that makes the documents
//! durable, so after a crash both roll back together. (A unique-key delete before each add
//! would cost a term lookup in every segment per event at commit time.)

use parking_lot::{Mutex, MutexGuard};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use fubar_logproto::{Class, Event, EventRef};
use tantivy::directory::MmapDirectory;
use tantivy::indexer::{IndexWriterOptions, UserOperation};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    BytesOptions, DateOptions, DateTimePrecision, Field, IndexRecordOption, NumericOptions, Schema,
    TextFieldIndexing, TextOptions,
};
use tantivy::{
    DateTime, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument,
    TantivyError, Term,
};

/// The default writer heap (the `log.index_heap_bytes` setting): tantivy splits it over its
/// indexing threads and flushes a segment when a thread's share is full.
pub const DEFAULT_INDEX_HEAP_BYTES: usize = 50 << 20;
/// Tantivy's smallest heap per indexing thread; smaller settings are raised to it.
pub const MIN_INDEX_HEAP_BYTES: usize = 15_000_000;

/// Documents above which a segment is not merged again. Commits every 500 ms at 100,000
/// events/s make segments of about 50,000, merged 8 at a time into about 400,000 that stay:
/// each document is merged once. (At 1,000,000 the 400,000s were merged again into 3.2
/// million, a second merge of every document, a fifth of the indexer's CPU at 10 million
/// events.) Costs more segments per search: about 25 at 10 million events.
const MERGE_CAP: usize = 250_000;
/// Documents handed to tantivy's indexing thread at once. One at a time, the indexer thread
/// spun on the full hand-over channel (5% of the CPU); the channel holds 10,000 hand-overs,
/// so this also bounds the documents waiting in memory (80,000, about 80 MB).
const ADD_BATCH: usize = 8;
/// Threads tantivy indexes documents with. Each commit makes one segment per thread, so two
/// threads mean twice the small segments to merge; but one thread was the indexer's ceiling:
/// on this 2-core machine it fell behind 100,000 events/s (84,000/s, with events 6 s from
/// written to searchable at p99), where two keep up (1.1 s at p99 over 3 million events).
const INDEX_THREADS: usize = 2;
/// Threads that merge segments in the background.
const MERGE_THREADS: usize = 1;
/// The nice value of the merge thread (tantivy names it `merge_thread_N`). A merge of 400,000
/// documents takes a core for seconds; at normal priority it took that time from indexing and
/// from the log writers, and events waited that much longer to be searchable. At nice 10 it
/// gets what they leave (they leave a third of this 2-core machine at 100,000 events/s).
const MERGE_NICE: i32 = 10;

/// Exact-match index fields and the event fields that feed them (in that order of preference;
/// every present one is indexed). A CONNECT packet event, say, has `client = "-"` and the real
/// id in `client_id`, so both go to `client`.
pub const KEYWORDS: [(&str, &[&str]); 6] = [
    ("client", &["client", "client_id"]),
    ("user", &["user", "username"]),
    ("peer", &["peer"]),
    ("topic", &["topic"]),
    ("type", &["type", "kind"]),
    ("filter", &["filter"]),
];

/// Names of the other index fields, as queries spell them.
pub(crate) mod name {
    pub(crate) const TIME: &str = "time";
    pub(crate) const NODE: &str = "node";
    pub(crate) const CLASS: &str = "class";
    pub(crate) const SEQ: &str = "seq";
    pub(crate) const EPOCH: &str = "epoch";
    pub(crate) const TEXT: &str = "text";
    /// The segment file number the event was read from (for retention; not for queries).
    pub(crate) const SEGMENT: &str = "segment";
    /// The stored postcard-encoded event.
    pub(crate) const EVENT: &str = "event";
}

/// What can go wrong with the index or the indexer.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file system operation failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Tantivy failed.
    #[error("index {what}: {source}")]
    Tantivy {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: Box<TantivyError>,
    },
    /// The index on disk has another schema (an older version of fubar built it).
    #[error("the index in {} has another schema: rebuild it with `fubar log reindex`", .0.display())]
    SchemaMismatch(PathBuf),
    /// The indexer's checkpoint in the last commit cannot be read.
    #[error("the index in {} has an unreadable checkpoint ({why}): rebuild it with `fubar log reindex`", path.display())]
    Checkpoint {
        /// The index dir.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A directory to rebuild holds something other than an index; it is left alone.
    #[error("{} is not an index directory; not deleting it", .0.display())]
    NotAnIndex(PathBuf),
    /// An event could not be encoded for storage.
    #[error("cannot encode an event: {0}")]
    Encode(String),
    /// A stored event could not be decoded.
    #[error("cannot decode a stored event: {0}")]
    Decode(String),
}

impl IndexError {
    /// A closure turning a tantivy error into an `IndexError` about `what`.
    pub(crate) fn tantivy(what: &'static str) -> impl FnOnce(TantivyError) -> Self {
        move |source| Self::Tantivy {
            what,
            source: Box::new(source),
        }
    }

    /// A closure turning an io error about `path` into an `IndexError`.
    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { what, path, source }
    }
}

/// The schema's fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub(crate) time: Field,
    pub(crate) node: Field,
    pub(crate) class: Field,
    pub(crate) seq: Field,
    pub(crate) epoch: Field,
    pub(crate) text: Field,
    pub(crate) segment: Field,
    pub(crate) event: Field,
    /// In the order of [`KEYWORDS`].
    pub(crate) keywords: [Field; KEYWORDS.len()],
}

/// An exact-match string field (raw tokenizer, no norms: nothing is scored).
fn keyword(fast: bool) -> TextOptions {
    let indexing = TextFieldIndexing::default()
        .set_tokenizer("raw")
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let options = TextOptions::default().set_indexing_options(indexing);
    if fast {
        options.set_fast("raw")
    } else {
        options
    }
}

/// The index schema and its fields.
pub(crate) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let time = b.add_date_field(
        name::TIME,
        DateOptions::default()
            .set_indexed()
            .set_fast()
            .set_precision(DateTimePrecision::Microseconds),
    );
    let node = b.add_text_field(name::NODE, keyword(true));
    let class = b.add_text_field(name::CLASS, keyword(true));
    let number = NumericOptions::default().set_indexed().set_fast();
    let seq = b.add_u64_field(name::SEQ, number.clone());
    let epoch = b.add_u64_field(name::EPOCH, number);
    let keywords = KEYWORDS.map(|(field, _)| b.add_text_field(field, keyword(false)));
    let text = b.add_text_field(
        name::TEXT,
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions)
                .set_fieldnorms(false),
        ),
    );
    let segment = b.add_u64_field(name::SEGMENT, NumericOptions::default().set_fast());
    let event = b.add_bytes_field(name::EVENT, BytesOptions::default().set_stored());
    let fields = Fields {
        time,
        node,
        class,
        seq,
        epoch,
        text,
        segment,
        event,
        keywords,
    };
    (b.build(), fields)
}

/// The values an event's `fields` give a keyword field fed by the event fields `sources`.
pub(crate) fn keyword_values<'a>(
    fields: impl Iterator<Item = (&'a str, &'a str)>,
    sources: &'static [&'static str],
) -> impl Iterator<Item = &'a str> {
    fields
        .filter(move |(k, _)| sources.contains(k))
        .map(|(_, v)| v)
}

/// The `text` of an event, into `out` (cleared): the message and every field value.
pub(crate) fn event_text<'a>(
    message: &str,
    fields: impl Iterator<Item = (&'a str, &'a str)>,
    out: &mut String,
) {
    out.clear();
    out.push_str(message);
    for (_, v) in fields {
        out.push(' ');
        out.push_str(v);
    }
}

/// A tantivy date from microseconds since the Unix epoch.
pub(crate) fn date(time_us: i64) -> DateTime {
    DateTime::from_timestamp_micros(time_us)
}

/// The event index in one directory, with its single writer; shared by the indexer (which
/// adds and commits) and searches (which read the last commit).
pub struct EventIndex {
    dir: PathBuf,
    index: Index,
    fields: Fields,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    /// Whether the merge thread's priority has been lowered ([`MERGE_NICE`]); tried at each
    /// commit until it is (the thread names itself once it runs, after the writer is made).
    merge_lowered: AtomicBool,
}

impl std::fmt::Debug for EventIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventIndex")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl EventIndex {
    /// Opens the index in `dir`, creating it (and the dir) if needed, with a writer whose
    /// indexing heap is `heap_bytes`, shared by its indexing threads (at least
    /// [`MIN_INDEX_HEAP_BYTES`] each). Fails if another writer (in this process or another) holds
    /// the index.
    pub fn open_or_create(dir: &Path, heap_bytes: usize) -> Result<Self, IndexError> {
        // 0700: the index holds every collected event's fields.
        fubar_logs::create_private_dir(dir).map_err(IndexError::io("create directory", dir))?;
        let directory = MmapDirectory::open(dir)
            .map_err(|e| IndexError::tantivy("open")(TantivyError::from(e)))?;
        let (schema, fields) = schema();
        let index = match Index::open_or_create(directory, schema) {
            Ok(index) => index,
            Err(TantivyError::SchemaError(_)) => {
                return Err(IndexError::SchemaMismatch(dir.to_path_buf()))
            }
            Err(e) => return Err(IndexError::tantivy("open")(e)),
        };
        // INDEX_THREADS indexing threads (see there). One merge thread (tantivy's default is
        // 4): merges wait their turn instead of taking both cores of a small machine at once
        // from the indexing threads that make events searchable.
        let options = IndexWriterOptions::builder()
            .num_worker_threads(INDEX_THREADS)
            .num_merge_threads(MERGE_THREADS)
            .memory_budget_per_thread((heap_bytes / INDEX_THREADS).max(MIN_INDEX_HEAP_BYTES))
            .build();
        let writer = index
            .writer_with_options(options)
            .map_err(IndexError::tantivy("writer"))?;
        // Segments past MERGE_CAP documents are not merged again: merge work per event stays
        // bounded as the index grows (the default merges up to 10 million).
        let mut merge = tantivy::merge_policy::LogMergePolicy::default();
        merge.set_max_docs_before_merge(MERGE_CAP);
        writer.set_merge_policy(Box::new(merge));
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(IndexError::tantivy("reader"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            index,
            fields,
            writer: Mutex::new(writer),
            reader,
            merge_lowered: AtomicBool::new(false),
        })
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds an event (searchable after the next [`commit`](Self::commit)). Not idempotent:
    /// see the module docs.
    pub fn add(&self, event: &Event) -> Result<(), IndexError> {
        let body = postcard::to_allocvec(event).map_err(|e| IndexError::Encode(e.to_string()))?;
        self.add_record(&EventRef::of(event), &body, None, &mut String::new())
    }

    /// Adds an event whose postcard encoding is `body`, read from segment file `segment` (an
    /// event from no segment is never removed by segment retention); `text` is scratch.
    pub(crate) fn add_record(
        &self,
        event: &EventRef<'_>,
        body: &[u8],
        segment: Option<u64>,
        text: &mut String,
    ) -> Result<(), IndexError> {
        let doc = self.document(event, body, segment, text);
        self.add_documents(&mut vec![doc])
    }

    /// The document of an event whose postcard encoding is `body`, read from segment file
    /// `segment`, for [`add_documents`](Self::add_documents); `text` is scratch.
    pub(crate) fn document(
        &self,
        event: &EventRef<'_>,
        body: &[u8],
        segment: Option<u64>,
        text: &mut String,
    ) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_date(f.time, date(event.time_us));
        doc.add_text(f.node, event.node);
        doc.add_text(f.class, event.class.name());
        doc.add_u64(f.seq, event.seq);
        doc.add_u64(f.epoch, event.epoch);
        for (field, (_, sources)) in f.keywords.iter().zip(KEYWORDS) {
            for value in keyword_values(event.fields.iter().copied(), sources) {
                doc.add_text(*field, value);
            }
        }
        event_text(event.message, event.fields.iter().copied(), text);
        doc.add_text(f.text, text.as_str());
        if let Some(segment) = segment {
            doc.add_u64(f.segment, segment);
        }
        doc.add_bytes(f.event, body);
        doc
    }

    /// Adds documents (drained from `docs`), handed to the indexing thread [`ADD_BATCH`] at a
    /// time.
    pub(crate) fn add_documents(&self, docs: &mut Vec<TantivyDocument>) -> Result<(), IndexError> {
        let writer = self.writer();
        let mut docs = docs.drain(..);
        while !docs.as_slice().is_empty() {
            writer
                .run(docs.by_ref().take(ADD_BATCH).map(UserOperation::Add))
                .map_err(IndexError::tantivy("add"))?;
        }
        Ok(())
    }

    /// Makes everything added (and deleted) so far durable and searchable.
    pub fn commit(&self) -> Result<(), IndexError> {
        self.commit_with(None)
    }

    /// `commit`, saving `payload` (the indexer's checkpoint) atomically with it.
    pub(crate) fn commit_with(&self, payload: Option<&str>) -> Result<(), IndexError> {
        {
            let mut writer = self.writer();
            let mut prepared = writer
                .prepare_commit()
                .map_err(IndexError::tantivy("commit"))?;
            if let Some(p) = payload {
                prepared.set_payload(p);
            }
            prepared.commit().map_err(IndexError::tantivy("commit"))?;
        }
        if !self.merge_lowered.load(Ordering::Relaxed)
            && crate::thread_priority::lower_threads_named("merge_thread_", MERGE_NICE) > 0
        {
            self.merge_lowered.store(true, Ordering::Relaxed);
        }
        self.reader.reload().map_err(IndexError::tantivy("reload"))
    }

    /// Drops everything added or deleted since the last commit.
    pub(crate) fn rollback(&self) -> Result<(), IndexError> {
        self.writer()
            .rollback()
            .map_err(IndexError::tantivy("rollback"))?;
        Ok(())
    }

    /// The payload of the last commit (the indexer's checkpoint), if any.
    pub(crate) fn committed_payload(&self) -> Result<Option<String>, IndexError> {
        let metas = self
            .index
            .load_metas()
            .map_err(IndexError::tantivy("read meta"))?;
        Ok(metas.payload)
    }

    /// Deletes the events older than `time_us` (retention), at the next commit.
    pub fn delete_before(&self, time_us: i64) -> Result<(), IndexError> {
        let older = RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_date(self.fields.time, date(time_us))),
        );
        self.delete(Box::new(older))
    }

    /// Deletes a class's events read from segment files numbered below `segment` (they
    /// wrapped out of the binary log), at the next commit.
    pub(crate) fn delete_segments_before(
        &self,
        class: Class,
        segment: u64,
    ) -> Result<(), IndexError> {
        let of_class = TermQuery::new(
            Term::from_field_text(self.fields.class, class.name()),
            IndexRecordOption::Basic,
        );
        let older = RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_u64(self.fields.segment, segment)),
        );
        self.delete(Box::new(BooleanQuery::new(vec![
            (Occur::Must, Box::new(of_class) as Box<dyn Query>),
            (Occur::Must, Box::new(older)),
        ])))
    }

    fn delete(&self, query: Box<dyn Query>) -> Result<(), IndexError> {
        self.writer()
            .delete_query(query)
            .map_err(IndexError::tantivy("delete"))?;
        Ok(())
    }

    /// Documents searchable now (as of the last commit).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Tantivy segments searched now (each search visits every one; merges reduce them).
    pub fn segments(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }

    /// A searcher over the last commit.
    pub(crate) fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// The tantivy index (for query parsing).
    pub(crate) fn index(&self) -> &Index {
        &self.index
    }

    /// The schema's fields.
    pub(crate) fn fields(&self) -> &Fields {
        &self.fields
    }

    fn writer(&self) -> MutexGuard<'_, IndexWriter> {
        self.writer.lock()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 2026-11-25 14:27:16.257740 UTC.
    pub(crate) const T0: i64 = 1_795_616_836_257_740;

    /// An event of `class` from `node`, `seq` µs after `T0`, with the given fields.
    pub(crate) fn event(node: &str, class: Class, seq: u64, fields: &[(&str, &str)]) -> Event {
        Event {
            node: node.into(),
            epoch: 7,
            seq,
            time_us: T0 + seq as i64,
            class,
            message: format!("event {seq}"),
            fields: fields
                .iter()
                .map(|(k, v)| (String::from(*k).into(), String::from(*v)))
                .collect(),
        }
    }

    #[test]
    fn a_reopened_index_keeps_its_commits_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let index = EventIndex::open_or_create(dir.path(), 0).unwrap();
        index.add(&event("n1@h", Class::Access, 1, &[])).unwrap();
        index.commit_with(Some("cp1")).unwrap();
        index.add(&event("n1@h", Class::Access, 2, &[])).unwrap();
        assert_eq!(index.num_docs(), 1);
        drop(index);
        let index = EventIndex::open_or_create(dir.path(), 0).unwrap();
        assert_eq!(index.num_docs(), 1);
        assert_eq!(index.committed_payload().unwrap().as_deref(), Some("cp1"));
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _index = EventIndex::open_or_create(dir.path(), 0).unwrap();
        let second = EventIndex::open_or_create(dir.path(), 0);
        assert!(
            matches!(second, Err(IndexError::Tantivy { .. })),
            "{second:?}"
        );
    }

    #[test]
    fn retention_deletes_older_events_and_class_segments() {
        let dir = tempfile::tempdir().unwrap();
        let index = EventIndex::open_or_create(dir.path(), 0).unwrap();
        let mut text = String::new();
        for seq in 0..10 {
            let e = event("n1@h", Class::Access, seq, &[]);
            let body = postcard::to_allocvec(&e).unwrap();
            let segment = Some(seq / 5 + 1);
            index
                .add_record(&EventRef::of(&e), &body, segment, &mut text)
                .unwrap();
            let e = event("n1@h", Class::Error, seq, &[]);
            index
                .add_record(&EventRef::of(&e), &body, segment, &mut text)
                .unwrap();
        }
        index.add(&event("n1@h", Class::Access, 10, &[])).unwrap();
        index.commit().unwrap();
        assert_eq!(index.num_docs(), 21);
        index.delete_segments_before(Class::Access, 2).unwrap();
        index.commit().unwrap();
        assert_eq!(
            index.num_docs(),
            16,
            "access segment 1 is gone; error's, and the event of no segment, stay"
        );
        index.delete_before(T0 + 8).unwrap();
        index.commit().unwrap();
        assert_eq!(index.num_docs(), 5, "access 8, 9, 10 and error 8, 9 remain");
    }
}
