//! The testbed's S3-compatible server (MinIO) through the object_store code delta-rs and the
//! worker use, its conditional PUT (`If-None-Match: *` -> 412) and a Delta table written by
//! delta-rs to S3 and read back by the independent pyarrow reader.

use std::sync::Arc;

use deltalake::arrow::array::{Int64Array, StringArray};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{DataType, StructField, Transaction};
use deltalake::logstore::object_store::{self, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use deltalake::{DeltaTableBuilder, Path};
use futures::TryStreamExt;
use routine_load_e2e::{testbed_or_skip, unique_name};

#[tokio::test]
async fn s3_object_store_round_trip() {
    let Some(tb) = testbed_or_skip("s3 object_store round trip") else {
        return;
    };
    let prefix = unique_name("e2e/objects");
    let url = tb.s3_url(&prefix).unwrap();
    let store = tb.s3_object_store(&url).expect("object store");
    let base = Path::from(prefix.as_str());

    let body = b"hello from routine-load".to_vec();
    let p = base.clone().join("a.txt");
    store
        .put(&p, PutPayload::from(body.clone()))
        .await
        .expect("put");
    let got = store
        .get(&p)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(got.as_ref(), body.as_slice());
    assert_eq!(store.head(&p).await.expect("head").size, body.len() as u64);

    store
        .put(&base.clone().join("b.txt"), PutPayload::from_static(b"b"))
        .await
        .expect("put b");
    let mut listed: Vec<String> = store
        .list(Some(&base))
        .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
        .try_collect()
        .await
        .expect("list");
    listed.sort();
    assert_eq!(listed, vec!["a.txt", "b.txt"]);

    store.delete(&p).await.expect("delete");
    assert!(matches!(
        store.get(&p).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

/// delta-rs 1.x commits `_delta_log/N.json` with `PutMode::Create`, which object_store sends
/// as `If-None-Match: *`. The server must refuse the second create with 412.
#[tokio::test]
async fn s3_conditional_put_if_none_match() {
    let Some(tb) = testbed_or_skip("s3 conditional put") else {
        return;
    };
    let key = format!(
        "{}/_delta_log/00000000000000000000.json",
        unique_name("e2e/conditional")
    );

    // Raw HTTP, independent of object_store: first create 200, second 412, plain PUT 200.
    let first = tb
        .s3_raw_put(&key, b"{\"first\":1}", &[("If-None-Match", "*")])
        .unwrap();
    assert_eq!(first, 200, "first conditional PUT");
    let second = tb
        .s3_raw_put(&key, b"{\"second\":2}", &[("If-None-Match", "*")])
        .unwrap();
    assert_eq!(
        second, 412,
        "second PUT with If-None-Match: * must be refused with 412 Precondition Failed"
    );

    let url = tb.s3_url("").unwrap();
    let store = tb.s3_object_store(&url).unwrap();
    let path = Path::from(key.as_str());
    let kept = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        kept.as_ref(),
        b"{\"first\":1}",
        "the refused PUT must not overwrite"
    );

    // The same through object_store, as delta-rs does it.
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let other = Path::from(format!("{key}.2").as_str());
    store
        .put_opts(&other, PutPayload::from_static(b"one"), create.clone())
        .await
        .expect("first create");
    let err = store
        .put_opts(&other, PutPayload::from_static(b"two"), create)
        .await
        .expect_err("second create");
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "got {err:?}"
    );
}

/// A Delta table on S3: created and written by delta-rs with an application transaction (the
/// way the worker records Kafka offsets), read back by the independent pyarrow reader.
#[tokio::test]
async fn s3_delta_table_written_by_delta_rs_read_by_pyarrow() {
    let Some(tb) = testbed_or_skip("s3 delta table round trip") else {
        return;
    };
    routine_load_e2e::install_crypto_provider();
    let url = tb.s3_url(&unique_name("e2e/tables/t")).unwrap();
    let opts = tb.s3_storage_options().unwrap();

    let table = DeltaTableBuilder::from_url(url.clone())
        .unwrap()
        .with_storage_options(opts.clone())
        .build()
        .unwrap();
    let table = table
        .create()
        .with_columns(vec![
            StructField::new("id", DataType::LONG, false),
            StructField::new("name", DataType::STRING, true),
        ])
        .await
        .expect("create table");

    let schema = Arc::new(Schema::new(vec![
        Field::new("id", ArrowType::Int64, false),
        Field::new("name", ArrowType::Utf8, true),
    ]));
    let batch = |ids: Vec<i64>| {
        let names: Vec<Option<String>> = ids
            .iter()
            .map(|i| {
                if i % 3 == 0 {
                    None
                } else {
                    Some(format!("n{i}"))
                }
            })
            .collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    };
    let table = table
        .write(vec![batch((0..10).collect())])
        .with_commit_properties(
            CommitProperties::default()
                .with_application_transaction(Transaction::new("job-uid-p0", 10)),
        )
        .await
        .expect("write 1");
    let table = table
        .write(vec![batch((10..15).collect())])
        .with_commit_properties(
            CommitProperties::default()
                .with_application_transaction(Transaction::new("job-uid-p0", 15))
                .with_application_transaction(Transaction::new("job-uid-p1", 3)),
        )
        .await
        .expect("write 2");
    assert_eq!(table.version(), Some(2));

    let snap = tb
        .read_delta(url.as_str(), None)
        .expect("read with pyarrow");
    assert_eq!(snap.version, 2);
    assert_eq!(snap.rows.len(), 15);
    let mut ids: Vec<i64> = snap
        .column("id")
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..15).collect::<Vec<_>>());
    let row4 = snap.rows.iter().find(|r| r["id"] == 4).unwrap();
    assert_eq!(row4["name"], "n4");
    let row3 = snap.rows.iter().find(|r| r["id"] == 3).unwrap();
    assert!(row3["name"].is_null());
    assert_eq!(snap.txns.get("job-uid-p0"), Some(&15));
    assert_eq!(snap.txns.get("job-uid-p1"), Some(&3));

    // Time travel through the same reader: version 1 has the first batch and offset 10.
    let v1 = tb.read_delta(url.as_str(), Some(1)).expect("read v1");
    assert_eq!(v1.rows.len(), 10);
    assert_eq!(v1.txns.get("job-uid-p0"), Some(&10));
    assert_eq!(v1.txns.get("job-uid-p1"), None);
}
