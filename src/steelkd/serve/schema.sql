-- The inspection service's store (steelkd.serve.store). Plain SQL: SQLite by default; the same tables
-- work on PostgreSQL (TEXT, INTEGER, REAL; no SQLite-only types or functions).

-- One row per POST /v1/inspect. The image is a PNG file under the data folder (image_file, relative);
-- the id is a server-made UUID, never a name from the request.
CREATE TABLE IF NOT EXISTS inspections (
    id            TEXT PRIMARY KEY,
    created_at    TEXT NOT NULL,              -- UTC, ISO 8601
    coil_id       TEXT,
    position_m    REAL,                       -- position along the coil, metres
    filename      TEXT,                       -- the uploaded file's name, informational only
    image_file    TEXT NOT NULL,              -- relative to the data folder: images/<id>.png
    height        INTEGER NOT NULL,
    width         INTEGER NOT NULL,
    class_names   TEXT NOT NULL,              -- JSON list, background first
    model_name    TEXT NOT NULL,
    model_version TEXT NOT NULL,
    backend       TEXT NOT NULL,
    latency_ms    REAL NOT NULL,              -- inference (decode to regions), milliseconds
    n_defects     INTEGER NOT NULL            -- defects the model found (rows with source 'model')
);
CREATE INDEX IF NOT EXISTS inspections_created ON inspections (created_at);
CREATE INDEX IF NOT EXISTS inspections_coil ON inspections (coil_id, position_m);

-- One row per defect region: found by the model, or drawn by an operator as a box (source 'operator').
-- Review: status pending -> confirmed | rejected | relabelled (reviewed_class_id set); an operator's
-- box is 'added' (or 'rejected' when withdrawn).
CREATE TABLE IF NOT EXISTS defects (
    inspection_id     TEXT NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    n                 INTEGER NOT NULL,       -- 1, 2, ... within the inspection
    source            TEXT NOT NULL CHECK (source IN ('model', 'operator')),
    class_id          INTEGER NOT NULL,       -- the model's class (the operator's for a box)
    area              INTEGER NOT NULL,
    x                 INTEGER NOT NULL,
    y                 INTEGER NOT NULL,
    w                 INTEGER NOT NULL,
    h                 INTEGER NOT NULL,
    score             REAL,                   -- mean probability over the region (NULL for a box)
    max_score         REAL,
    rle               TEXT NOT NULL,          -- Kaggle RLE of the region in the whole image
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'confirmed', 'rejected', 'relabelled', 'added')),
    reviewed_class_id INTEGER,
    reviewed_at       TEXT,
    PRIMARY KEY (inspection_id, n)
);
