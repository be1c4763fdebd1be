//! [`rebuild`]: a projection folded again from sequence 1 into a shadow schema, compared
//! with the live one and swapped in (see the parent module's docs).

use super::*;

/// What a rebuild did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RebuildReport {
    pub projection: String,
    pub events: u64,
    pub seconds: f64,
    pub checkpoint: u64,
    /// Of `seconds`, the time spent applying batches to Postgres (the rest is reading
    /// and decoding events, and the catch-up, comparison and swap).
    pub apply_seconds: f64,
    pub tables: Vec<TableComparison>,
    pub swapped: bool,
}

impl RebuildReport {
    /// Whether the rebuilt rows equal the live rows, table by table.
    pub fn matches_live(&self) -> bool {
        self.tables.iter().all(|t| t.live == t.rebuilt)
    }

    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
}

/// Row count and checksum of one table, live and rebuilt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableComparison {
    pub table: String,
    pub live: TableDigest,
    pub rebuilt: TableDigest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDigest {
    pub rows: i64,
    pub checksum: String,
}

/// The row count and an order-independent checksum of `schema.table`.
pub async fn digest(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> sqlx::Result<TableDigest> {
    let (rows, checksum): (i64, Option<String>) = sqlx::query_as(&format!(
        "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {schema}.{table} t"
    ))
    .fetch_one(conn)
    .await?;
    Ok(TableDigest {
        rows,
        checksum: checksum.unwrap_or_default(),
    })
}

/// Progress of a rebuild, reported after every batch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub applied: u64,
    pub total: u64,
    pub elapsed: Duration,
}

/// Rebuilds a projection into a shadow schema and, unless `dry_run`, swaps it in.
pub async fn rebuild(
    rt: &Runtime,
    projection: &dyn Projection,
    dry_run: bool,
    mut progress: impl FnMut(Progress),
) -> Result<RebuildReport> {
    let name = projection.name();
    let shadow = format!("{name}_rebuild");
    prepare(&rt.db, projection).await?;
    let mut conn = rt.db.acquire().await.map_err(Error::db("acquire"))?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"))
        .execute(&mut *conn)
        .await
        .map_err(Error::db("drop shadow"))?;
    sqlx::query(&format!("CREATE SCHEMA {shadow}"))
        .execute(&mut *conn)
        .await
        .map_err(Error::db("create shadow"))?;
    projection
        .create_tables(&mut conn, &shadow)
        .await
        .map_err(Error::db("create shadow tables"))?;
    drop(conn);

    let started = Instant::now();
    let mut applied = 0u64;
    let mut apply_time = Duration::ZERO;
    let mut shadow_seq = 0u64;
    let mut parked = parked::sequences(&rt.db, name)
        .await
        .map_err(Error::db("read parked events"))?;
    let (total, messages) = ordered_from(&rt.js, projection, 1).await?;
    if total > 0 {
        let mut batches = Box::pin(batched(messages, rt.settings.projection_batch));
        while let Some(batch) = batches.next().await {
            let mut events = Vec::with_capacity(batch.len());
            let mut caught_up = false;
            for message in batch {
                let message = message?;
                let info = message
                    .info()
                    .map_err(|e| Error::Malformed(e.to_string()))?;
                caught_up = info.pending == 0;
                shadow_seq = info.stream_sequence;
                if !parked.contains(&shadow_seq) {
                    events.push(StoredEvent::from_jetstream(&message)?);
                }
            }
            applied += events.len() as u64;
            let applying = Instant::now();
            apply_shadow(&rt.db, projection, &shadow, &events).await?;
            apply_time += applying.elapsed();
            progress(Progress {
                applied,
                total,
                elapsed: started.elapsed(),
            });
            if caught_up {
                break;
            }
        }
    }

    let mut tx = rt.db.begin().await.map_err(Error::db("begin swap"))?;
    lock_projection(&mut tx, name)
        .await
        .map_err(Error::db("lock projection"))?;
    let live = checkpoint_for_update(&mut tx, name)
        .await
        .map_err(Error::db("checkpoint"))?;
    if live > shadow_seq {
        // Events parked while the shadow was built are left out too.
        parked = parked::sequences(&mut *tx, name)
            .await
            .map_err(Error::db("read parked events"))?;
        let (_, messages) = ordered_from(&rt.js, projection, shadow_seq + 1).await?;
        let mut messages = Box::pin(messages);
        let mut tail = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message?;
            let sequence = message
                .info()
                .map_err(|e| Error::Malformed(e.to_string()))?
                .stream_sequence;
            if sequence > live {
                break;
            }
            if !parked.contains(&sequence) {
                tail.push(StoredEvent::from_jetstream(&message)?);
            }
            if sequence == live {
                break;
            }
        }
        applied += tail.len() as u64;
        apply_or_fail(projection, &mut tx, &shadow, &tail).await?;
        shadow_seq = live;
    }
    let mut tables = Vec::new();
    for table in projection.tables() {
        tables.push(TableComparison {
            table: (*table).to_owned(),
            live: digest(&mut tx, name, table)
                .await
                .map_err(Error::db("digest live"))?,
            rebuilt: digest(&mut tx, &shadow, table)
                .await
                .map_err(Error::db("digest rebuilt"))?,
        });
    }
    if dry_run {
        tx.rollback().await.map_err(Error::db("rollback"))?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"))
            .execute(&rt.db)
            .await
            .map_err(Error::db("drop shadow"))?;
    } else {
        let retired = format!("{name}_retired");
        for statement in [
            format!("DROP SCHEMA IF EXISTS {retired} CASCADE"),
            format!("ALTER SCHEMA {name} RENAME TO {retired}"),
            format!("ALTER SCHEMA {shadow} RENAME TO {name}"),
            format!("DROP SCHEMA {retired} CASCADE"),
        ] {
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("swap schemas"))?;
        }
        advance_checkpoint(&mut tx, name, shadow_seq)
            .await
            .map_err(Error::db("advance checkpoint"))?;
        tx.commit().await.map_err(Error::db("commit swap"))?;
        info!(
            projection = name,
            events = applied,
            "projection rebuilt and swapped in"
        );
    }
    Ok(RebuildReport {
        projection: name.to_owned(),
        events: applied,
        seconds: started.elapsed().as_secs_f64(),
        checkpoint: shadow_seq.max(live),
        apply_seconds: apply_time.as_secs_f64(),
        tables,
        swapped: !dry_run,
    })
}

async fn apply_shadow(
    db: &PgPool,
    projection: &dyn Projection,
    shadow: &str,
    events: &[StoredEvent],
) -> Result<()> {
    let mut tx = db.begin().await.map_err(Error::db("begin"))?;
    apply_or_fail(projection, &mut tx, shadow, events).await?;
    tx.commit()
        .await
        .map_err(Error::db("commit shadow batch"))?;
    Ok(())
}

async fn apply_or_fail(
    projection: &dyn Projection,
    conn: &mut PgConnection,
    schema: &str,
    events: &[StoredEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let name = projection.name();
    match projection.apply(conn, schema, events).await {
        Ok(_) => Ok(()),
        Err(ApplyError::Event { sequence, reason }) => Err(Error::Apply(format!(
            "rebuild of {name} stopped at event {sequence}, which the live projection has not parked: {reason}"
        ))),
        Err(e) if classify(&e) == ErrorClass::Deterministic => Err(Error::Apply(format!(
            "rebuild of {name} stopped in events {}..={}, which the live projection has not parked: {}",
            events[0].sequence,
            events[events.len() - 1].sequence,
            describe(&e)
        ))),
        Err(e) => Err(apply_error(name, e)),
    }
}
