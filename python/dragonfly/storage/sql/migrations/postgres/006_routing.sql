-- Routing inputs the operator and the probes set (ARCHITECTURE.md, "Routing weights and quality").
-- Keep in step with sqlite/006_routing.sql: the only differences are REAL/DOUBLE PRECISION and the
-- JSON functions of the backfill.

-- The operator's weights per built-in strategy (`custom` takes its weights from each profile). A
-- strategy without a row uses the native core's defaults.
CREATE TABLE strategy_weights (
  strategy TEXT PRIMARY KEY
    CHECK (strategy IN ('cost_first', 'balanced', 'reliability_first', 'quality_first')),
  price DOUBLE PRECISION NOT NULL CHECK (price >= 0),
  latency DOUBLE PRECISION NOT NULL CHECK (latency >= 0),
  throughput DOUBLE PRECISION NOT NULL CHECK (throughput >= 0),
  reliability DOUBLE PRECISION NOT NULL CHECK (reliability >= 0),
  quality DOUBLE PRECISION NOT NULL CHECK (quality >= 0),
  updated_by TEXT,
  updated_at BIGINT NOT NULL,
  CHECK (price + latency + throughput + reliability + quality > 0)
);

-- Per-listing quality sources: the probe score (mean share of passed checks over the listing's last
-- 10 probe runs, NULL before any run) and the operator's override (NULL = use the computed value).
CREATE TABLE listing_quality (
  listing_id TEXT PRIMARY KEY REFERENCES listings(id),
  probe_quality DOUBLE PRECISION CHECK (probe_quality IS NULL OR (probe_quality >= 0 AND probe_quality <= 1)),
  probe_runs INTEGER NOT NULL DEFAULT 0,
  quality_override DOUBLE PRECISION
    CHECK (quality_override IS NULL OR (quality_override >= 0 AND quality_override <= 1)),
  override_by TEXT,
  updated_at BIGINT NOT NULL
);

-- Backfill the probe score of listings probed before this migration.
INSERT INTO listing_quality (listing_id, probe_quality, probe_runs, updated_at)
SELECT listing_id, AVG(score), COUNT(*), MAX(finished_at) FROM (
  SELECT r.listing_id, r.finished_at,
    COALESCE((SELECT AVG(CASE WHEN (c.value ->> 'passed')::boolean THEN 1.0 ELSE 0.0 END)
              FROM jsonb_array_elements(r.checks::jsonb) c), 0.0) AS score,
    ROW_NUMBER() OVER (PARTITION BY r.listing_id ORDER BY r.started_at DESC, r.id DESC) AS n
  FROM probe_runs r
) recent WHERE n <= 10 GROUP BY listing_id;
